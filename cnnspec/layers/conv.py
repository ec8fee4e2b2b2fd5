"""conv2d: the convolution, with PyTorch's keyword names and output-size rule."""


from typing import Any, Literal

from pydantic import Field

from ..errors import LayerError
from .base import Example, check_groups, NonNegativePair, Pair, PositiveInt, Shape, fmt, pair, plain_fields
from .window import Window, Windowed


class Conv2d(Windowed):
    """2-D convolution: C_out filters of (C_in/groups) x k_h x k_w slid over the input."""

    type: Literal["conv2d"] = "conv2d"

    imports_torch = ("torch.nn.Conv2d", "torch.nn.Linear")
    imports_onnx = ("Conv",)

    @classmethod
    def from_onnx(cls, call: Any) -> dict[str, Any] | None:
        """Conv with explicit symmetric pads (ONNX pads are [top, left, bottom, right])."""
        weight = call.constant(1)
        if weight is None or weight.ndim != 4 or call.attribute("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            return None
        top, left, bottom, right = call.attribute("pads", [0, 0, 0, 0])
        if (top, left) != (bottom, right):
            return None
        return plain_fields(out_channels=int(weight.shape[0]), kernel_size=list(weight.shape[2:]),
                            stride=call.attribute("strides", [1, 1]), padding=[top, left],
                            dilation=call.attribute("dilations", [1, 1]), groups=int(call.attribute("group", 1)),
                            bias=call.constant(2) is not None)

    @classmethod
    def from_torch(cls, call: Any) -> dict[str, Any] | None:
        """nn.Conv2d; and nn.Linear applied at every position of a channels-last map (ConvNeXt's
        MLP), which is a 1x1 convolution with the same weights (reshaped [out, in] -> [out, in, 1, 1])."""
        module = call.module
        if type(module).__name__ == "Linear":
            if call.layout != "NHWC" or len(call.input_shapes[0]) != 3:
                return None
            return {"out_channels": module.out_features, "kernel_size": 1, "bias": module.bias is not None}
        fields = call.module_fields(cls)
        if isinstance(fields.get("padding"), str) and fields["padding"] not in ("valid", "same"):
            return None
        return fields
    in_channels: PositiveInt | None = Field(None, description="Optional; inferred from the input. If written it must match.")
    out_channels: PositiveInt = Field(description="Number of filters (output channels).")
    kernel_size: Pair = Field(description="Kernel size k or [k_h, k_w].")
    stride: Pair = Field(1, description="Step between windows, s or [s_h, s_w].")
    padding: NonNegativePair | Literal["valid", "same", "full"] = Field(
        0, description="Zeros added per side: p, [p_h, p_w], 'valid' (0), 'same' (output = input, "
        "stride 1 only; an even kernel pads the extra pixel at the bottom/right) or 'full' (d(k-1) per side).",
    )
    dilation: Pair = Field(1, description="Spacing between kernel taps, d or [d_h, d_w].")
    groups: PositiveInt = Field(1, description="Channel groups; in and out channels must divide by it. groups = C_in is depthwise.")
    bias: bool = Field(True, description="Add a learnable bias per output channel.")
    padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = Field(
        "zeros", description="How padded pixels are filled (does not change shapes)."
    )

    examples = (
        Example((4, 8, 8), out_channels=6, kernel_size=3),
        Example((4, 9, 7), out_channels=6, kernel_size=[3, 2], stride=2, padding=1, groups=2, bias=False),
        Example((2, 7, 9), out_channels=3, kernel_size=[4, 3], padding="same", padding_mode="reflect"),
        Example((3, 5, 6), in_channels=3, out_channels=3, kernel_size=3, padding="full", groups=3),
        Example((1, 6, 6), out_channels=2, kernel_size=3, stride=[1, 2], padding=[2, 1], dilation=[2, 1],
                padding_mode="circular"),
        Example((2, 6, 7), out_channels=2, kernel_size=2, padding="same", dilation=3),
    )
    is_convolution = True
    none_default = {"in_channels": "inferred"}

    def windows(self) -> tuple[Window, Window]:
        result = []
        for k, s, d, p in zip(pair(self.kernel_size), pair(self.stride), pair(self.dilation), self._pad_pairs()):
            if self.padding in ("same", "full"):
                total = d * (k - 1)
                p = (total, total) if self.padding == "full" else (total // 2, total - total // 2)
            result.append(Window(k, s, p[0], p[1], d))
        return result[0], result[1]

    def _pad_pairs(self) -> tuple[tuple[int, int], tuple[int, int]]:
        if isinstance(self.padding, str):
            return (0, 0), (0, 0)
        p_h, p_w = pair(self.padding)
        return (p_h, p_h), (p_w, p_w)

    def output_shape(self, shapes: list[Shape]) -> Shape:
        channels = shapes[0][0]
        self.check_declared("in_channels", self.in_channels, channels)
        check_groups(self.groups, channels, self.out_channels)
        if self.padding == "same" and pair(self.stride) != (1, 1):
            raise LayerError(
                "padding 'same' works only with stride 1 (PyTorch rejects it otherwise)",
                field="padding", received=f"padding='same', stride={self.stride}",
                hint="write the padding as a number, e.g. (kernel_size - 1) // 2",
            )
        self._check_padding_mode(shapes)
        return (self.out_channels, *self.spatial_output(shapes))

    def _check_padding_mode(self, shapes: list[Shape]) -> None:
        """PyTorch pads with F.pad for non-zero modes: 'reflect' needs padding < the input size,
        'circular' padding <= the input size (otherwise the forward fails, not the build)."""
        if self.padding_mode not in ("reflect", "circular"):
            return
        for label, size, window in zip("HW", shapes[0][1:], self.windows()):
            largest = max(window.pad_begin, window.pad_end)
            limit = size - 1 if self.padding_mode == "reflect" else size
            if largest > limit:
                raise LayerError(
                    f"padding_mode '{self.padding_mode}' cannot pad {largest} pixels along {label}: the input "
                    f"is only {size} pixels",
                    field="padding",
                    expected=f"padding of at most {limit} along {label} with padding_mode '{self.padding_mode}'",
                    received=f"padding={self.padding!r}, padding_mode='{self.padding_mode}', input {label}={size}",
                    hint="use less padding, or padding_mode 'zeros' or 'replicate'",
                )

    def params(self, shapes: list[Shape]) -> int:
        k_h, k_w = pair(self.kernel_size)
        weights = self.out_channels * (shapes[0][0] // self.groups) * k_h * k_w
        return weights + (self.out_channels if self.bias else 0)

    def macs(self, shapes: list[Shape], out: Shape) -> int:
        k_h, k_w = pair(self.kernel_size)
        return out[0] * out[1] * out[2] * (shapes[0][0] // self.groups) * k_h * k_w

    def explain(self, shapes: list[Shape], out: Shape) -> list[str]:
        channels = shapes[0][0]
        k_h, k_w = pair(self.kernel_size)
        group_text = f"({channels}/{self.groups})" if self.groups > 1 else str(channels)
        bias = f" + {self.out_channels}" if self.bias else ""
        return [
            *self.explain_windows(shapes, out),
            f"params = C_out * (C_in/groups) * k_h * k_w{' + bias' if self.bias else ''} = {self.out_channels} * {group_text} * "
            f"{k_h} * {k_w}{bias} = {fmt(self.params(shapes))}",
            f"MACs = C_out * H_out * W_out * (C_in/groups) * k_h * k_w = {out[0]} * {out[1]} * {out[2]} * "
            f"{channels // self.groups} * {k_h} * {k_w} = {fmt(self.macs(shapes, out))}",
        ]

    def to_torch(self, shapes: list[Shape]) -> Any:
        import torch.nn as nn

        height, width = self.windows()
        padding: Any = (height.pad_begin, width.pad_begin)
        if (height.pad_begin, width.pad_begin) != (height.pad_end, width.pad_end):
            padding = "same"  # only 'same' with an even kernel pads asymmetrically
        return nn.Conv2d(
            shapes[0][0], self.out_channels, pair(self.kernel_size), pair(self.stride), padding,
            pair(self.dilation), self.groups, self.bias, self.padding_mode,
        )
