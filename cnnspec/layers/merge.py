"""Layers where paths meet: add (residual connections), concat (Inception-style branches) and mul
(squeeze-and-excitation gating)."""


from typing import Any, ClassVar, Literal

from ..errors import LayerError
from .base import Example, Layer, Shape, fmt, prod, show
from .receptive_field import Axis, ReceptiveField


class _Merge(Layer):
    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[int | None] = None

    def receptive_field(self, fields, shapes, out):
        """The union of the input fields (Araujo et al.); null for vectors."""
        if len(out) != 3 or any(f is None for f in fields):
            return None
        return ReceptiveField.union(fields)

    def explain_field(self, before: list[ReceptiveField], after: ReceptiveField) -> list[str]:
        """Per axis, each input's pixel span [start - (size-1)/2, start + (size-1)/2] and their union."""
        lines = []
        for label, axis in (("H", "height"), ("W", "width")):
            spans = ", ".join(f"[{fmt(getattr(f, axis).low)}, {fmt(getattr(f, axis).high)}]" for f in before)
            merged = getattr(after, axis)
            lines.append(
                f"RF_{label}: union of {spans} = [{fmt(merged.low)}, {fmt(merged.high)}]: "
                f"size = {fmt(merged.size)}, jump = {fmt(merged.jump)}, start = {fmt(merged.start)}"
            )
        return lines


def _received(shapes: list[Shape], sources: list[str]) -> str:
    return ", ".join(f"{name}={show(shape)}" for name, shape in zip(sources, shapes))


class Add(_Merge):
    """Element-wise sum of inputs of equal shape (residual connections)."""

    type: Literal["add"] = "add"

    examples = (Example((4, 8, 8), (4, 8, 8)), Example((3, 5, 6), (3, 5, 6), (3, 5, 6)), Example((6,), (6,)))

    imports_torch = ("_operator.add", "_operator.iadd", "torch.add", "Tensor.add", "Tensor.add_")
    imports_onnx = ("Add", "Sum")

    @classmethod
    def from_onnx(cls, call: Any) -> dict[str, Any] | None:
        same = len(call.input_shapes) >= 2 and all(s == call.input_shapes[0] for s in call.input_shapes)
        return {} if same else None

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        """The sum of two tensors of one shape (not a tensor plus a number, not alpha != 1)."""
        same = len(call.input_shapes) == 2 and call.input_shapes[0] == call.input_shapes[1]
        return {} if same and call.arg(2, "alpha", 1) == 1 and not call.constants else None

    def check_inputs(self, shapes: list[Shape], sources: list[str]) -> None:
        if any(shape != shapes[0] for shape in shapes):
            hint = None
            if all(len(s) == 3 for s in shapes):
                hint = ("give the shortcut a 1x1 conv2d with the main path's out_channels and stride "
                        "(a projection), as ResNet does")
            raise LayerError(
                "needs inputs of equal shape",
                field="inputs", expected="every input with the same shape",
                received=_received(shapes, sources), hint=hint,
            )

    def to_torch(self, shapes: list[Shape]) -> Any:
        from .modules import Add as AddModule

        return AddModule()


class Concat(_Merge):
    """Concatenation along channels (feature maps of equal H, W) or features (vectors)."""

    type: Literal["concat"] = "concat"

    examples = (Example((4, 8, 8), (4, 8, 8)), Example((2, 5, 6), (3, 5, 6), (1, 5, 6)), Example((3,), (5,)))

    imports_torch = ("torch.cat", "torch.concat")
    imports_onnx = ("Concat",)

    @classmethod
    def from_onnx(cls, call: Any) -> dict[str, Any] | None:
        return {} if call.attribute("axis") % (len(call.input_shapes[0]) + 1) == 1 and len(call.input_shapes) > 1 else None

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        dim = call.arg(1, "dim", 0)
        return {} if dim % (len(call.input_shapes[0]) + 1) == 1 else None

    def check_inputs(self, shapes: list[Shape], sources: list[str]) -> None:
        ranks = {len(s) for s in shapes}
        if len(ranks) > 1 or (ranks == {3} and len({s[1:] for s in shapes}) > 1):
            raise LayerError(
                "needs feature maps of equal height and width (or all vectors)",
                field="inputs", expected="inputs [C_i, H, W] with the same H and W",
                received=_received(shapes, sources),
                hint="pad or pool the branches so that their spatial sizes agree",
            )

    def output_shape(self, shapes: list[Shape]) -> Shape:
        return (sum(s[0] for s in shapes), *shapes[0][1:])

    def explain(self, shapes: list[Shape], out: Shape) -> list[str]:
        return [f"C_out = {' + '.join(str(s[0]) for s in shapes)} = {out[0]}"]

    def to_torch(self, shapes: list[Shape]) -> Any:
        from .modules import Concat as ConcatModule

        return ConcatModule()


class Mul(_Merge):
    """Element-wise product of two or more inputs: equal shapes, or a [C, 1, 1] gate broadcast
    over a [C, H, W] map (squeeze-and-excitation: x * sigmoid(fc(pool(x))))."""

    type: Literal["mul"] = "mul"

    examples = (
        Example((4, 5, 5), (4, 1, 1)),
        Example((3, 4, 6), (3, 4, 6), (3, 4, 6)),
        Example((5,), (5,)),
    )

    #: a [C, 1, 1] gate's field (from a global pool: the whole input) is shared by every unit, so
    #: the union is exact for unit 0 and the largest field, as for adaptive pooling
    field_depends_on_input_size: ClassVar[bool] = True

    def output_shape(self, shapes: list[Shape]) -> Shape:
        return max(shapes, key=prod)

    def receptive_field(self, fields, shapes, out):
        """The union of the inputs' fields at unit 0; the jump is the map's (a broadcast gate has
        one unit, whatever jump its pooling reports)."""
        merged = super().receptive_field(fields, shapes, out)
        if merged is None or all(shape == out for shape in shapes):
            return merged
        maps = [field for field, shape in zip(fields, shapes) if shape == out]
        return ReceptiveField(
            Axis(merged.height.size, max(f.height.jump for f in maps), merged.height.start),
            Axis(merged.width.size, max(f.width.jump for f in maps), merged.width.start),
        )

    def check_inputs(self, shapes: list[Shape], sources: list[str]) -> None:
        """Every input has the output's shape, or (feature maps) is a [C, 1, 1] gate of its C."""
        out = max(shapes, key=prod)
        gate = (out[0], 1, 1) if len(out) == 3 else None
        if any(shape != out and shape != gate for shape in shapes):
            raise LayerError(
                "needs inputs of equal shape, or a [C, 1, 1] gate with the map's C channels",
                field="inputs",
                expected=f"every input {show(out)}" + (f" or {show(gate)}" if gate else ""),
                received=_received(shapes, sources),
                hint="a squeeze-and-excitation gate is adaptive_avgpool2d with output_size 1, then 1x1 convs "
                "back to the map's channels",
            )

    def explain(self, shapes: list[Shape], out: Shape) -> list[str]:
        products = (len(shapes) - 1) * prod(out)
        return [
            f"params = 0; MACs = 0: the MAC convention counts conv2d and linear only "
            f"(this product is {len(shapes) - 1} * {' * '.join(map(str, out))} = {fmt(products)} multiplies)",
        ]

    imports_torch = ("_operator.mul", "torch.mul", "Tensor.mul")
    imports_onnx = ("Mul",)

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        """The product of two tensors (squeeze-and-excitation: the [C, 1, 1] gate times the map)."""
        return {} if len(call.input_shapes) == 2 and not call.constants else None

    @classmethod
    def from_onnx(cls, call: Any) -> dict[str, Any] | None:
        return {} if len(call.input_shapes) == 2 else None

    def to_torch(self, shapes: list[Shape]) -> Any:
        from .modules import Mul as MulModule

        return MulModule()
