"""Measuring a compiled module against its static analysis, shared by test_compile.py (spec files,
random specs) and test_layers.py (every registered layer type).

``assert_fidelity``: a real forward pass with forward hooks gives every layer's output shape,
FlopCounterMode gives every layer's MACs (it counts 2 FLOPs per multiply-accumulate of conv and
linear), and the submodules' tensors give the parameter, trainable and buffer counts; all must
equal the analysis. ``field_measurement``: the receptive field is measured by back-propagating one
output unit through the network with positive weights and max-pooling replaced by average pooling:
the non-zero extent of the input gradient is the field.
"""

from __future__ import annotations

import math
import weakref
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnspec.analysis import Analysis
from cnnspec.compile import CompiledModel, build_model
from cnnspec.spec.graph import MODEL_INPUT

# --- observing the module --------------------------------------------------------------------

def observe(model: CompiledModel, batch_size: int) -> tuple[dict[str, tuple[int, ...]], dict[str, int], int]:
    """One forward (eval, no grad) on a random batch: each layer's output shape (with the batch), its
    FLOPs, and the total FLOPs. On the way, check with weak references that every tensor the plan
    has released is gone, unless it shares memory with a tensor still needed (a flatten is a view
    of its input, dropout in eval returns its input): without autograd nothing else holds it."""
    shapes: dict[str, tuple[int, ...]] = {}
    alive: dict[str, weakref.ref] = {}
    released: set[str] = {MODEL_INPUT}
    leaks: list[str] = []
    x = torch.rand(batch_size, *model.input_shape)  # held here, so whatever shares it stays alive

    def storage(name: str) -> int | None:
        tensor = alive[name]()
        return None if tensor is None else tensor.untyped_storage().data_ptr()

    def hook_for(index: int, name: str):
        def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
            shapes[name] = tuple(output.shape)
            alive[name] = weakref.ref(output)
            if index:
                released.update(model.plan[index - 1].release)
            needed = {storage(other) for other in alive if other not in released} | {x.untyped_storage().data_ptr()}
            leaks.extend(f"{gone} alive at {name}" for gone in released - {MODEL_INPUT}
                         if storage(gone) is not None and storage(gone) not in needed)

        return hook

    handles = [model.get_submodule(step.name).register_forward_hook(hook_for(index, step.name))
               for index, step in enumerate(model.plan)]
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    assert not leaks
    counts = counter.get_flop_counts()
    flops = {step.name: sum(counts.get(f"CompiledModel.{step.name}", {}).values()) for step in model.plan}
    return shapes, flops, counter.get_total_flops()


def assert_fidelity(analysis: Analysis, batch_size: int) -> None:
    """Per layer: output shape, params, trainable params, buffers and MACs of the module == analysis."""
    model = build_model(analysis).eval()
    shapes, flops, total_flops = observe(model, batch_size)
    for report in analysis.layers:
        module = model.get_submodule(report.name)
        parameters = list(module.parameters())
        assert shapes[report.name] == (batch_size, *report.output_shape), report.name
        assert sum(p.numel() for p in parameters) == report.params, report.name
        assert sum(p.numel() for p in parameters if p.requires_grad) == report.trainable_params, report.name
        assert sum(b.numel() for b in module.buffers()) == report.buffers, report.name
        assert flops[report.name] == 2 * batch_size * report.macs, report.name
    totals = analysis.totals()
    assert total_flops == 2 * batch_size * totals["macs"]
    assert sum(p.numel() for p in model.parameters()) == totals["params"]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == totals["trainable_params"]
    assert sum(b.numel() for b in model.buffers()) == totals["buffers"]
    names = {report.name for report in analysis.layers}
    assert {key.split(".")[0] for key in model.state_dict()} <= names  # keys read like the spec


class WindowSum(nn.Module):
    """Stands in for a max-pool when measuring fields: the sum of every tap of each window (same
    kernel, stride, padding, dilation and ceil_mode output size), so every tap gets gradient."""

    def __init__(self, pool: nn.MaxPool2d, out_size: tuple[int, int]):
        super().__init__()
        self.kernel = nn.modules.utils._pair(pool.kernel_size)
        self.stride = nn.modules.utils._pair(pool.stride)
        self.padding = nn.modules.utils._pair(pool.padding)
        self.dilation = nn.modules.utils._pair(pool.dilation)
        self.out_size = out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reach = [(o - 1) * s + d * (k - 1) + 1 for o, s, d, k in zip(self.out_size, self.stride, self.dilation, self.kernel)]
        extra = [max(0, r - size - p) for r, size, p in zip(reach, x.shape[2:], self.padding)]
        x = F.pad(x, (self.padding[1], extra[1], self.padding[0], extra[0]))
        total = 0
        for i in range(self.kernel[0]):
            for j in range(self.kernel[1]):
                rows = slice(i * self.dilation[0], i * self.dilation[0] + (self.out_size[0] - 1) * self.stride[0] + 1, self.stride[0])
                cols = slice(j * self.dilation[1], j * self.dilation[1] + (self.out_size[1] - 1) * self.stride[1] + 1, self.stride[1])
                total = total + x[:, :, rows, cols]
        return total / (self.kernel[0] * self.kernel[1])


def measurable_layer(analysis: Analysis) -> int | None:
    """Index of the last layer with a receptive field whose field does not depend on the input size,
    i.e. that is not an adaptive pooling and has none upstream (its windows change with the size)."""
    adaptive: set[str] = set()
    chosen = None
    for index, report in enumerate(analysis.layers):
        if report.node.layer.field_depends_on_input_size or any(name in adaptive for name in report.inputs):
            adaptive.add(report.name)
        elif report.receptive_field is not None:
            chosen = index
    return chosen


def positive_weights(model: CompiledModel) -> None:
    """Weights uniform in [0.5, 1.5] / fan_in (activations stay near 1, nothing saturates or
    underflows), biases 0.1, BatchNorm in eval with running variance set on the fly to the mean
    square of its input (so residual sums do not grow past ReLU6's cap), dropout off."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_in = module.weight[0].numel()
                module.weight.copy_((torch.rand(module.weight.shape, generator=generator) + 0.5) / fan_in)
            if isinstance(module, nn.BatchNorm2d):
                module.register_forward_pre_hook(calibrate_batchnorm)
                if module.affine:
                    module.weight.fill_(1.0)
            if getattr(module, "bias", None) is not None and isinstance(module.bias, torch.Tensor):
                module.bias.fill_(0.1)
    model.eval().requires_grad_(False)


def calibrate_batchnorm(module: nn.BatchNorm2d, inputs: tuple[torch.Tensor]) -> None:
    square = inputs[0].detach().pow(2).mean((0, 2, 3))
    module.running_mean.zero_()
    module.running_var.copy_(square.clamp_min(1e-6))


def replace_max_pools(model: CompiledModel, analysis: Analysis, growth: tuple[int, int]) -> None:
    """Swap each max-pool for average pooling over the same windows (nn.AvgPool2d when it has no
    dilation, else WindowSum). ``growth`` is how many pixels larger the measured image is; each pool's
    output grows by that over the pool's jump (a whole number: growth is a multiple of every jump)."""
    for report in analysis.layers:
        pool = model.get_submodule(report.name)
        if not isinstance(pool, nn.MaxPool2d):
            continue
        if pool.dilation in (1, (1, 1)):
            replacement = nn.AvgPool2d(pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode)
        else:
            field = report.receptive_field
            out = (report.output_shape[1] + int(growth[0] // field.height.jump),
                   report.output_shape[2] + int(growth[1] // field.width.jump))
            replacement = WindowSum(pool, out)
        setattr(model, report.name, replacement)


def border_reach(analysis: Analysis, target: int, axis_index: int, growth: int = 0) -> tuple[float, float]:
    """(left, right): a unit of layer ``target`` whose field [lo, hi] has lo > left and hi < right
    reads no padding at any layer up to it, on an image ``growth`` pixels longer than the spec's.

    A unit read at layer L has its span inside [lo, hi]. Units j < 0 and j >= n_L of layer L do not
    exist (the next layer pads with zeros there), and their spans, as the field rule extends them,
    need not lie outside the image: a transposed conv with padding p trims p outputs whose reads are
    real pixels (stride 2, p = 1: unit -1 reads input 0). So the unit must avoid every such span:
    left is the largest first pixel of units -P..-1 of every layer L (P its phases), right the
    smallest last pixel of units n_L..n_L+P-1 (for window layers these lie outside the image)."""
    left, right = -math.inf, math.inf
    for report in analysis.layers[:target]:
        if report.receptive_field is None:
            continue
        axis = (report.receptive_field.height, report.receptive_field.width)[axis_index]
        period = len(axis.phases) if axis.phases is not None else 1
        units = report.output_shape[1 + axis_index] + int(growth / axis.jump)
        for index in range(1, period + 1):
            if (before := axis.span(-index)) is not None:
                left = max(left, before[0])
            if (after := axis.span(units + index - 1)) is not None:
                right = min(right, after[1])
    return left, right


def growth_step(analysis: Analysis, target: int, axis_index: int) -> int:
    """The image grows by multiples of this: every layer's map along the axis then grows by whole
    units (a jump a/b needs multiples of a)."""
    step = 1
    for report in analysis.layers[: target + 1]:
        if report.receptive_field is not None:
            jump = Fraction((report.receptive_field.height, report.receptive_field.width)[axis_index].jump)
            step = math.lcm(step, jump.limit_denominator(1000).numerator)
    return step


def fitting_unit(analysis: Analysis, target: int, axis_index: int, extra_units: int) -> tuple[int, int]:
    """The first unit i whose field [start + i*jump -/+ (size-1)/2] lies inside the image and reads
    no padding at any layer (``border_reach``), plus ``extra_units`` (to tell start from jump), and
    the image length needed: the native one or native + m*step (``growth_step``, so every map grows
    by whole units)."""
    axis = (analysis.layers[target].receptive_field.height, analysis.layers[target].receptive_field.width)[axis_index]
    length = analysis.input_shape[1 + axis_index]
    size, jump, start = axis.size, axis.jump, axis.start
    half = (size - 1) / 2
    left, _ = border_reach(analysis, target, axis_index)
    lowest = 0 if left == -math.inf else max(0, math.floor(left) + 1)  # lo >= lowest
    unit = max(0, math.ceil((lowest + half - start) / jump)) + extra_units
    high = start + unit * jump + half
    step = growth_step(analysis, target, axis_index)
    growth = max(0, math.ceil((high + 1 - length) / step)) * step
    while high >= border_reach(analysis, target, axis_index, growth)[1]:
        growth += step
    return unit, length + growth


def measured_extent(gradient: torch.Tensor) -> tuple[tuple[int, int], tuple[int, int]]:
    mass = gradient.abs().sum(dim=(0, 1))
    rows = torch.nonzero(mass.sum(dim=1)).flatten()
    cols = torch.nonzero(mass.sum(dim=0)).flatten()
    return (int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max()))


def field_measurement(analysis: Analysis, max_pixels: int | None = None):
    """Back-propagate one unit of the last measurable layer; return (expected, measured), each as
    ((size_h, size_w), (centre_h, centre_w)), or None when no layer has a measurable field (or the
    image it needs is larger than ``max_pixels`` per side).

    Only the layers up to the measured one are built (no classifier whose size depends on the input),
    and the image is enlarged by whole jumps until the unit's field fits inside it unclipped (the
    field itself does not depend on the input size)."""
    target = measurable_layer(analysis)
    if target is None:
        return None
    field = analysis.layers[target].receptive_field
    _, height, width = analysis.input_shape
    unit_h, height_needed = fitting_unit(analysis, target, 0, 0)
    unit_w, width_needed = fitting_unit(analysis, target, 1, 1)
    if max_pixels is not None and max(height_needed, width_needed) > max_pixels:
        return None
    prefix = Analysis(analysis.spec, analysis.layers[: target + 1])
    model = CompiledModel(analysis.spec, prefix)
    replace_max_pools(model, prefix, (height_needed - height, width_needed - width))
    for report in prefix.layers:  # a softmax over one channel is the constant 1: no gradient
        if report.node.layer.produces_probabilities and report.input_shapes[0][0] == 1:
            setattr(model, report.name, nn.Identity())
    positive_weights(model)
    generator = torch.Generator().manual_seed(1)
    x = (torch.rand(1, analysis.input_shape[0], height_needed, width_needed, generator=generator) + 0.5)
    x.requires_grad_(True)
    output = model(x)
    assert output.shape[2] > unit_h and output.shape[3] > unit_w
    # every channel of the unit (a concat's channel sees one branch only), weighted at random so
    # that a softmax over channels does not sum to a constant
    channel_weights = torch.rand(output.shape[1], generator=generator) + 0.5
    (output[0, :, unit_h, unit_w] * channel_weights).sum().backward()
    (low_h, high_h), (low_w, high_w) = measured_extent(x.grad)
    expected = ((field.height.size, field.width.size),
                (field.height.start + unit_h * field.height.jump, field.width.start + unit_w * field.width.jump))
    measured = ((high_h - low_h + 1, high_w - low_w + 1), ((low_h + high_h) / 2, (low_w + high_w) / 2))
    return expected, measured


def assert_envelope(analysis: Analysis, target: int) -> None:
    """A field that is an envelope (``exact`` false: a transposed conv or an upsampling, whose
    units differ by phase), measured at the spec's input size: back-propagate each row of layer
    ``target``'s output (for the H axis), then each column (W). Each unit's measured extent must lie
    inside its envelope [start + u*jump -/+ (size-1)/2]; where units of every phase u mod P (P the
    field's period, ``len(axis.phases)``; 1 when all units are alike) that reads input have an
    envelope inside the image, each edge of the envelope must be reached by one of them. (The
    period is not the jump's denominator: a stride-2 transposed conv after a stride-6 field has
    jump 3 and two phases, of which only one reaches the edges.) Inside the image means also
    reading no padding at any layer (``border_reach``). A pixel whose gradient is under
    1e-6 of the largest of any unit along the axis is a float rounding residue (bilinear weights of
    1e-8 where the source position is whole), not part of the field; the largest of the unit itself
    would not do: a unit whose true reads are all zero padding then shows its residue as its field.
    A unit that reads no input (only a bias, or only padding) has no extent."""
    report = analysis.layers[target]
    prefix = Analysis(analysis.spec, analysis.layers[: target + 1])
    model = CompiledModel(analysis.spec, prefix)
    replace_max_pools(model, prefix, (0, 0))
    positive_weights(model)
    generator = torch.Generator().manual_seed(1)
    x = (torch.rand(1, *analysis.input_shape, generator=generator) + 0.5).requires_grad_(True)
    output = model(x)
    field = report.receptive_field
    for axis_index, axis in enumerate((field.height, field.width)):
        length = analysis.input_shape[1 + axis_index]
        left, right = border_reach(analysis, target, axis_index)
        period = len(axis.phases) if axis.phases is not None else 1
        reading = {phase for phase in range(period) if axis.phases is None or axis.phases[phase] is not None}
        left_gaps, right_gaps, inside = [], [], set()
        masses = []
        for unit in range(report.output_shape[1 + axis_index]):
            x.grad = None
            output[0, :, unit].sum().backward(retain_graph=True) if axis_index == 0 else \
                output[0, :, :, unit].sum().backward(retain_graph=True)
            masses.append(x.grad.abs().sum(dim=(0, 1)).sum(dim=1 - axis_index))
        largest = max(float(mass.max()) for mass in masses)
        for unit, mass in enumerate(masses):
            hit = torch.nonzero(mass > 1e-6 * largest).flatten() if largest > 0 else []
            if not len(hit):
                continue
            low, high = int(hit.min()), int(hit.max())
            centre = axis.start + unit * axis.jump
            envelope_low, envelope_high = centre - (axis.size - 1) / 2, centre + (axis.size - 1) / 2
            assert envelope_low <= low and high <= envelope_high, (
                report.name, "HW"[axis_index], unit, (low, high), (envelope_low, envelope_high))
            if 0 <= envelope_low and left < envelope_low and envelope_high <= length - 1 and envelope_high < right:
                left_gaps.append(low - envelope_low)
                right_gaps.append(envelope_high - high)
                inside.add(unit % period)
        if reading and inside == reading:
            assert min(left_gaps) == 0 and min(right_gaps) == 0, (report.name, "HW"[axis_index], left_gaps, right_gaps)
