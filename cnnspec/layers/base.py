"""The base every layer type builds on, and the pure arithmetic shared by all of them.

A layer type is one frozen pydantic model tagged by ``type``. It owns its config (the fields), its
output-shape rule, its parameter, buffer and MAC counts, its receptive-field rule, its ``--explain``
arithmetic and ``to_torch()``. Only ``to_torch`` imports torch, inside the method.
"""


import math
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import LayerError

Shape = tuple[int, ...]
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

PositiveInt = Annotated[int, Field(strict=True, gt=0)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]
Pair = PositiveInt | tuple[PositiveInt, PositiveInt]
NonNegativePair = NonNegativeInt | tuple[NonNegativeInt, NonNegativeInt]
Probability = Annotated[float, Field(strict=True, ge=0.0, le=1.0)]


def pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``3`` -> ``(3, 3)``; ``[3, 5]`` -> ``(3, 5)`` (height, width), as PyTorch reads it."""
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def fmt(number: float) -> str:
    """An int as ``1,234``; a fractional float as the shortest form (``1.5``)."""
    if float(number).is_integer():
        return f"{int(number):,}"
    return f"{number:g}"


def show(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


@dataclass(frozen=True)
class Axis:
    """Receptive field along one axis (Araujo et al.): size, jump (stride in input pixels) and
    start (centre of output unit 0, in input pixel coordinates)."""

    size: float
    jump: float
    start: float

    def through_window(self, kernel: int, stride: float, pad_begin: float, dilation: int = 1) -> "Axis":
        """``size += (k'-1)*jump; start += ((k'-1)/2 - p)*jump; jump *= s`` with ``k' = d(k-1)+1``."""
        effective = dilation * (kernel - 1) + 1
        return Axis(
            size=self.size + (effective - 1) * self.jump,
            jump=self.jump * stride,
            start=self.start + ((effective - 1) / 2 - pad_begin) * self.jump,
        )

    @property
    def low(self) -> float:
        return self.start - (self.size - 1) / 2

    @property
    def high(self) -> float:
        return self.start + (self.size - 1) / 2


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one output unit, per axis (height, width)."""

    height: Axis
    width: Axis

    @classmethod
    def identity(cls) -> "ReceptiveField":
        return cls(Axis(1, 1, 0), Axis(1, 1, 0))

    def to_dict(self) -> dict[str, list[float]]:
        def num(x: float) -> float | int:
            return int(x) if float(x).is_integer() else x

        axes = (self.height, self.width)
        return {
            "size": [num(a.size) for a in axes],
            "jump": [num(a.jump) for a in axes],
            "start": [num(a.start) for a in axes],
        }

    @staticmethod
    def union(fields: "list[ReceptiveField]") -> "ReceptiveField":
        """Where paths merge the field is the union of the input fields (jumps agree for any
        well-formed merge; the largest is kept otherwise)."""

        def merge(axes: list[Axis]) -> Axis:
            low = min(a.low for a in axes)
            high = max(a.high for a in axes)
            return Axis(size=high - low + 1, jump=max(a.jump for a in axes), start=(low + high) / 2)

        return ReceptiveField(merge([f.height for f in fields]), merge([f.width for f in fields]))


def window_output(
    size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """PyTorch's output size ``floor((H + p_b + p_e - d(k-1) - 1)/s) + 1``; with ``ceil_mode`` the
    division rounds up, but the last window must start inside the input or the left padding
    (pytorch/pytorch#45357)."""
    span = size + pad_begin + pad_end - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out


def explain_window(
    label: str, size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int,
    ceil_mode: bool, out: int,
) -> str:
    """The output-size formula with the numbers filled in, e.g.
    ``H_out = floor((28 + 2*1 - 3)/1) + 1 = 28``."""
    padding = f"2*{pad_begin}" if pad_begin == pad_end else f"{pad_begin} + {pad_end}"
    kernel_text = str(kernel) if dilation == 1 else f"({dilation}*({kernel}-1) + 1)"
    rounding = "ceil" if ceil_mode else "floor"
    text = f"{label}_out = {rounding}(({size} + {padding} - {kernel_text})/{stride}) + 1"
    span = size + pad_begin + pad_end - dilation * (kernel - 1) - 1
    if ceil_mode and out != -(-span // stride) + 1:
        text += " - 1 (the last window would start in the right padding)"
    return f"{text} = {out}"


def explain_field(label: str, before: Axis, after: Axis, kernel: int, stride: float,
                  pad_begin: float, dilation: int = 1) -> str:
    effective = dilation * (kernel - 1) + 1
    return (
        f"RF_{label}: size = {fmt(before.size)} + ({effective}-1)*{fmt(before.jump)} = {fmt(after.size)}, "
        f"jump = {fmt(before.jump)}*{fmt(stride)} = {fmt(after.jump)}, "
        f"start = {fmt(before.start)} + (({effective}-1)/2 - {fmt(pad_begin)})*{fmt(before.jump)}"
        f" = {fmt(after.start)}"
    )


class Layer(BaseModel):
    """Fields every layer has: ``type``, ``name``, ``inputs`` and ``trainable``."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    type: str
    name: str | None = Field(
        None, pattern=NAME_PATTERN,
        description="Unique layer name; default: the type and its position among layers of that type.",
    )
    inputs: list[str] | None = Field(
        None, min_length=1,
        description="Names of the layers feeding this one; default: the previous layer. "
        "'input' names the model input.",
    )
    trainable: bool = Field(True, description="false freezes this layer's parameters.")

    #: how many inputs the layer takes (max None = any number)
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int | None] = 1
    #: "feature_map" ([C, H, W]), "vector" ([F]) or None (either)
    needs: ClassVar[Literal["feature_map", "vector"] | None] = None

    # -- rules every layer type may override -------------------------------------------------
    def output_shape(self, shapes: list[Shape]) -> Shape:
        """Pointwise by default: the output has the input's shape."""
        return shapes[0]

    def params(self, shapes: list[Shape]) -> int:
        return 0

    def buffers(self, shapes: list[Shape]) -> int:
        return 0

    def macs(self, shapes: list[Shape], out: Shape) -> int:
        return 0

    def receptive_field(
        self, fields: list[ReceptiveField | None], shapes: list[Shape], out: Shape
    ) -> ReceptiveField | None:
        """Pointwise layers keep the field; it is null once the output is a vector."""
        return fields[0] if len(out) == 3 else None

    def explain(self, shapes: list[Shape], out: Shape) -> list[str]:
        return []

    def to_torch(self, shapes: list[Shape]) -> Any:
        raise NotImplementedError(f"{self.type} has no PyTorch builder")

    # -- shared checks -----------------------------------------------------------------------
    def check_inputs(self, shapes: list[Shape], sources: list[str]) -> None:
        """Raise a LayerError when an input is a vector where a feature map is needed, or the
        reverse; the message says which layer produced it and how to fix it."""
        for shape, source in zip(shapes, sources):
            if self.needs == "feature_map" and len(shape) != 3:
                raise LayerError(
                    f"needs a feature map [C, H, W] but '{source}' gives the vector {show(shape)}",
                    expected="an input of shape [C, H, W]",
                    received=f"{source}={show(shape)}",
                    hint="move this layer before the flatten / global_avgpool that makes a vector",
                )
            if self.needs == "vector" and len(shape) != 1:
                raise LayerError(
                    f"needs a vector input but '{source}' gives {show(shape)}; "
                    "add a flatten layer before it",
                    expected="an input of shape [F]",
                    received=f"{source}={show(shape)}",
                    hint="insert {type: flatten} (or global_avgpool) before this layer",
                )

    def check_declared(self, field_name: str, declared: int | None, actual: int) -> None:
        """``in_channels``/``in_features`` are optional; when written, they must be right."""
        if declared is not None and declared != actual:
            noun = "features" if field_name == "in_features" else "channels"
            raise LayerError(
                f"{field_name} is {declared} but the input has {actual} {noun}",
                field=field_name,
                expected=f"{field_name}: {actual} (or leave it out: it is inferred)",
                received=f"{field_name}={declared}",
            )


def prod(values: tuple[int, ...] | list[int]) -> int:
    return math.prod(values)


@dataclass(frozen=True)
class Window:
    """One axis of a sliding window: kernel, stride, padding at each end, dilation."""

    kernel: int
    stride: int
    pad_begin: int
    pad_end: int
    dilation: int = 1


class Windowed(Layer):
    """Shared rules for layers that slide a window (conv2d, maxpool2d, avgpool2d)."""

    needs = "feature_map"

    def windows(self) -> tuple[Window, Window]:
        raise NotImplementedError

    def receptive_field(self, fields, shapes, out):
        field = fields[0]
        height, width = self.windows()
        return ReceptiveField(
            field.height.through_window(height.kernel, height.stride, height.pad_begin, height.dilation),
            field.width.through_window(width.kernel, width.stride, width.pad_begin, width.dilation),
        )

    def explain_field(self, before: ReceptiveField, after: ReceptiveField) -> list[str]:
        return [
            explain_field(label, b, a, w.kernel, w.stride, w.pad_begin, w.dilation)
            for label, b, a, w in zip("HW", (before.height, before.width), (after.height, after.width), self.windows())
        ]

    def spatial_output(self, shapes: list[Shape], ceil_mode: bool = False) -> tuple[int, int]:
        """Output height and width; raises a LayerError naming every operand if one is < 1."""
        _, height, width = shapes[0]
        sizes = []
        for label, size, w in zip("HW", (height, width), self.windows()):
            out = window_output(size, w.kernel, w.stride, w.pad_begin, w.pad_end, w.dilation, ceil_mode)
            if out < 1:
                effective = w.dilation * (w.kernel - 1) + 1
                raise LayerError(
                    f"the output shrinks to zero along {label}: the window ({effective}) is larger than "
                    f"the padded input ({size} + {w.pad_begin + w.pad_end})",
                    field="kernel_size",
                    expected=f"an effective kernel of at most {size + w.pad_begin + w.pad_end}",
                    received=f"input {label}={size}, kernel_size={w.kernel}, stride={w.stride}, "
                    f"padding={w.pad_begin}+{w.pad_end}, dilation={w.dilation}",
                    hint="use a smaller kernel, add padding, or remove a downsampling layer before this one",
                )
            sizes.append(out)
        return sizes[0], sizes[1]

    def explain_windows(self, shapes: list[Shape], out: Shape, ceil_mode: bool = False) -> list[str]:
        return [
            explain_window(label, size, w.kernel, w.stride, w.pad_begin, w.pad_end, w.dilation, ceil_mode, o)
            for label, size, w, o in zip("HW", shapes[0][1:], self.windows(), out[1:])
        ]
