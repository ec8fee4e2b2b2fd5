"""Pooling: maxpool2d, avgpool2d, adaptive_avgpool2d and global_avgpool."""


from typing import Any, Literal

from pydantic import Field

from ..errors import LayerError
from .base import Example, Layer, NonNegativePair, Pair, Shape, pair, show

from .base import Layer, NonNegativePair, Pair, Shape, pair, plain_fields, show
from .receptive_field import Axis, ReceptiveField
from .window import Window, Windowed


class _Pool(Windowed):
    """Shared fields and rules of max and average pooling (kernel, stride = kernel, padding)."""

    kernel_size: Pair = Field(description="Window size k or [k_h, k_w].")
    stride: Pair | None = Field(None, description="Step between windows; default: kernel_size.")
    padding: NonNegativePair = Field(0, description="Implicit padding per side; at most half the kernel.")
    ceil_mode: bool = Field(False, description="Round the output size up instead of down.")

    none_default = {"stride": "kernel_size"}

    def _dilation(self) -> tuple[int, int]:
        return (1, 1)

    def windows(self) -> tuple[Window, Window]:
        stride = pair(self.stride if self.stride is not None else self.kernel_size)
        result = [
            Window(k, s, p, p, d)
            for k, s, p, d in zip(pair(self.kernel_size), stride, pair(self.padding), self._dilation())
        ]
        return result[0], result[1]

    def output_shape(self, shapes: list[Shape]) -> Shape:
        for window in self.windows():
            if window.pad_begin > window.kernel // 2:
                raise LayerError(
                    f"padding {window.pad_begin} is more than half the kernel ({window.kernel})",
                    field="padding",
                    expected=f"padding <= kernel_size // 2 = {window.kernel // 2} (PyTorch's rule)",
                    received=f"padding={self.padding}, kernel_size={self.kernel_size}",
                )
        return (shapes[0][0], *self.spatial_output(shapes, self.ceil_mode))

    def explain(self, shapes: list[Shape], out: Shape) -> list[str]:
        return [*self.explain_windows(shapes, out, self.ceil_mode), "params = 0 (pooling has no weights)"]


def onnx_window(call: Any) -> dict[str, Any] | None:
    """kernel_size, stride, padding and ceil_mode of an ONNX MaxPool/AveragePool node; None for
    asymmetric pads (ONNX writes [top, left, bottom, right]) or auto_pad."""
    top, left, bottom, right = call.attribute("pads", [0, 0, 0, 0])
    if (top, left) != (bottom, right) or call.attribute("auto_pad", "NOTSET") != "NOTSET":
        return None
    return plain_fields(kernel_size=call.attribute("kernel_shape"), stride=call.attribute("strides", [1, 1]),
                        padding=[top, left], ceil_mode=bool(call.attribute("ceil_mode", 0)))


class MaxPool2d(_Pool):
    """Max pooling: the largest value in each window, per channel."""

    type: Literal["maxpool2d"] = "maxpool2d"

    imports_torch = ("torch.nn.MaxPool2d", "torch.nn.functional.max_pool2d")
    imports_onnx = ("MaxPool",)

    @classmethod
    def from_onnx(cls, call: Any) -> dict[str, Any] | None:
        window = onnx_window(call)
        return None if window is None else {**window, **plain_fields(dilation=call.attribute("dilations", [1, 1]))}

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        if call.module is not None:
            return None if call.module.return_indices else call.module_fields(cls)
        if call.arg(6, "return_indices", False):
            return None
        kernel = call.arg(1, "kernel_size")
        return plain_fields(kernel_size=kernel, stride=call.arg(2, "stride") or kernel, padding=call.arg(3, "padding", 0),
                            dilation=call.arg(4, "dilation", 1), ceil_mode=bool(call.arg(5, "ceil_mode", False)))
    dilation: Pair = Field(1, description="Spacing between window taps.")

    examples = (
        Example((4, 8, 8), kernel_size=2),
        Example((3, 9, 10), kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True),
        Example((2, 7, 8), kernel_size=[3, 2], stride=[1, 2], padding=[1, 0]),
    )

    def _dilation(self) -> tuple[int, int]:
        return pair(self.dilation)

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.MaxPool2d(
            pair(self.kernel_size), pair(self.stride or self.kernel_size), pair(self.padding),
            pair(self.dilation), ceil_mode=self.ceil_mode,
        )


class AvgPool2d(_Pool):
    """Average pooling: the mean of each window, per channel."""

    type: Literal["avgpool2d"] = "avgpool2d"

    imports_torch = ("torch.nn.AvgPool2d", "torch.nn.functional.avg_pool2d")
    imports_onnx = ("AveragePool",)

    @classmethod
    def from_onnx(cls, call: Any) -> dict[str, Any] | None:
        window = onnx_window(call)
        return None if window is None else {**window, "count_include_pad": bool(call.attribute("count_include_pad", 0))}

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        if call.module is not None:
            return None if call.module.divisor_override else call.module_fields(cls)
        if call.arg(6, "divisor_override"):
            return None
        kernel = call.arg(1, "kernel_size")
        return plain_fields(kernel_size=kernel, stride=call.arg(2, "stride") or kernel, padding=call.arg(3, "padding", 0),
                            ceil_mode=bool(call.arg(4, "ceil_mode", False)),
                            count_include_pad=bool(call.arg(5, "count_include_pad", True)))
    count_include_pad: bool = Field(True, description="Count padded zeros in the average's divisor.")

    examples = (
        Example((4, 8, 8), kernel_size=3, stride=2, padding=1),
        Example((2, 7, 9), kernel_size=[3, 2], stride=[2, 1], padding=1, ceil_mode=True, count_include_pad=False),
    )

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.AvgPool2d(
            pair(self.kernel_size), pair(self.stride or self.kernel_size), pair(self.padding),
            ceil_mode=self.ceil_mode, count_include_pad=self.count_include_pad,
        )


def adaptive_cells(size: int, cells: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive windows: cell i covers floor(i*n/m) .. ceil((i+1)*n/m) - 1."""
    return [(i * size // cells, -(-(i + 1) * size // cells) - 1) for i in range(cells)]


class AdaptiveAvgPool2d(Layer):
    """Average pooling to a fixed output size, whatever the input size."""

    type: Literal["adaptive_avgpool2d"] = "adaptive_avgpool2d"

    imports_torch = ("torch.nn.AdaptiveAvgPool2d", "torch.nn.functional.adaptive_avg_pool2d")
    imports_onnx = ("GlobalAveragePool", "ReduceMean")

    @classmethod
    def from_onnx(cls, call: Any) -> dict[str, Any] | None:
        """GlobalAveragePool, or a ReduceMean over height and width that keeps them (size 1)."""
        if call.op_type == "ReduceMean":
            axes = call.constant(1) if call.constant(1) is not None else call.attribute("axes")
            if axes is None or sorted(int(a) % 4 for a in axes) != [2, 3] or not call.attribute("keepdims", 1):
                return None
        return {"output_size": 1}

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        size = call.module.output_size if call.module is not None else call.arg(1, "output_size")
        if size is None or (isinstance(size, (tuple, list)) and None in size):
            return None
        return plain_fields(output_size=size)
    output_size: Pair = Field(description="Output size m or [m_h, m_w].")

    needs = "feature_map"
    field_depends_on_input_size = True
    examples = (Example((4, 8, 8), output_size=3), Example((2, 12, 10), output_size=[3, 5]), Example((1, 5, 5), output_size=7))

    def output_shape(self, shapes: list[Shape]) -> Shape:
        return (shapes[0][0], *pair(self.output_size))

    def receptive_field(self, fields, shapes, out):
        """n divisible by m: a window with k = s = n/m. Otherwise the windows differ in size; the
        reported size is the largest window's (an upper bound), the jump the mean step n/m, and the
        start the centre of cell 0."""
        axes = []
        for axis, size, cells in zip((fields[0].height, fields[0].width), shapes[0][1:], out[1:]):
            if size % cells == 0:
                step = size // cells
                axes.append(axis.through_window(step, step, 0))
                continue
            spans = adaptive_cells(size, cells)
            largest = max(end - begin + 1 for begin, end in spans)
            first = spans[0][1] - spans[0][0] + 1
            axes.append(Axis(
                size=axis.size + (largest - 1) * axis.jump,
                jump=axis.jump * size / cells,
                start=axis.start + (first - 1) / 2 * axis.jump,
            ))
        return ReceptiveField(axes[0], axes[1])

    def explain(self, shapes: list[Shape], out: Shape) -> list[str]:
        lines = []
        for label, size, cells in zip("HW", shapes[0][1:], out[1:]):
            if size % cells == 0:
                lines.append(f"{label}: {size} -> {cells}: windows of k = s = {size}/{cells} = {size // cells}")
            else:
                spans = adaptive_cells(size, cells)
                widths = sorted({end - begin + 1 for begin, end in spans})
                lines.append(
                    f"{label}: {size} -> {cells}: {size} is not divisible by {cells}; cell i covers "
                    f"floor(i*{size}/{cells}) .. ceil((i+1)*{size}/{cells}) - 1, windows of "
                    f"{' or '.join(map(str, widths))} pixels (field size uses the largest)"
                )
        return lines

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.AdaptiveAvgPool2d(pair(self.output_size))


class GlobalAvgPool(Layer):
    """The mean of each channel over the whole map: [C, H, W] -> the vector [C]."""

    type: Literal["global_avgpool"] = "global_avgpool"

    imports_torch = ("Tensor.mean", "torch.mean")
    imports_onnx = ("ReduceMean",)

    @classmethod
    def from_onnx(cls, call: Any) -> dict[str, Any] | None:
        axes = call.constant(1) if call.constant(1) is not None else call.attribute("axes")
        keep = call.attribute("keepdims", 1)
        return {} if axes is not None and sorted(int(a) % 4 for a in axes) == [2, 3] and not keep else None

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        """``x.mean([2, 3])`` (ShuffleNetV2's head): the mean over height and width, without keepdim."""
        dims = call.arg(1, "dim")
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        keep = call.arg(2, "keepdim", False)
        return {} if len(call.input_shapes[0]) == 3 and sorted(d % 4 for d in dims) == [2, 3] and not keep else None

    needs = "feature_map"
    examples = (Example((4, 8, 8)), Example((3, 5, 7)))

    def output_shape(self, shapes: list[Shape]) -> Shape:
        return (shapes[0][0],)

    def explain(self, shapes: list[Shape], out: Shape) -> list[str]:
        return [f"{show(shapes[0])} -> {show(out)}: one mean over {shapes[0][1]}x{shapes[0][2]} pixels per channel"]

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "GlobalAvgPool"]
