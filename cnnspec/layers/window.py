"""Sliding-window arithmetic shared by conv2d and the pooling layers: PyTorch's output-size rule,
its ``--explain`` text, and ``Windowed``, the base class of layers that slide a window."""


from dataclasses import dataclass

from ..errors import LayerError
from .base import Layer, Shape, fmt
from .receptive_field import Axis, ReceptiveField


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

    def explain_field(self, before: list[ReceptiveField], after: ReceptiveField) -> list[str]:
        field = before[0]
        return [
            explain_field(label, b, a, w.kernel, w.stride, w.pad_begin, w.dilation)
            for label, b, a, w in zip("HW", (field.height, field.width), (after.height, after.width), self.windows())
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

    def label(self) -> str:
        """``conv2d 3x3/1`` (kernel/stride; the stride defaults to the kernel, as for pooling)."""
        kernel = getattr(self, "kernel_size")
        k = kernel if isinstance(kernel, int) else "x".join(map(str, kernel))
        stride = getattr(self, "stride", None) or kernel
        s = stride if isinstance(stride, int) else "x".join(map(str, stride))
        return f"{self.type} {k}x{k}/{s}" if isinstance(kernel, int) else f"{self.type} {k}/{s}"

    def explain_windows(self, shapes: list[Shape], out: Shape, ceil_mode: bool = False) -> list[str]:
        return [
            explain_window(label, size, w.kernel, w.stride, w.pad_begin, w.pad_end, w.dilation, ceil_mode, o)
            for label, size, w, o in zip("HW", shapes[0][1:], self.windows(), out[1:])
        ]
