"""Training-time augmentation: transforms named after ``torchvision.transforms.v2``, applied to whole
uint8 batches on the training device.

A spec's ``train: {augment: [...]}`` is a list of ``{type: NAME, ...fields}``; each NAME is a
torchvision v2 class in snake_case (``RandomCrop`` -> ``random_crop``) with PyTorch's field names
and defaults. Each transform is one frozen pydantic model tagged by ``type`` (validated like a
layer: located errors, did-you-mean) that owns its fields and ``apply``; the registry
``AUGMENTATIONS`` lists them, and ``cnnspec augmentations`` prints it.

How they run, and how that differs from torchvision:

- On a batch: uint8 ``N x C x H x W`` in, uint8 out, on the training device, before
  normalisation. Every random parameter (crop offset, angle, jitter factor, erased box) is drawn
  *per image*, as torchvision does when called once per image; torchvision called on a batch would
  share one draw across it.
- Geometry (rotation, affine, resized crop) is one ``grid_sample`` for the whole batch with one
  inverse affine matrix per image, built with torchvision's own formulas
  (``_get_inverse_affine_matrix``, ``_affine_grid``), so one image equals
  ``torchvision.transforms.v2.functional.affine`` on it.
- ``color_jitter`` works in float and rounds once at the end (torchvision rounds after each of its
  four adjustments); the order of the four is drawn once per batch.
- Seeded: ``Augmenter`` draws everything from a generator seeded by (seed, epoch, step, rank), never
  from the global stream, so a resumed run sees exactly the augmented batches of an
  uninterrupted one.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, Callable, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from ..errors import Diagnostic, SpecError, did_you_mean

if TYPE_CHECKING:  # torch is imported inside methods only: the spec schema imports this module
    import torch

PositiveInt = Annotated[int, Field(strict=True, gt=0)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]
Level = Annotated[int, Field(strict=True, ge=0, le=255)]
Fraction = Annotated[float, Field(strict=True, ge=0.0, le=1.0)]
NonNegativeFloat = Annotated[float, Field(strict=True, ge=0.0)]
PositiveFloat = Annotated[float, Field(strict=True, gt=0.0)]
Size = PositiveInt | tuple[PositiveInt, PositiveInt]
Interpolation = Literal["nearest", "bilinear"]


def _pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``28`` -> ``(28, 28)``; ``[24, 20]`` -> ``(24, 20)`` (height, width), as torchvision reads a size."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _symmetric(value: float | tuple[float, float], name: str, centre: float = 0.0,
               low: float | None = None) -> tuple[float, float]:
    """torchvision's ``_check_sequence_input``/``_setup_float_or_seq``: one number v means
    [centre - v, centre + v] (clipped at ``low``), a pair is [min, max]."""
    if isinstance(value, (int, float)):
        lower = centre - value
        return (max(lower, low) if low is not None else lower, centre + value)
    return (float(value[0]), float(value[1]))


def _ordered(value: Any) -> Any:
    """A field validator: every [min, max] pair in ``value`` has min <= max."""
    return _check_order(value)


def _check_order(value: Any, bounds: tuple[float, float] | None = None) -> Any:
    """Every [min, max] pair in ``value`` has min <= max (and lies within ``bounds``)."""
    pairs = [value[i:i + 2] for i in range(0, len(value), 2)] if isinstance(value, tuple) else []
    for low, high in pairs:
        if low > high:
            raise PydanticCustomError("range", "value should be [min, max] with min <= max")
        if bounds is not None and not (bounds[0] <= low and high <= bounds[1]):
            raise PydanticCustomError("range", "value should lie within [{low}, {high}]",
                                      {"low": bounds[0], "high": bounds[1]})
    return value


def _uniform(generator: torch.Generator, count: int, low: float, high: float) -> torch.Tensor:
    """``count`` float64 draws from U(low, high) (float64 so that parameters match torchvision's
    Python-float arithmetic)."""
    import torch

    return torch.empty(count, dtype=torch.float64).uniform_(low, high, generator=generator)


class Augmentation(BaseModel):
    """Fields every transform has: its ``type``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str

    #: what the transform is named after
    torchvision_class: ClassVar[str] = ""

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """uint8 ``N x C x H x W`` -> uint8 ``N x C x H' x W'``; random draws from ``generator`` only."""
        raise NotImplementedError

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The image size after this transform (the size-changing ones override it)."""
        return (height, width)


# --- geometry shared by rotation, affine and resized crop ----------------------------------------

def _inverse_affine(angle: torch.Tensor, translate_x: torch.Tensor, translate_y: torch.Tensor,
                    scale: torch.Tensor, shear_x: torch.Tensor, shear_y: torch.Tensor) -> torch.Tensor:
    """Per image, torchvision's ``_get_inverse_affine_matrix`` about the image centre, vectorised:
    ``M^-1 = (T C RSS C^-1)^-1`` as N x 2 x 3 (angles in degrees, float64)."""
    import torch

    rotation, sx, sy = torch.deg2rad(angle), torch.deg2rad(shear_x), torch.deg2rad(shear_y)
    a = torch.cos(rotation - sy) / torch.cos(sy)
    b = -torch.cos(rotation - sy) * torch.tan(sx) / torch.cos(sy) - torch.sin(rotation)
    c = torch.sin(rotation - sy) / torch.cos(sy)
    d = -torch.sin(rotation - sy) * torch.tan(sx) / torch.cos(sy) + torch.cos(rotation)
    m0, m1, m3, m4 = d / scale, -b / scale, -c / scale, a / scale
    m2 = m0 * -translate_x + m1 * -translate_y
    m5 = m3 * -translate_x + m4 * -translate_y
    return torch.stack([m0, m1, m2, m3, m4, m5], dim=1).view(-1, 2, 3)


def _affine_grid(theta: torch.Tensor, height: int, width: int, out_height: int, out_width: int) -> torch.Tensor:
    """torchvision's ``_affine_grid`` with one theta per image: the pixel-centred base grid
    (x, y, 1) times theta, normalised by half the input size (N x out_height x out_width x 2).
    Written as broadcast multiply-adds rather than torchvision's bmm: 10x faster on a batch."""
    import torch

    device = theta.device
    xs = torch.linspace((1.0 - out_width) * 0.5, (out_width - 1.0) * 0.5, out_width, device=device)[None, None, :]
    ys = torch.linspace((1.0 - out_height) * 0.5, (out_height - 1.0) * 0.5, out_height, device=device)[None, :, None]
    t = theta[:, :, :, None, None]  # N x 2 x 3 x 1 x 1
    grid_x = (xs * t[:, 0, 0] + ys * t[:, 0, 1] + t[:, 0, 2]) / (0.5 * width)
    grid_y = (xs * t[:, 1, 0] + ys * t[:, 1, 1] + t[:, 1, 2]) / (0.5 * height)
    return torch.stack([grid_x, grid_y], dim=-1)


def _sample(images: torch.Tensor, grid: torch.Tensor, mode: str, fill: list[int] | None,
            padding_mode: str = "zeros") -> torch.Tensor:
    """torchvision's ``_apply_grid_transform`` for a batch with one grid per image: uint8 -> float,
    grid_sample (align_corners=False), outside pixels set to ``fill``, rounded back to uint8."""
    import torch
    import torch.nn.functional as F

    batch, channels, height, width = images.shape
    values = images.to(torch.float32)
    if fill is not None and mode == "nearest" and not any(fill):
        fill = None  # zero padding already puts 0 outside: the mask would change nothing
    if fill is not None:
        values = torch.cat([values, torch.ones((batch, 1, height, width), dtype=torch.float32, device=values.device)], 1)
    values = F.grid_sample(values, grid, mode=mode, padding_mode=padding_mode, align_corners=False)
    if fill is not None:
        values, mask = values[:, :-1], values[:, -1:].expand(-1, channels, -1, -1)
        colour = torch.tensor(fill if len(fill) == channels else fill[:1] * channels,
                              dtype=torch.float32, device=values.device).view(1, channels, 1, 1)
        if mode == "nearest":
            values = torch.where(mask < 0.5, colour.expand_as(values), values)
        else:
            values = (values - colour) * mask + colour
    return values.round_().clamp_(0, 255).to(torch.uint8)


def _fill_list(fill: int | list[int]) -> list[int]:
    return [fill] if isinstance(fill, int) else list(fill)


# --- the transforms ---------------------------------------------------------------------------

class RandomCrop(Augmentation):
    """Crops a random size x size window, after optional padding (shifts the content)."""

    type: Literal["random_crop"] = "random_crop"
    torchvision_class: ClassVar[str] = "RandomCrop"
    size: Size = Field(description="Output [height, width] (one number: a square).")
    padding: NonNegativeInt | tuple[NonNegativeInt, NonNegativeInt] | tuple[
        NonNegativeInt, NonNegativeInt, NonNegativeInt, NonNegativeInt] | None = Field(
        None, description="Border added first: all sides, [left/right, top/bottom] or [left, top, right, bottom].")
    pad_if_needed: bool = Field(False, description="Pad images smaller than size so that the crop fits.")
    fill: Level | list[Level] = Field(0, description="Pixel value (0-255) of constant padding, or one per channel.")
    padding_mode: Literal["constant", "edge", "reflect", "symmetric"] = Field(
        "constant", description="How the border is filled: a constant, the edge pixel, or a mirror.")

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return _pair(self.size)

    def _pad(self, images: torch.Tensor) -> torch.Tensor:
        import torchvision.transforms.v2.functional as TF

        padding = [self.padding] if isinstance(self.padding, int) else list(self.padding or [0])
        left, top, right, bottom = (padding * 4)[:4] if len(padding) == 1 else (
            [padding[0], padding[1]] * 2 if len(padding) == 2 else padding)
        out_height, out_width = _pair(self.size)
        height, width = images.shape[-2] + top + bottom, images.shape[-1] + left + right
        if self.pad_if_needed:
            extra_width, extra_height = max(0, out_width - width), max(0, out_height - height)
            left, right, top, bottom = left + extra_width, right + extra_width, top + extra_height, bottom + extra_height
        if not any((left, top, right, bottom)):
            return images
        fill = self.fill if isinstance(self.fill, int) else [float(v) for v in self.fill]
        return TF.pad(images, [left, top, right, bottom], fill=fill, padding_mode=self.padding_mode)

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        import torch

        padded = self._pad(images)
        batch, _, height, width = padded.shape
        out_height, out_width = _pair(self.size)
        if out_height > height or out_width > width:
            raise ValueError(f"random_crop size {[out_height, out_width]} is larger than the padded image "
                             f"{[height, width]}; add padding or pad_if_needed: true")
        top = torch.randint(0, height - out_height + 1, (batch,), generator=generator).to(padded.device)
        left = torch.randint(0, width - out_width + 1, (batch,), generator=generator).to(padded.device)
        # every window as a strided view (N x C x offsets_y x offsets_x x h x w), then one per image
        windows = padded.unfold(2, out_height, 1).unfold(3, out_width, 1)
        return windows[torch.arange(batch, device=padded.device), :, top, left].contiguous()


class _RandomFlip(Augmentation):
    """Mirrors each image with probability p."""

    p: Fraction = Field(0.5, description="Probability of flipping an image.")
    dimension: ClassVar[int] = -1

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        import torch

        chosen = (torch.rand(images.shape[0], generator=generator) < self.p).to(images.device)
        return torch.where(chosen[:, None, None, None], images.flip(self.dimension), images)


class RandomHorizontalFlip(_RandomFlip):
    """Mirrors each image left-right with probability p."""

    type: Literal["random_horizontal_flip"] = "random_horizontal_flip"
    torchvision_class: ClassVar[str] = "RandomHorizontalFlip"


class RandomVerticalFlip(_RandomFlip):
    """Mirrors each image top-bottom with probability p."""

    type: Literal["random_vertical_flip"] = "random_vertical_flip"
    torchvision_class: ClassVar[str] = "RandomVerticalFlip"
    dimension: ClassVar[int] = -2


class RandomAffine(Augmentation):
    """Rotates, shifts, scales and shears each image by random amounts about its centre."""

    type: Literal["random_affine"] = "random_affine"
    torchvision_class: ClassVar[str] = "RandomAffine"
    degrees: NonNegativeFloat | tuple[float, float] = Field(
        description="Rotation in degrees, clockwise as torchvision's affine: d means [-d, d], or [min, max].")
    translate: tuple[Fraction, Fraction] | None = Field(
        None, description="Largest shift as a fraction of [width, height]; whole pixels, as torchvision rounds.")
    scale: tuple[PositiveFloat, PositiveFloat] | None = Field(None, description="Zoom factor range [min, max].")
    shear: NonNegativeFloat | tuple[float, float] | tuple[float, float, float, float] | None = Field(
        None, description="Shear in degrees: s means x in [-s, s]; [min, max] for x; [xmin, xmax, ymin, ymax].")
    interpolation: Interpolation = Field("nearest", description="How pixels are resampled.")
    fill: Level | list[Level] = Field(0, description="Value (0-255) of pixels moved in from outside, or one per channel.")

    _ranges = field_validator("degrees", "scale", "shear")(_ordered)

    def degree_range(self) -> tuple[float, float]:
        return _symmetric(self.degrees, "degrees")

    def shear_ranges(self) -> tuple[tuple[float, float], tuple[float, float]]:
        if self.shear is None:
            return (0.0, 0.0), (0.0, 0.0)
        if isinstance(self.shear, (int, float)) or len(self.shear) == 2:
            return _symmetric(self.shear, "shear"), (0.0, 0.0)
        return (self.shear[0], self.shear[1]), (self.shear[2], self.shear[3])

    def parameters(self, batch: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        """N inverse matrices, drawing as torchvision's ``RandomAffine.make_params`` does per image."""
        import torch

        angle = _uniform(generator, batch, *self.degree_range())
        if self.translate is not None:
            dx, dy = self.translate[0] * width, self.translate[1] * height
            translate_x = torch.round(_uniform(generator, batch, -dx, dx))
            translate_y = torch.round(_uniform(generator, batch, -dy, dy))
        else:
            translate_x = translate_y = torch.zeros(batch, dtype=torch.float64)
        scale = _uniform(generator, batch, *self.scale) if self.scale is not None else torch.ones(batch, dtype=torch.float64)
        (x_low, x_high), (y_low, y_high) = self.shear_ranges()
        shear_x = _uniform(generator, batch, x_low, x_high) if self.shear is not None else torch.zeros(batch, dtype=torch.float64)
        shear_y = _uniform(generator, batch, y_low, y_high) if (y_low, y_high) != (0.0, 0.0) else torch.zeros(batch, dtype=torch.float64)
        return _inverse_affine(angle, translate_x, translate_y, scale, shear_x, shear_y)

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        import torch

        batch, _, height, width = images.shape
        theta = self.parameters(batch, height, width, generator).to(torch.float32).to(images.device)
        grid = _affine_grid(theta, height, width, height, width)
        return _sample(images, grid, self.interpolation, _fill_list(self.fill))


class RandomRotation(Augmentation):
    """Rotates each image by a random angle about its centre; the uncovered corners get fill."""

    type: Literal["random_rotation"] = "random_rotation"
    torchvision_class: ClassVar[str] = "RandomRotation"
    degrees: NonNegativeFloat | tuple[float, float] = Field(
        description="Angle in degrees, counter-clockwise: d means [-d, d], or [min, max].")
    interpolation: Interpolation = Field("nearest", description="How pixels are resampled.")
    fill: Level | list[Level] = Field(0, description="Value (0-255) of the uncovered corners, or one per channel.")

    _ranges = field_validator("degrees")(_ordered)

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """torchvision's ``rotate``: the affine matrix of ``-angle`` (its affine turns clockwise)."""
        import torch

        batch, _, height, width = images.shape
        angle = -_uniform(generator, batch, *_symmetric(self.degrees, "degrees"))
        zeros, ones = torch.zeros(batch, dtype=torch.float64), torch.ones(batch, dtype=torch.float64)
        theta = _inverse_affine(angle, zeros, zeros, ones, zeros, zeros).to(torch.float32).to(images.device)
        return _sample(images, _affine_grid(theta, height, width, height, width), self.interpolation,
                       _fill_list(self.fill))


class RandomResizedCrop(Augmentation):
    """Crops a random box of random area and aspect ratio and resizes it to size (bilinear)."""

    type: Literal["random_resized_crop"] = "random_resized_crop"
    torchvision_class: ClassVar[str] = "RandomResizedCrop"
    size: Size = Field(description="Output [height, width] (one number: a square).")
    scale: tuple[Fraction, Fraction] = Field((0.08, 1.0), description="Box area range, as a fraction of the image.")
    ratio: tuple[PositiveFloat, PositiveFloat] = Field((3 / 4, 4 / 3), description="Box aspect range (width / height).")
    interpolation: Interpolation = Field("bilinear", description="How pixels are resampled.")

    _ranges = field_validator("scale", "ratio")(_ordered)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return _pair(self.size)

    def boxes(self, batch: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        """N boxes [top, left, box_height, box_width], torchvision's ``RandomResizedCrop.make_params``
        per image: up to 10 tries of (area, log-uniform aspect) that fit, else the central crop
        with the aspect clamped to ``ratio``."""
        import torch

        tries = 10
        area = height * width * _uniform(generator, batch * tries, *self.scale).view(batch, tries)
        log_ratio = _uniform(generator, batch * tries, math.log(self.ratio[0]), math.log(self.ratio[1]))
        aspect = torch.exp(log_ratio).view(batch, tries)
        box_width = torch.round(torch.sqrt(area * aspect))
        box_height = torch.round(torch.sqrt(area / aspect))
        fits = (box_width > 0) & (box_width <= width) & (box_height > 0) & (box_height <= height)
        first = torch.where(fits.any(1), fits.to(torch.int8).argmax(1), torch.full((batch,), -1))
        chosen_height, chosen_width = self._fallback(height, width, batch)
        hit = first >= 0
        pick = first.clamp(min=0)[:, None]
        chosen_height = torch.where(hit, box_height.gather(1, pick)[:, 0], chosen_height)
        chosen_width = torch.where(hit, box_width.gather(1, pick)[:, 0], chosen_width)
        offsets = torch.rand(batch, 2, generator=generator, dtype=torch.float64)
        top = torch.where(hit, torch.floor(offsets[:, 0] * (height - chosen_height + 1)), (height - chosen_height) // 2)
        left = torch.where(hit, torch.floor(offsets[:, 1] * (width - chosen_width + 1)), (width - chosen_width) // 2)
        return torch.stack([top, left, chosen_height, chosen_width], 1)

    def _fallback(self, height: int, width: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        in_ratio = width / height
        if in_ratio < min(self.ratio):
            box_width, box_height = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            box_height, box_width = height, int(round(height * max(self.ratio)))
        else:
            box_width, box_height = width, height
        return (torch.full((batch,), float(box_height), dtype=torch.float64),
                torch.full((batch,), float(box_width), dtype=torch.float64))

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Output pixel j of a box [left, left + w) samples input x = left + (j + 0.5) w / W_out - 0.5,
        resize's align_corners=False rule; borders repeat the edge pixel, as resize does."""
        import torch

        batch, _, height, width = images.shape
        out_height, out_width = _pair(self.size)
        top, left, box_height, box_width = self.boxes(batch, height, width, generator).to(images.device).unbind(1)
        rows = torch.arange(out_height, device=images.device, dtype=torch.float64) + 0.5
        cols = torch.arange(out_width, device=images.device, dtype=torch.float64) + 0.5
        y = (top[:, None] + rows[None] * (box_height / out_height)[:, None]) * (2.0 / height) - 1.0
        x = (left[:, None] + cols[None] * (box_width / out_width)[:, None]) * (2.0 / width) - 1.0
        grid = torch.stack(torch.broadcast_tensors(x[:, None, :], y[:, :, None]), -1).to(torch.float32)
        return _sample(images, grid, self.interpolation, None, padding_mode="border")


class ColorJitter(Augmentation):
    """Changes brightness, contrast, saturation and hue by random factors (each image its own)."""

    type: Literal["color_jitter"] = "color_jitter"
    torchvision_class: ClassVar[str] = "ColorJitter"
    brightness: NonNegativeFloat | tuple[NonNegativeFloat, NonNegativeFloat] | None = Field(
        None, description="b means a factor in [max(0, 1-b), 1+b] (1 = unchanged), or [min, max].")
    contrast: NonNegativeFloat | tuple[NonNegativeFloat, NonNegativeFloat] | None = Field(
        None, description="Blend with the image's mean grey: like brightness.")
    saturation: NonNegativeFloat | tuple[NonNegativeFloat, NonNegativeFloat] | None = Field(
        None, description="Blend with the grey image: like brightness (no effect on 1-channel images).")
    hue: Annotated[float, Field(strict=True, ge=0.0, le=0.5)] | tuple[float, float] | None = Field(
        None, description="h in [0, 0.5] means a shift in [-h, h] of the colour wheel, or [min, max] "
        "within [-0.5, 0.5] (no effect on 1-channel images).")

    _ranges = field_validator("brightness", "contrast", "saturation")(_ordered)

    @field_validator("hue")
    @classmethod
    def _hue_range(cls, value: Any) -> Any:
        return _check_order(value, (-0.5, 0.5))

    def factor_range(self, name: str) -> tuple[float, float] | None:
        value = getattr(self, name)
        if value is None:
            return None
        return _symmetric(value, name) if name == "hue" else _symmetric(value, name, centre=1.0, low=0.0)

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        import torch

        batch = images.shape[0]
        order = torch.randperm(4, generator=generator).tolist()
        names = ("brightness", "contrast", "saturation", "hue")
        factors = {}
        for name in names:  # drawn in a fixed order, so the stream does not depend on ``order``
            span = self.factor_range(name)
            if span is not None:
                factors[name] = _uniform(generator, batch, *span).to(torch.float32).to(images.device)
        values = images.to(torch.float32)
        for index in order:
            name = names[index]
            if name in factors:
                values = getattr(self, f"_{name}")(values, factors[name].view(-1, 1, 1, 1))
        return values.round_().clamp_(0, 255).to(torch.uint8)

    @staticmethod
    def _grey(values: torch.Tensor) -> torch.Tensor:
        if values.shape[1] != 3:
            return values
        red, green, blue = values.unbind(1)
        return (0.2989 * red + 0.587 * green + 0.114 * blue).unsqueeze(1)

    @staticmethod
    def _blend(values: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        return (values * factor + other * (1.0 - factor)).clamp_(0, 255)

    def _brightness(self, values: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        return (values * factor).clamp_(0, 255)

    def _contrast(self, values: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        mean = self._grey(values).mean(dim=(1, 2, 3), keepdim=True)
        return self._blend(values, mean, factor)

    def _saturation(self, values: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        return values if values.shape[1] != 3 else self._blend(values, self._grey(values), factor)

    def _hue(self, values: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        """Rotate each image's hue by its factor (a fraction of the colour circle), in HSV."""
        if values.shape[1] != 3:
            return values
        hue, saturation, value = _rgb_to_hsv(values / 255.0)
        return _hsv_to_rgb((hue + factor.view(-1, 1, 1)).remainder(1.0), saturation, value) * 255.0


def _rgb_to_hsv(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[N, 3, H, W] RGB in [0, 1] -> hue in [0, 1), saturation, value (each [N, H, W]); the
    hexcone model (Smith 1978): value = max, saturation = (max - min) / max, hue from the sector
    of the largest channel. Grey pixels (max = min) get hue 0 and saturation 0."""
    import torch

    red, green, blue = rgb.unbind(1)
    value, _ = rgb.max(dim=1)
    chroma = value - rgb.min(dim=1).values
    saturation = torch.where(value > 0, chroma / value.clamp_min(1e-12), torch.zeros_like(value))
    safe = chroma.clamp_min(1e-12)
    hue = torch.where(value == red, ((green - blue) / safe).remainder(6.0),
                      torch.where(value == green, (blue - red) / safe + 2.0, (red - green) / safe + 4.0))
    hue = torch.where(chroma > 0, hue / 6.0, torch.zeros_like(hue))
    return hue, saturation, value


def _hsv_to_rgb(hue: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """The inverse of ``_rgb_to_hsv``: [N, 3, H, W] RGB in [0, 1]."""
    import torch

    sector = hue * 6.0
    index = sector.floor()
    within = sector - index
    index = index.long().remainder(6)
    low = value * (1.0 - saturation)
    falling = value * (1.0 - saturation * within)
    rising = value * (1.0 - saturation * (1.0 - within))
    # (red, green, blue) for each of the six sectors of the hexcone, as candidates to pick from
    candidates = torch.stack((value, falling, low, rising), dim=1)  # [N, 4, H, W]
    pick = torch.tensor([[0, 3, 2], [1, 0, 2], [2, 0, 3], [2, 1, 0], [3, 2, 0], [0, 2, 1]], device=hue.device)
    order = pick[index].permute(0, 3, 1, 2)  # [N, 3, H, W]: which candidate each channel takes
    return candidates.gather(1, order)


class RandomErasing(Augmentation):
    """Blanks a random box of each image with probability p (cutout)."""

    type: Literal["random_erasing"] = "random_erasing"
    torchvision_class: ClassVar[str] = "RandomErasing"
    p: Fraction = Field(0.5, description="Probability of erasing a box in an image.")
    scale: tuple[Fraction, Fraction] = Field((0.02, 0.33), description="Box area range, as a fraction of the image.")
    ratio: tuple[PositiveFloat, PositiveFloat] = Field((0.3, 3.3), description="Box aspect range (height / width).")
    value: Level | list[Level] = Field(0, description="Value (0-255) written into the box, or one per channel.")

    _ranges = field_validator("scale", "ratio")(_ordered)

    def boxes(self, batch: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        """N boxes [top, left, box_height, box_width] (0 x 0 when the image is kept), drawn as
        torchvision's ``RandomErasing.make_params``: up to 10 tries of (area, log-uniform aspect)."""
        import torch

        tries = 10
        erase = torch.rand(batch, generator=generator) < self.p
        area = height * width * _uniform(generator, batch * tries, *self.scale).view(batch, tries)
        aspect = torch.exp(_uniform(generator, batch * tries, math.log(self.ratio[0]), math.log(self.ratio[1])))
        aspect = aspect.view(batch, tries)
        box_height = torch.round(torch.sqrt(area * aspect))
        box_width = torch.round(torch.sqrt(area / aspect))
        fits = (box_height < height) & (box_width < width)
        hit = fits.any(1) & erase
        pick = fits.to(torch.int8).argmax(1, keepdim=True)
        box_height = torch.where(hit, box_height.gather(1, pick)[:, 0], 0.0)
        box_width = torch.where(hit, box_width.gather(1, pick)[:, 0], 0.0)
        offsets = torch.rand(batch, 2, generator=generator, dtype=torch.float64)
        top = torch.floor(offsets[:, 0] * (height - box_height + 1))
        left = torch.floor(offsets[:, 1] * (width - box_width + 1))
        return torch.stack([top, left, box_height, box_width], 1).to(torch.int64)

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        import torch

        batch, channels, height, width = images.shape
        top, left, box_height, box_width = self.boxes(batch, height, width, generator).to(images.device).unbind(1)
        rows = torch.arange(height, device=images.device)[None, :]
        cols = torch.arange(width, device=images.device)[None, :]
        inside_rows = (rows >= top[:, None]) & (rows < (top + box_height)[:, None])
        inside_cols = (cols >= left[:, None]) & (cols < (left + box_width)[:, None])
        inside = (inside_rows[:, :, None] & inside_cols[:, None, :])[:, None]
        fill = _fill_list(self.value)
        colour = torch.tensor(fill if len(fill) == channels else fill[:1] * channels, dtype=torch.uint8,
                              device=images.device).view(1, channels, 1, 1)
        return torch.where(inside, colour, images)


# --- registry, validation, pipeline ------------------------------------------------------------

AUGMENTATIONS: dict[str, type[Augmentation]] = {}


def register(cls: type[Augmentation]) -> type[Augmentation]:
    """Enrol a transform under its ``type``; a duplicate name is a programming error."""
    name = cls.model_fields["type"].default
    if name in AUGMENTATIONS:
        raise ValueError(f"augmentation type {name!r} is registered twice")
    AUGMENTATIONS[name] = cls
    return cls


for _cls in (RandomCrop, RandomHorizontalFlip, RandomVerticalFlip, RandomRotation, RandomAffine, ColorJitter,
             RandomErasing, RandomResizedCrop):
    register(_cls)

Locate = Callable[[tuple[Any, ...], bool], Any]


def validate_augment(items: Any, locate: Locate) -> tuple[list[Augmentation], list[Diagnostic]]:
    """Validate ``train.augment``: each entry ``{type: NAME, ...}`` against its class, every problem
    located (``locate(path, key)`` maps a path inside the list to the source) and all collected."""
    from ..spec.validation import diagnose

    if not isinstance(items, list):
        return [], [Diagnostic("augment must be a list of {type: NAME, ...} transforms", locate((), False),
                               received=f"augment={items!r}", expected="e.g. [{type: random_crop, size: 28, padding: 2}]")]
    transforms: list[Augmentation] = []
    problems: list[Diagnostic] = []
    known = ", ".join(AUGMENTATIONS)
    for index, item in enumerate(items):
        if not isinstance(item, dict) or "type" not in item:
            problems.append(Diagnostic(f"augment entry {index + 1} has no 'type'", locate((index,), False),
                                       expected=f"{{type: NAME, ...}} with NAME one of {known}",
                                       received=repr(item)))
            continue
        kind = item["type"]
        if not isinstance(kind, str) or kind not in AUGMENTATIONS:
            problems.append(Diagnostic(f"unknown augmentation type '{kind}'", locate((index, "type"), False),
                                       expected=f"one of {known}", received=f"type={kind!r}",
                                       hint=did_you_mean(str(kind), AUGMENTATIONS)))
            continue

        def at(path: tuple[Any, ...], key: bool = False, index: int = index) -> Any:
            return locate((index, *path), key)

        transform, found = diagnose(AUGMENTATIONS[kind], item, at, what=f"{kind} augmentation #{index + 1}")
        problems.extend(found)
        if transform is not None:
            transforms.append(transform)
    return transforms, problems


def parse_augment(items: Any, source: str = "augment") -> list[Augmentation]:
    """Transforms from plain data (a checkpoint's options, a flag); SpecError naming ``source``."""
    from ..errors import Location

    transforms, problems = validate_augment(items, lambda path, key=False: Location(source, 1, 1))
    if problems:
        raise SpecError(problems)
    return transforms


def parse_augment_flag(texts: list[str]) -> list[dict[str, Any]]:
    """``--augment`` values, each a YAML flow mapping (``{type: random_crop, size: 28, padding: 2}``)
    or a bare type name, parsed with the spec loader so that errors point into the flag's text."""
    from ..spec.source import load_text

    entries: list[dict[str, Any]] = []
    for number, text in enumerate(texts, start=1):
        source = f"--augment #{number}"
        if text.strip() == "none":
            continue
        document = load_text(text, source)
        data = document.data if isinstance(document.data, dict) else (
            {"type": document.data} if isinstance(document.data, str) else document.data)
        _, problems = validate_augment([data], lambda path, key=False, d=document: d.locate(path[1:], key=key))
        if problems:
            raise SpecError(problems, text)
        entries.append(data)
    return entries


def augment_catalog() -> list[dict[str, Any]]:
    """Every transform with its summary, torchvision class and fields (name, type, default, meaning)."""
    from ..catalog import _type_text, value_text

    entries = []
    for name, cls in AUGMENTATIONS.items():
        fields = []
        for field_name, info in cls.model_fields.items():
            if field_name == "type":
                continue
            annotation = info.annotation
            if info.metadata:
                annotation = Annotated[(annotation, *info.metadata)]
            default = "required" if info.is_required() else ("none" if info.default is None else value_text(info.default))
            fields.append({"name": field_name, "type": _type_text(annotation), "default": default,
                           "description": info.description or ""})
        entries.append({"type": name, "torchvision": f"torchvision.transforms.v2.{cls.torchvision_class}",
                        "summary": (cls.__doc__ or "").strip().splitlines()[0], "fields": fields})
    return entries


def render_augment_markdown() -> str:
    """The augmentation reference as Markdown (embedded in README.md; a test keeps them equal)."""
    lines: list[str] = []
    for entry in augment_catalog():
        lines += [f"#### `{entry['type']}`", "", f"{entry['summary']} Named after `{entry['torchvision']}`.", ""]
        lines += ["| field | type | default | meaning |", "|---|---|---|---|"]
        for field in entry["fields"]:
            kind, meaning = field["type"].replace("|", "\\|"), field["description"].replace("|", "\\|")
            lines.append(f"| `{field['name']}` | {kind} | {field['default']} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


def step_seed(seed: int, epoch: int, step: int, rank: int = 0) -> int:
    """The generator seed of one training step: a fixed mix of (seed, epoch, step, rank), so the
    augmentation of a step never depends on what ran before it (resume stays exact)."""
    value = 0x9E3779B97F4A7C15
    for part in (seed, epoch, step, rank):
        value = ((value ^ (part & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 31
    return value & 0x7FFFFFFFFFFFFFFF


class Augmenter:
    """The ``train.augment`` list as one batch transform: uint8 in, uint8 out, seeded per step."""

    def __init__(self, transforms: list[Augmentation], seed: int, rank: int = 0):
        self.transforms = list(transforms)
        self.seed = seed
        self.rank = rank

    def __bool__(self) -> bool:
        return bool(self.transforms)

    def __call__(self, images: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
        import torch

        generator = torch.Generator().manual_seed(step_seed(self.seed, epoch, step, self.rank))
        for transform in self.transforms:
            images = transform.apply(images, generator)
        return images

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        for transform in self.transforms:
            height, width = transform.output_size(height, width)
        return (height, width)
