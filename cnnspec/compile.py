"""Compiling a spec to a torch.nn.Module whose shapes and counts equal the static analysis.

Each layer becomes a submodule named by its spec name (so ``state_dict`` keys read like the spec:
``conv1.weight``). The forward follows the graph in file order and drops every intermediate tensor
right after its last use, so a deep residual network holds only the tensors still needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .analysis import Analysis, analyze
from .errors import CnnspecError
from .graph import MODEL_INPUT
from .spec import Spec, load_spec


class CompiledModel(nn.Module):
    """The module built from a spec: one submodule per layer, run in the spec's order."""

    def __init__(self, spec: Spec, analysis: Analysis | None = None):
        super().__init__()
        analysis = analysis or analyze(spec)
        reserved = set(dir(nn.Module))
        for report in analysis.layers:
            if report.name in reserved:
                raise CnnspecError(
                    f"layer name '{report.name}' clashes with a torch.nn.Module attribute; rename the layer")
            module = report.node.layer.to_torch(report.input_shapes)
            if not report.node.layer.trainable:
                module.requires_grad_(False)
            self.add_module(report.name, module)
        self.spec_name = spec.name
        self.input_shape = tuple(spec.input.shape)
        self.output_name = analysis.layers[-1].name
        self._plan = _plan(analysis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {MODEL_INPUT: x}
        for name, inputs, release in self._plan:
            values[name] = self._modules[name](*[values[i] for i in inputs])
            for done in release:
                del values[done]
        return values[self.output_name]


def _plan(analysis: Analysis) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """(layer, its inputs, tensors whose last use is this layer) in execution order."""
    last_use: dict[str, int] = {}
    for index, report in enumerate(analysis.layers):
        for name in report.inputs:
            last_use[name] = index
    plan = []
    for index, report in enumerate(analysis.layers):
        release = tuple(sorted({n for n in report.inputs if last_use[n] == index and n != report.name}))
        plan.append((report.name, tuple(report.inputs), release))
    return plan


def build_model(spec_or_path: Spec | str | Path | Any) -> CompiledModel:
    """A fresh, randomly initialised module for a spec or spec path."""
    spec = spec_or_path if isinstance(spec_or_path, Spec) else load_spec(spec_or_path)
    return CompiledModel(spec)
