"""Layers that rearrange channels: channel_shuffle and channel_slice (ShuffleNet's split and mix)."""


from typing import Any, Literal

from pydantic import Field

from ..errors import LayerError
from .base import Example, Layer, PositiveInt, Shape, show


class ChannelShuffle(Layer):
    """PyTorch's nn.ChannelShuffle: view the C channels as [groups, C/groups], transpose to
    [C/groups, groups], flatten back, so that each group's output mixes every input group
    (ShuffleNet). Output channel i*groups + g is input channel g*(C/groups) + i."""

    type: Literal["channel_shuffle"] = "channel_shuffle"
    groups: PositiveInt = Field(description="Number of groups; must divide the channels.")

    needs = "feature_map"
    examples = (Example((6, 4, 4), groups=2), Example((6, 3, 5), groups=3))

    def output_shape(self, shapes: list[Shape]) -> Shape:
        channels = shapes[0][0]
        if channels % self.groups:
            working = [str(g) for g in range(1, channels + 1) if channels % g == 0]
            raise LayerError(
                f"groups={self.groups} does not divide the {channels} input channels",
                field="groups", expected=f"groups dividing {channels}",
                received=f"groups={self.groups}, input={show(shapes[0])}",
                hint="groups that work here: " + ", ".join(working[-6:]))
        return shapes[0]

    def explain(self, shapes: list[Shape], out: Shape) -> list[str]:
        per_group = shapes[0][0] // self.groups
        return [f"[{shapes[0][0]}] channels -> [{self.groups}, {per_group}] -> transpose -> [{per_group}, "
                f"{self.groups}] -> [{shapes[0][0]}]; params = 0"]

    imports_torch = ("torch.nn.ChannelShuffle", "torchvision.models.shufflenetv2.channel_shuffle")

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        if call.module is not None:
            return call.module_fields(cls)
        return {"groups": int(call.arg(1, "groups"))}

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.ChannelShuffle(self.groups)


class ChannelSlice(Layer):
    """Channels start..end-1, Python slice semantics: negative indices count from the end, end
    exclusive, null end = the last channel. ShuffleNetV2's x.chunk(2, dim=1) is two slices,
    {start: 0, end: C/2} and {start: C/2}. Works on feature maps and vectors (their features)."""

    type: Literal["channel_slice"] = "channel_slice"
    start: int = Field(0, strict=True, description="First channel kept (negative: from the end).")
    end: int | None = Field(None, strict=True, description="One past the last channel kept (negative: from the end); "
                            "null: up to the last channel.")

    none_default = {"end": "the last channel"}
    examples = (Example((6, 4, 4), start=0, end=3), Example((6, 4, 4), start=-2), Example((5,), start=1, end=-1))

    def bounds(self, channels: int) -> tuple[int, int]:
        """start, end resolved as Python's slice(start, end).indices(channels)."""
        start, end, _ = slice(self.start, self.end).indices(channels)
        return start, end

    def output_shape(self, shapes: list[Shape]) -> Shape:
        channels = shapes[0][0]
        start, end = self.bounds(channels)
        if end <= start:
            raise LayerError(
                f"the slice keeps no channel: [{self.start}:{'' if self.end is None else self.end}] of "
                f"{channels} channels is empty",
                field="start", expected=f"start before end, both within -{channels}..{channels}",
                received=f"start={self.start}, " + ("" if self.end is None else f"end={self.end}, ")
                + f"input={show(shapes[0])}")
        return (end - start, *shapes[0][1:])

    def explain(self, shapes: list[Shape], out: Shape) -> list[str]:
        start, end = self.bounds(shapes[0][0])
        return [f"C_out = end - start = {end} - {start} = {end - start} (channels {start}..{end - 1}); params = 0"]

    imports_torch = ("Tensor.chunk", "torch.chunk")

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        """Item i of ``x.chunk(n, dim=1)``: torch makes chunks of ceil(C / n) channels."""
        chunks, dim = call.arg(1, "chunks"), call.arg(2, "dim", 0)
        if call.item is None or dim % (len(call.input_shapes[0]) + 1) != 1:
            return None
        channels = call.input_shapes[0][0]
        step = -(-channels // chunks)
        start = call.item * step
        return {"start": start, "end": min(channels, start + step)}

    def to_torch(self, shapes: list[Shape]) -> Any:
        from .modules import ChannelSlice as ChannelSliceModule

        return ChannelSliceModule(*self.bounds(shapes[0][0]))
