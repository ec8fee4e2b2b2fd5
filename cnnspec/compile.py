"""Compiling a spec to a torch.nn.Module whose shapes and counts equal the static analysis.

Each layer becomes a submodule named by its spec name, so ``state_dict`` keys read like the spec
(``conv1.weight``, ``layer2_0_bn1.running_mean``). The forward follows the graph in file order (the
order the analyzer checked: every reference points backwards) and drops each intermediate tensor
right after its last use, so a deep residual network holds only the tensors still needed.

The forward is a fixed loop over a plan computed once at build time: no Python branches on tensor
values, so ``torch.jit.trace``, both ``torch.onnx.export`` exporters, ``torch.compile`` and DDP see
the same straight-line graph. Building changes no global torch state (seed, default dtype, grad
mode); it only draws the initial weights from the global generator, as every ``nn`` layer does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from .analysis import Analysis, LayerReport, analyze
from .errors import Diagnostic, SpecError
from .spec.graph import MODEL_INPUT
from .spec.model import Spec, load_spec

#: instance attributes CompiledModel sets in __init__ (its methods and properties are in dir(CompiledModel));
#: a layer may not share their names
_OWN_ATTRIBUTES = frozenset({"spec_name", "input_shape", "output_shape", "output_name", "plan"})


class Step(NamedTuple):
    """One layer of the forward: run ``name`` on ``inputs``, then forget the tensors in ``release``
    (those whose last use this is; a layer nobody reads releases its own output at once)."""

    name: str
    inputs: tuple[str, ...]
    release: tuple[str, ...]


class CompiledModel(nn.Module):
    """The module built from a spec: one submodule per layer, run in the spec's order.

    Maps a float tensor ``N x C x H x W`` (the spec's ``input``) to the last layer's output
    (``N x F`` or ``N x C x H x W``).
    """

    def __init__(self, spec: Spec, analysis: Analysis | None = None):
        super().__init__()
        analysis = analysis or analyze(spec)
        _check_names(spec)
        for report in analysis.layers:
            self.add_module(report.name, _build_layer(report, spec))
        self.spec_name: str = spec.name
        self.input_shape: tuple[int, ...] = tuple(spec.input.shape)
        self.output_shape: tuple[int, ...] = tuple(analysis.output_shape)
        self.output_name: str = analysis.layers[-1].name
        self.plan: tuple[Step, ...] = make_plan(analysis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {MODEL_INPUT: x}
        del x  # the dict holds the only reference of this frame, so 'input' can be freed too
        for name, inputs, release in self.plan:
            values[name] = self._modules[name](*[values[source] for source in inputs])
            for done in release:
                del values[done]
        return values[self.output_name]

    @property
    def unused_layers(self) -> list[str]:
        """Layers whose output nothing reads (the ends of dead branches)."""
        return [step.name for step in self.plan if step.name in step.release]

    @property
    def dead_layers(self) -> list[str]:
        """Every layer the output does not depend on: the unread layers and those feeding only
        them, in execution order. They run, but their parameters never get a gradient."""
        live = {self.output_name}
        for step in reversed(self.plan):
            if step.name in live:
                live.update(step.inputs)
        return [step.name for step in self.plan if step.name not in live]

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """A zero tensor of the spec's input shape on the model's device and dtype (for tracing)."""
        reference = next(self.parameters(), None)
        if reference is None:
            reference = next(self.buffers(), torch.zeros(()))
        return torch.zeros((batch_size, *self.input_shape), dtype=reference.dtype, device=reference.device)

    def extra_repr(self) -> str:
        return f"spec={self.spec_name!r}, input_shape={list(self.input_shape)}"


def make_plan(analysis: Analysis) -> tuple[Step, ...]:
    """The forward's steps in execution order, each with the tensors whose last use it is.

    Every tensor except the model output is released exactly once: at its last reader, or right
    after it is made when no layer reads it (a dead branch)."""
    last_use: dict[str, int] = {}
    for index, report in enumerate(analysis.layers):
        last_use[report.name] = index  # a tensor nobody reads dies where it is born
        for source in report.inputs:
            last_use[source] = index
    output = analysis.layers[-1].name
    steps = []
    for index, report in enumerate(analysis.layers):
        candidates = dict.fromkeys([*report.inputs, report.name])  # ordered, without duplicates
        release = tuple(name for name in candidates if last_use[name] == index and name != output)
        steps.append(Step(report.name, tuple(report.inputs), release))
    return tuple(steps)


def _build_layer(report: LayerReport, spec: Spec) -> nn.Module:
    """The layer's torch module, frozen when the spec says ``trainable: false``."""
    layer = report.node.layer
    try:
        module = layer.to_torch(report.input_shapes)
    except NotImplementedError:
        raise SpecError([Diagnostic(
            f"layer type '{layer.type}' can be analysed but not compiled to PyTorch yet",
            spec.document.locate(report.node.origin + ("type",)), received=f"layer '{report.name}'",
            hint="remove the layer, or give its class a to_torch() method", note=report.node.note,
        )], spec.text) from None
    if not layer.trainable:
        module.requires_grad_(False)
    return module


def _check_names(spec: Spec) -> None:
    """Layer names become attribute names of the module: refuse those that would shadow
    torch.nn.Module's own attributes (``training``, ``forward``, ...) with a located error."""
    reserved = set(dir(nn.Module())) | set(dir(CompiledModel)) | _OWN_ATTRIBUTES
    diagnostics = [
        Diagnostic(
            f"layer name '{node.name}' is also the name of an attribute of torch.nn.Module, so the compiled "
            "model cannot have a submodule called that",
            spec.document.locate(node.origin + ("name",)),
            received=f"name={node.name!r}", hint=f"rename the layer, e.g. '{node.name}_layer'", note=node.note,
        )
        for node in spec.nodes if node.name in reserved
    ]
    if diagnostics:
        raise SpecError(diagnostics, spec.text)


def build_model(spec_or_path: Spec | Analysis | str | Path | Any) -> CompiledModel:
    """A fresh, randomly initialised module for a Spec, an Analysis of one, or a spec file path."""
    if isinstance(spec_or_path, Analysis):
        return CompiledModel(spec_or_path.spec, spec_or_path)
    spec = spec_or_path if isinstance(spec_or_path, Spec) else load_spec(spec_or_path)
    return CompiledModel(spec)
