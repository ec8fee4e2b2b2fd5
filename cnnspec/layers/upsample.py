"""upsample: resizing a feature map by nearest-neighbour or bilinear interpolation (PyTorch's
nn.Upsample), as decoders, FPNs and segmentation heads use it."""


import math
from fractions import Fraction
from typing import Any, Literal

from pydantic import Field

from ..errors import LayerError
from .base import Example, Layer, Pair, Shape, fmt, pair, plain_fields, show
from .receptive_field import ReceptiveField, explain_resampling


def source_reads(unit: int, ratio: Fraction, mode: str, align_corners: bool) -> list[int]:
    """The input units output ``unit`` reads, away from the borders (PyTorch's index rules).
    nearest: floor(u * ratio). bilinear: x = (u + 1/2)*ratio - 1/2 (align_corners false) or
    u * ratio (true), interpolating floor(x) and floor(x) + 1; the second only when x is not
    whole (its weight x - floor(x) is 0 otherwise)."""
    if mode == "nearest":
        return [math.floor(unit * ratio)]
    x = unit * ratio if align_corners else (unit + Fraction(1, 2)) * ratio - Fraction(1, 2)
    low = math.floor(x)
    return [low] if x == low else [low, low + 1]


def _written(value: Any) -> str:
    """A field as the spec writes it: ``[14, 14]``, ``2``, ``null``."""
    return "null" if value is None else str(list(value) if isinstance(value, tuple) else value)


class Upsample(Layer):
    """Resize [C, H, W] to [C, H*s, W*s] (scale_factor s) or to a fixed size, by nearest
    neighbour (each output pixel copies input pixel floor(u/s)) or bilinear interpolation.
    0 params, 0 MACs (the MAC convention counts conv2d and linear only)."""

    type: Literal["upsample"] = "upsample"
    scale_factor: Pair | None = Field(None, description="Whole factor s or [s_h, s_w]: the output is floor(H*s) x "
                                      "floor(W*s). Give this or size.")
    size: Pair | None = Field(None, description="Output size [h, w] (or one number for both). Give this or scale_factor.")
    mode: Literal["nearest", "bilinear"] = Field("nearest", description="nearest copies the pixel at floor(u*H/H_out); "
                                                 "bilinear interpolates the two nearest per axis.")
    align_corners: bool | None = Field(None, description="bilinear only: true maps the corner pixels' centres onto "
                                       "each other (x = u*(H-1)/(H_out-1)); default false (x = (u+1/2)*H/H_out - 1/2).")

    needs = "feature_map"
    none_default = {"scale_factor": "none (give size)", "size": "none (give scale_factor)", "align_corners": "false"}
    field_depends_on_input_size = True  # with size or align_corners the ratio is H_in/H_out
    examples = (
        Example((3, 4, 5), scale_factor=2),
        Example((2, 5, 4), scale_factor=[2, 3], mode="bilinear"),
        Example((2, 4, 6), size=[7, 9], mode="bilinear", align_corners=True),
        Example((3, 5, 5), size=[8, 5]),
    )

    def ratios(self, shapes: list[Shape], out: Shape) -> list[Fraction]:
        """Input units per output unit along H and W, as PyTorch's index rule uses it: 1/s for a
        scale factor, H/H_out for a size, (H-1)/(H_out-1) with align_corners."""
        result = []
        for size, target, scale in zip(shapes[0][1:], out[1:], pair(self.scale_factor or 1)):
            if self.mode == "bilinear" and self.align_corners:
                result.append(Fraction(size - 1, target - 1) if target > 1 else Fraction(0))
            elif self.scale_factor is not None:
                result.append(Fraction(1, scale))
            else:
                result.append(Fraction(size, target))
        return result

    def output_shape(self, shapes: list[Shape]) -> Shape:
        if (self.scale_factor is None) == (self.size is None):
            raise LayerError(
                "give exactly one of scale_factor and size", field="scale_factor" if self.scale_factor else None,
                expected="scale_factor: 2 (or [2, 3]), or size: [h, w]",
                received=f"scale_factor={_written(self.scale_factor)}, size={_written(self.size)}")
        if self.align_corners is not None and self.mode != "bilinear":
            raise LayerError(
                "align_corners works only with mode bilinear (PyTorch rejects it for nearest)", field="align_corners",
                received=f"mode='{self.mode}', align_corners={str(self.align_corners).lower()}",
                hint="remove align_corners, or use mode: bilinear")
        if self.size is not None:
            return (shapes[0][0], *pair(self.size))
        return (shapes[0][0], *(size * scale for size, scale in zip(shapes[0][1:], pair(self.scale_factor))))

    def receptive_field(self, fields, shapes, out):
        """Output unit u reads input floor(u*r) (nearest) or the two units around x(u) (bilinear),
        r input units per output unit: the jump is multiplied by r (divided by the scale factor).
        Units differ by phase, so the field is their envelope (exact only for a scale of 1)."""
        axes = []
        for axis, ratio in zip((fields[0].height, fields[0].width), self.ratios(shapes, out)):
            axes.append(axis.through_resampling(  # ratio p/q: the reads of u + q are those of u plus p
                ratio, lambda u, r=ratio: source_reads(u, r, self.mode, bool(self.align_corners)),
                max(ratio.denominator, 1)))
        return ReceptiveField(*axes)

    def explain(self, shapes: list[Shape], out: Shape) -> list[str]:
        if self.size is not None:
            lines = [f"{show(shapes[0])} -> size {show(out[1:])}"]
        else:
            lines = [f"{label}_out = {size} * {scale} = {o}" for label, size, scale, o
                     in zip("HW", shapes[0][1:], pair(self.scale_factor), out[1:])]
        return [*lines, "params = 0; MACs = 0 (the MAC convention counts conv2d and linear only)"]

    def explain_field(self, before: list[ReceptiveField], after: ReceptiveField) -> list[str]:
        field = before[0]
        return [explain_resampling(label, b, a, fmt(a.jump / b.jump), fmt) for label, b, a in zip(
            "HW", (field.height, field.width), (after.height, after.width))]

    imports_torch = ("torch.nn.Upsample", "torch.nn.functional.interpolate")

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        """Whole scale factors or a fixed size, nearest or bilinear."""
        if call.module is not None:
            size, scale, mode, corners = (call.module.size, call.module.scale_factor, call.module.mode,
                                          call.module.align_corners)
        else:
            size, scale = call.arg(1, "size"), call.arg(2, "scale_factor")
            mode, corners = call.arg(3, "mode", "nearest"), call.arg(4, "align_corners")
        if mode not in ("nearest", "bilinear"):
            return None
        if scale is not None:
            factors = list(scale) if isinstance(scale, (tuple, list)) else [scale, scale]
            if any(float(f) != int(f) for f in factors):
                return None
            scale = [int(f) for f in factors]
        fields = plain_fields(size=size, scale_factor=scale, mode=mode)
        if corners is not None:
            fields["align_corners"] = bool(corners)
        return {key: value for key, value in fields.items() if value is not None}

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        scale = None if self.scale_factor is None else tuple(float(s) for s in pair(self.scale_factor))
        size = None if self.size is None else pair(self.size)
        return nn.Upsample(size=size, scale_factor=scale, mode=self.mode, align_corners=self.align_corners)
