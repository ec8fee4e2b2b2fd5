"""The base every layer type builds on, and the small helpers (field types, formatting) they share.

A layer type is one frozen pydantic model tagged by ``type``. It owns its config (the fields), its
output-shape rule, its parameter, buffer and MAC counts, its receptive-field rule, its ``--explain``
arithmetic and ``to_torch()``. Only ``to_torch`` imports torch, inside the method.
Window arithmetic lives in window.py, the receptive-field algebra in receptive_field.py.
"""


import math
from fractions import Fraction
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import LayerError
from .receptive_field import ReceptiveField

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


def plain_fields(**fields: Any) -> dict[str, Any]:
    """Field values as a spec writes them: ``(3, 3)`` -> ``3``, ``(3, 5)`` -> ``[3, 5]``."""
    result = {}
    for name, value in fields.items():
        if isinstance(value, (tuple, list)):
            value = value[0] if len(value) == 2 and value[0] == value[1] else list(value)
        result[name] = value
    return result


def fmt(number: float) -> str:
    """An int as ``1,234``; a fractional float as the shortest form (``1.5``); a Fraction that no
    short decimal writes exactly as ``7/15``."""
    if float(number).is_integer() and number == int(number):
        return f"{int(number):,}"
    if isinstance(number, Fraction) and Fraction(float(f"{float(number):g}")) != number:
        return f"{number.numerator}/{number.denominator}"
    return f"{float(number):g}"


def show(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


class Example:
    """One way to use a layer type: its fields and the shape of each input (without the batch
    axis). ``Example((3, 8, 8), out_channels=4, kernel_size=3)``; a merge takes several shapes:
    ``Example((4, 5, 5), (4, 5, 5))``. tests/test_layers.py checks every example of every
    registered type against PyTorch and onnxruntime; ``cnnspec layers`` does not show them."""

    __slots__ = ("inputs", "fields")

    def __init__(self, *inputs: Shape, **fields: Any) -> None:
        if not inputs:
            raise ValueError("an Example needs at least one input shape")
        self.inputs: tuple[Shape, ...] = tuple(tuple(shape) for shape in inputs)
        self.fields: dict[str, Any] = fields

    def __repr__(self) -> str:
        fields = "".join(f", {key}={value!r}" for key, value in self.fields.items())
        return f"Example({', '.join(map(show, self.inputs))}{fields})"


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
    #: what a field left at None stands for, in the layer reference (e.g. {"in_channels": "inferred"})
    none_default: ClassVar[dict[str, str]] = {}
    #: field sets with input shapes that the registry-wide tests try (at least one per type)
    examples: ClassVar[tuple[Example, ...]] = ()
    #: the output is a probability distribution over the channel axis (softmax), not logits
    produces_probabilities: ClassVar[bool] = False
    #: slides learned 2-D filters over a feature map: weight [C_out, C_in/groups, k_h, k_w];
    #: ``plots filters``/``activations`` draw it, training uses channels_last for it
    is_convolution: ClassVar[bool] = False
    #: ``explain`` already states the buffers (the report then does not add a buffers line)
    explains_buffers: ClassVar[bool] = False
    #: the receptive field changes with the input size (adaptive pooling: the windows follow it)
    field_depends_on_input_size: ClassVar[bool] = False

    #: what ``cnnspec import`` turns into this layer type: torch modules and functions by qualified
    #: name ("torch.nn.Conv2d", "torch.nn.functional.relu", "operator.add"), tensor methods as
    #: "Tensor.NAME". Several classes may claim one name; the first (registry order) whose
    #: ``from_torch`` accepts the call gets it.
    imports_torch: ClassVar[tuple[str, ...]] = ()
    #: ONNX operator types this layer type imports (``from_onnx``)
    imports_onnx: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        """The fields for a captured torch call (``cnnspec.importer.capture.Call``), or None when
        this type cannot express it. By default a module's attributes named like the fields (PyTorch's
        keywords are the field names); functions need their own rule."""
        return call.module_fields(cls) if call.module is not None else None

    @classmethod
    def from_onnx(cls, call: Any) -> dict[str, Any] | None:
        """The fields for an ONNX node (``cnnspec.importer.onnx_capture.Call``), or None."""
        return {}

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

    def explain_field(self, before: list[ReceptiveField], after: ReceptiveField) -> list[str]:
        """The receptive-field arithmetic from the inputs' fields to ``after`` (none by default:
        the report then says the field passes through, or prints it)."""
        return []

    def label(self) -> str:
        """Short description for diagrams, e.g. ``conv2d 3x3/1``; by default the type."""
        return self.type

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


def check_groups(groups: int, in_channels: int, out_channels: int) -> None:
    """conv2d and conv_transpose2d: ``groups`` must divide both channel counts; the error lists the
    largest groups that would work."""
    for what, count in (("in_channels", in_channels), ("out_channels", out_channels)):
        if count % groups:
            common = math.gcd(in_channels, out_channels)
            working = [str(g) for g in range(1, common + 1) if common % g == 0]
            raise LayerError(
                f"groups={groups} does not divide {what}={count}", field="groups",
                expected=f"groups dividing both in_channels ({in_channels}) and out_channels ({out_channels})",
                received=f"groups={groups}, in_channels={in_channels}, out_channels={out_channels}",
                hint="groups that work here: " + ", ".join(working[-6:]),
            )


def prod(values: tuple[int, ...] | list[int]) -> int:
    return math.prod(values)


