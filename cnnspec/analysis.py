"""Static analysis: every layer's output shape, parameters, buffers, MACs, activation memory and
receptive field, computed from the spec alone (no torch).

Conventions (tested, and stated in the README):
- shapes exclude the batch: [C, H, W] or [F];
- params = what ``sum(p.numel() for p in module.parameters())`` gives; BatchNorm running statistics
  are buffers, counted separately;
- MACs = multiply-accumulates of conv2d and linear at batch 1, bias adds not counted (torchvision's
  published figures; ``torch.utils.flop_counter`` reports 2x this, torchinfo adds bias and BN terms);
- activation memory = output elements x 4 bytes (float32) at batch 1;
- receptive field per Araujo et al. (size, jump, start), the union where paths merge, null once the
  output is a vector.
"""

from __future__ import annotations

import warnings as python_warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Diagnostic, LayerError, SpecError, SpecWarning
from .layers.base import Shape, fmt, prod, show
from .layers.receptive_field import ReceptiveField
from .spec.graph import MODEL_INPUT, feeding_only, unread_layers
from .spec.limits import MAX_ELEMENTS, MAX_SIZE
from .spec.model import Node, Spec, load_spec, sort_diagnostics

BYTES_PER_ELEMENT = 4  # float32


@dataclass
class LayerReport:
    name: str
    type: str
    inputs: list[str]
    input_shapes: list[Shape]
    output_shape: Shape
    params: int
    trainable_params: int
    buffers: int
    macs: int
    activation_bytes: int
    receptive_field: ReceptiveField | None
    node: Node = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "inputs": list(self.inputs),
            "output_shape": list(self.output_shape),
            "params": self.params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.params - self.trainable_params,
            "buffers": self.buffers,
            "macs": self.macs,
            "activation_bytes": self.activation_bytes,
            "receptive_field": self.receptive_field.to_dict() if self.receptive_field else None,
        }


@dataclass
class Analysis:
    spec: Spec
    layers: list[LayerReport]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def input_shape(self) -> Shape:
        return self.spec.input.shape

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].output_shape

    def totals(self) -> dict[str, int]:
        params = sum(r.params for r in self.layers)
        trainable = sum(r.trainable_params for r in self.layers)
        return {
            "params": params,
            "trainable_params": trainable,
            "non_trainable_params": params - trainable,
            "buffers": sum(r.buffers for r in self.layers),
            "macs": sum(r.macs for r in self.layers),
            "activation_bytes": sum(r.activation_bytes for r in self.layers),
            "input_bytes": prod(self.input_shape) * BYTES_PER_ELEMENT,
            "param_bytes": params * BYTES_PER_ELEMENT,
        }

    def layer(self, name: str) -> LayerReport:
        for report in self.layers:
            if report.name == name:
                return report
        raise KeyError(name)

    @property
    def warnings(self) -> list[Diagnostic]:
        """One located warning per unread layer (a dead branch's end). Its layers stay in the
        totals: the compiled module holds their parameters and runs them."""
        nodes = [report.node for report in self.layers]
        found = []
        for sink in unread_layers(nodes):
            branch = feeding_only(nodes, sink)
            reports = [self.layer(node.name) for node in (*branch, sink)]
            whose = "it"
            if branch:
                whose = f"it and the layer{'s' if len(branch) > 1 else ''} feeding only it ({', '.join(n.name for n in branch)})"
            params, macs = sum(r.params for r in reports), sum(r.macs for r in reports)
            found.append(Diagnostic(
                f"layer '{sink.name}' is never read: no later layer takes it as input and it is not the "
                "last layer (the model's output)",
                self.spec.document.locate(sink.origin), severity="warning", note=sink.note,
                hint=f"name it in a later layer's inputs, or remove it; until then {whose} still count"
                f"{'s' if not branch else ''} in the totals ({fmt(params)} params, {fmt(macs)} MACs): "
                f"the compiled module holds and runs {'them' if branch else 'it'}"))
        return found

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (contract: name, input_shape, layers[...], totals{params, macs})."""
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "layers": [r.to_dict() for r in self.layers],
            "totals": self.totals(),
        }


def analyze(spec: Spec) -> Analysis:
    """Run every layer's rules in execution order; raise SpecError with each located problem.
    A failing layer stops only the layers that depend on it, so independent problems are all
    reported."""
    reports, diagnostics = _run(spec)
    if diagnostics:
        raise SpecError(diagnostics, spec.text)
    result = Analysis(spec, reports)
    for warning in result.warnings:
        python_warnings.warn(SpecWarning(warning, spec.text), stacklevel=2)
    return result


def analyze_file(path: str | Path) -> Analysis:
    """``analyze(load_spec(path))``, reporting every independent problem in one pass: when loading
    finds errors (a bad name, a dangling reference), the layers it could still build are analysed
    too, and their shape errors join the loading errors."""
    try:
        spec = load_spec(path)
    except SpecError as error:
        if error.partial is None:
            raise
        _, shape_errors = _run(error.partial, partial=True)
        raise SpecError(sort_diagnostics(error.diagnostics + shape_errors), error.source_text) from None
    return analyze(spec)


def _run(spec: Spec, partial: bool = False) -> tuple[list[LayerReport], list[Diagnostic]]:
    shapes: dict[str, Shape | None] = {MODEL_INPUT: spec.input.shape}
    fields: dict[str, ReceptiveField | None] = {MODEL_INPUT: ReceptiveField.identity()}
    reports: list[LayerReport] = []
    diagnostics: list[Diagnostic] = []
    for node in spec.nodes:
        inputs = [shapes.get(name) for name in node.inputs]
        if any(shape is None for shape in inputs) or (partial and not _checkable(node)):
            shapes[node.name] = None
            continue
        try:
            report = _analyze_node(node, inputs, [fields[name] for name in node.inputs])
        except LayerError as error:
            diagnostics.append(_locate(error, node, spec))
            shapes[node.name] = None
            continue
        shapes[node.name] = report.output_shape
        fields[node.name] = report.receptive_field
        reports.append(report)
    return reports, diagnostics


def _checkable(node: Node) -> bool:
    """In a spec that failed to load: a node whose config validated and whose input count is right."""
    if node.layer is None:
        return False
    low, high = type(node.layer).min_inputs, type(node.layer).max_inputs
    return len(node.inputs) >= low and (high is None or len(node.inputs) <= high)


def _analyze_node(node: Node, shapes: list[Shape], fields: list[ReceptiveField | None]) -> LayerReport:
    layer = node.layer
    layer.check_inputs(shapes, node.inputs)
    out = layer.output_shape(shapes)
    params = layer.params(shapes)
    _check_indexable(out, params)
    field_ = None
    if len(out) == 3 and all(f is not None for f in fields):
        field_ = layer.receptive_field(fields, shapes, out)
    return LayerReport(
        name=node.name, type=layer.type, inputs=list(node.inputs), input_shapes=shapes, output_shape=out,
        params=params, trainable_params=params if layer.trainable else 0, buffers=layer.buffers(shapes),
        macs=layer.macs(shapes, out), activation_bytes=prod(out) * BYTES_PER_ELEMENT,
        receptive_field=field_, node=node,
    )


def _check_indexable(out: Shape, params: int) -> None:
    """PyTorch indexes a dimension with at most 2**31 - 1 and counts elements in an int64."""
    if any(size > MAX_SIZE for size in out) or prod(out) > MAX_ELEMENTS:
        raise LayerError(
            f"the output {show(out)} is larger than PyTorch can index",
            expected=f"every dimension at most {MAX_SIZE:,} (2**31 - 1) and at most 2**63 - 1 elements",
            received=f"{prod(out):,} elements")
    if params > MAX_ELEMENTS:
        raise LayerError(f"{params:,} parameters are more than PyTorch can index",
                         expected="at most 2**63 - 1 elements")


def _locate(error: LayerError, node: Node, spec: Spec) -> Diagnostic:
    document = spec.document
    if error.field and error.field in node.field_origins:
        where = document.locate(node.field_origins[error.field])
    elif error.field:
        where = document.locate(node.origin + (error.field,))
    else:
        where = document.locate(node.origin)
    return Diagnostic(
        f"{node.layer.type} layer '{node.name}': {error.message}", where, expected=error.expected,
        received=error.received, hint=error.hint, note=node.note,
    )
