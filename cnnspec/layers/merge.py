"""Layers where paths meet: add (residual connections) and concat (Inception-style branches)."""


from typing import Any, ClassVar, Literal

from ..errors import LayerError
from .base import Example, Layer, Shape, fmt, show
from .receptive_field import ReceptiveField


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
