"""conv_transpose2d: the transposed ("fractionally strided") convolution of decoders and
segmentation heads, with PyTorch's fields and output-size rule."""


from fractions import Fraction
from typing import Any, Literal

from pydantic import Field

from ..errors import LayerError
from .base import Example, check_groups, Layer, NonNegativePair, Pair, PositiveInt, Shape, fmt, pair, plain_fields
from .receptive_field import ReceptiveField, explain_resampling


def transposed_reads(unit: int, kernel: int, stride: int, padding: int, dilation: int) -> list[int]:
    """The input units output ``unit`` reads: input i adds w[t] to output i*s - p + t*d, so the
    output reads the i = (unit + p - t*d)/s that are whole (none: the output is only the bias)."""
    return [(unit + padding - t * dilation) // stride for t in range(kernel)
            if (unit + padding - t * dilation) % stride == 0]


class ConvTranspose2d(Layer):
    """2-D transposed convolution (PyTorch's nn.ConvTranspose2d): each input pixel adds a
    (C_out/groups) x k_h x k_w copy of its weights, scaled by its value, to the output at
    i*s - p + t*d. Output size ``(H - 1)*s - 2p + d(k-1) + output_padding + 1``."""

    type: Literal["conv_transpose2d"] = "conv_transpose2d"
    in_channels: PositiveInt | None = Field(None, description="Optional; inferred from the input. If written it must match.")
    out_channels: PositiveInt = Field(description="Number of output channels.")
    kernel_size: Pair = Field(description="Kernel size k or [k_h, k_w].")
    stride: Pair = Field(1, description="Upsampling factor s or [s_h, s_w] (the stride of the conv it transposes).")
    padding: NonNegativePair = Field(0, description="Rows/columns d(k-1) - p of implicit zero padding: p trims p "
                                     "from each side of the output.")
    output_padding: NonNegativePair = Field(0, description="Extra rows/columns at the bottom/right of the output; "
                                            "less than the stride or the dilation.")
    groups: PositiveInt = Field(1, description="Channel groups; in and out channels must divide by it.")
    bias: bool = Field(True, description="Add a learnable bias per output channel.")
    dilation: Pair = Field(1, description="Spacing between kernel taps, d or [d_h, d_w].")

    needs = "feature_map"
    none_default = {"in_channels": "inferred"}
    examples = (
        Example((4, 5, 5), out_channels=3, kernel_size=4, stride=2, padding=1),
        Example((4, 4, 6), out_channels=6, kernel_size=3, stride=2, padding=1, output_padding=1, groups=2),
        Example((3, 5, 4), out_channels=2, kernel_size=[3, 2], stride=[1, 3], dilation=[2, 1], bias=False),
        Example((2, 4, 4), out_channels=2, kernel_size=3, stride=3, padding=[0, 2], dilation=2, output_padding=1),
    )

    def axes(self) -> list[tuple[int, int, int, int, int]]:
        """(kernel, stride, padding, output_padding, dilation) for H and W."""
        return list(zip(pair(self.kernel_size), pair(self.stride), pair(self.padding), pair(self.output_padding),
                        pair(self.dilation)))

    def output_shape(self, shapes: list[Shape]) -> Shape:
        channels = shapes[0][0]
        self.check_declared("in_channels", self.in_channels, channels)
        check_groups(self.groups, channels, self.out_channels)
        sizes = []
        for label, size, (kernel, stride, padding, extra, dilation) in zip("HW", shapes[0][1:], self.axes()):
            if extra >= max(stride, dilation):
                raise LayerError(
                    f"output_padding {extra} along {label} must be less than the stride or the dilation "
                    f"(PyTorch's rule)", field="output_padding",
                    expected=f"output_padding < max(stride, dilation) = {max(stride, dilation)}",
                    received=f"output_padding={self.output_padding}, stride={self.stride}, dilation={self.dilation}")
            out = (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + extra + 1
            if out < 1:
                raise LayerError(
                    f"the output shrinks to zero along {label}: padding {padding} trims more than the "
                    f"{out + 2 * padding} rows the transposed conv makes", field="padding",
                    expected=f"padding of at most {(out + 2 * padding - 1) // 2} along {label}",
                    received=f"input {label}={size}, kernel_size={kernel}, stride={stride}, padding={padding}, "
                    f"dilation={dilation}, output_padding={extra}")
            sizes.append(out)
        return (self.out_channels, *sizes)

    def params(self, shapes: list[Shape]) -> int:
        k_h, k_w = pair(self.kernel_size)
        weights = shapes[0][0] * (self.out_channels // self.groups) * k_h * k_w
        return weights + (self.out_channels if self.bias else 0)

    def macs(self, shapes: list[Shape], out: Shape) -> int:
        """Every input pixel times its whole kernel, ``C_in * H_in * W_in * (C_out/groups) * k_h * k_w``,
        as torch's FlopCounterMode counts it (taps that land in the trimmed padding included)."""
        channels, height, width = shapes[0]
        k_h, k_w = pair(self.kernel_size)
        return channels * height * width * (self.out_channels // self.groups) * k_h * k_w

    def receptive_field(self, fields, shapes, out):
        """Output unit u reads the inputs i = (u + p - t*d)/s that are whole (t = 0..k-1): on
        average 1/s input units per output unit, so the jump is divided by s. With stride 1 every
        unit reads k taps and the rule is a conv's with padding d(k-1) - p (exact); with stride s
        the units differ by phase (u mod s) and the field is their envelope."""
        axes = []
        for axis, (kernel, stride, padding, _, dilation) in zip((fields[0].height, fields[0].width), self.axes()):
            axes.append(axis.through_resampling(  # the reads of unit u + s are those of u shifted by one
                Fraction(1, stride), lambda u, k=kernel, s=stride, p=padding, d=dilation: transposed_reads(u, k, s, p, d),
                stride))
        return ReceptiveField(*axes)

    def explain(self, shapes: list[Shape], out: Shape) -> list[str]:
        channels = shapes[0][0]
        lines = []
        for label, size, (kernel, stride, padding, extra, dilation), o in zip("HW", shapes[0][1:], self.axes(), out[1:]):
            lines.append(f"{label}_out = ({size}-1)*{stride} - 2*{padding} + {dilation}*({kernel}-1) + {extra} + 1 = {o}")
        k_h, k_w = pair(self.kernel_size)
        group_text = f"({self.out_channels}/{self.groups})" if self.groups > 1 else str(self.out_channels)
        bias = f" + {self.out_channels}" if self.bias else ""
        lines.append(f"params = C_in * (C_out/groups) * k_h * k_w{' + bias' if self.bias else ''} = {channels} * {group_text} * {k_h} * {k_w}"
                     f"{bias} = {fmt(self.params(shapes))}")
        lines.append(f"MACs = C_in * H_in * W_in * (C_out/groups) * k_h * k_w = {channels} * {shapes[0][1]} * "
                     f"{shapes[0][2]} * {self.out_channels // self.groups} * {k_h} * {k_w} = "
                     f"{fmt(self.macs(shapes, out))} (every input pixel times the whole kernel, as torch counts it)")
        return lines

    def explain_field(self, before: list[ReceptiveField], after: ReceptiveField) -> list[str]:
        field = before[0]
        return [explain_resampling(label, b, a, f"1/{stride}", fmt) for label, b, a, (_, stride, *_rest) in zip(
            "HW", (field.height, field.width), (after.height, after.width), self.axes())]

    imports_torch = ("torch.nn.ConvTranspose2d",)
    imports_onnx = ("ConvTranspose",)

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        return call.module_fields(cls) if call.module.padding_mode == "zeros" else None

    @classmethod
    def from_onnx(cls, call: Any) -> dict[str, Any] | None:
        weight = call.constant(1)
        top, left, bottom, right = call.attribute("pads", [0, 0, 0, 0])
        if weight is None or (top, left) != (bottom, right) or call.attribute("output_shape"):
            return None
        groups = int(call.attribute("group", 1))
        return plain_fields(out_channels=int(weight.shape[1]) * groups, kernel_size=list(weight.shape[2:]),
                            stride=call.attribute("strides", [1, 1]), padding=[top, left],
                            output_padding=call.attribute("output_padding", [0, 0]), groups=groups,
                            dilation=call.attribute("dilations", [1, 1]), bias=call.constant(2) is not None)

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        return nn.ConvTranspose2d(
            shapes[0][0], self.out_channels, pair(self.kernel_size), pair(self.stride), pair(self.padding),
            pair(self.output_padding), self.groups, self.bias, pair(self.dilation))
