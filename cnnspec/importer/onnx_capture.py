"""Capturing an ONNX graph as spec layers, through the layer registry (``Layer.imports_onnx``).

ONNX graphs are topologically sorted, so the nodes are the layers' order. Each node goes to the
first layer class that lists its ``op_type`` and whose ``from_onnx`` accepts it; ``Identity`` nodes
and ``Constant`` nodes are followed, not turned into layers. A layer is named by its first weight
(``layer1.0.conv1.weight`` -> ``layer1_0_conv1``, as the exporters keep module paths) or else by
its output's name. Weights are the node's initializer inputs in order (weight, bias, running
statistics), which is the order the compiled layer's module declares them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..layers import LAYER_TYPES, Layer
from ..spec.graph import MODEL_INPUT
from .capture import ImportError_, Op, identifier


_SETTINGS = frozenset({"Clip", "Reshape", "ReduceMean", "Resize", "Pad", "Flatten", "Concat"})


@dataclass
class Call:
    """One ONNX node offered to ``Layer.from_onnx``."""

    op_type: str
    attributes: dict[str, Any]
    input_shapes: list[tuple[int, ...]]     # the tensor (non-constant) inputs, without the batch axis
    output_shape: tuple[int, ...]
    constants: list[np.ndarray | None]      # per node input: its value when it is an initializer/Constant

    def attribute(self, name: str, default: Any = None) -> Any:
        return self.attributes.get(name, default)

    def constant(self, index: int) -> np.ndarray | None:
        return self.constants[index] if index < len(self.constants) else None


def _shapes(model: Any) -> dict[str, tuple[int, ...]]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    result = {}
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
        result[value.name] = tuple(dims[1:])
    return result


def capture_onnx(model: Any, input_shape: tuple[int, int, int]) -> tuple[list[Op], list[str]]:
    import onnx
    import torch
    from onnx import numpy_helper

    constants: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    shapes = _shapes(model)
    table: dict[str, list[type[Layer]]] = {}
    for layer in LAYER_TYPES.values():
        for op_type in layer.imports_onnx:
            table.setdefault(op_type, []).append(layer)
    graph_input = [i.name for i in model.graph.input if i.name not in constants][0]
    made: dict[str, str] = {graph_input: MODEL_INPUT}
    ops: list[Op] = []
    used: set[str] = {MODEL_INPUT}
    for node in model.graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
            continue
        if node.op_type == "Identity":
            source = node.input[0]
            if source in constants:
                constants[node.output[0]] = constants[source]
            else:
                made[node.output[0]] = made[source]
            continue
        tensors = [name for name in node.input if name and name not in constants]
        missing = [name for name in tensors if name not in made]
        if missing:
            raise ImportError_(f"cannot import ONNX node '{node.name}' ({node.op_type}): it reads '{missing[0]}', "
                               "which no imported layer makes (a shape computation?)")
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        attributes = {k: v.decode() if isinstance(v, bytes) else v for k, v in attributes.items()}
        call = Call(node.op_type, attributes, [shapes.get(t, ()) for t in tensors],
                    shapes.get(node.output[0], ()), [constants.get(name) for name in node.input])
        for layer in table.get(node.op_type, []):
            fields = layer.from_onnx(call)
            if fields is not None:
                break
        else:
            claimed = ", ".join(sorted(c.model_fields["type"].default for c in table.get(node.op_type, [])))
            reason = (f"none of the layer types that import it ({claimed}) can express this node" if claimed
                      else "no cnnspec layer type imports it")
            raise ImportError_(f"cannot import ONNX node '{node.name}' ({node.op_type}): {reason}")
        # the learned tensors: float initializers that are not settings (Clip bounds, Reshape
        # shapes, ReduceMean axes, Resize scales are inputs too)
        weights = [] if node.op_type in _SETTINGS else [
            (name, torch.from_numpy(np.array(constants[name]))) for name in node.input
            if name in constants and np.asarray(constants[name]).dtype.kind == "f" and np.asarray(constants[name]).ndim > 0]
        name = _name(node, weights, used)
        made[node.output[0]] = name
        ops.append(Op(name, layer.model_fields["type"].default, _plain(layer, fields),
                      [made[t] for t in tensors], (), weights, f"ONNX node '{node.name}' ({node.op_type})"))
    return ops, []


def _plain(layer: type[Layer], fields: dict[str, Any]) -> dict[str, Any]:
    from .capture import _without_defaults

    return _without_defaults(layer, fields)


def _name(node: Any, weights: list[tuple[str, Any]], used: set[str]) -> str:
    if weights:
        base = weights[0][0]
        for suffix in (".weight", ".bias", ".scale", ".running_mean"):
            if base.endswith(suffix):
                base = base[: -len(suffix)]
                break
    else:
        base = node.output[0]
    base = identifier(base).strip("_") or node.op_type.lower()
    if not (base[0].isalpha() or base[0] == "_"):
        base = f"{node.op_type.lower()}_{base}"
    name, n = base, 1
    while name in used:
        name, n = f"{base}_{n}", n + 1
    used.add(name)
    return name
