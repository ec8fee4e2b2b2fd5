"""Capturing a torch.nn.Module as a list of spec layers, with torch.fx and the layer registry.

``torch.fx.symbolic_trace`` (eval mode) records every module call, function and tensor method in
execution order, each with the stack of modules it ran inside (``nn_module_stack``). Modules that a
layer class claims (``Layer.imports_torch``) are traced as leaves; other custom modules (a ResNet
``Bottleneck``, torchvision's ``SqueezeExcitation``) are traced through, so only registry types
remain. ``ShapeProp`` gives each value's shape. Each call is offered to the classes that claim its
target, in registry order; the first ``from_torch`` that returns fields makes the layer. Calls that
only change the memory layout (``permute`` to channels-last and back, ``contiguous``) or pick an item
of a ``chunk`` are followed, not turned into layers.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from ..errors import CnnspecError
from ..layers import LAYER_TYPES, Layer
from ..spec.graph import MODEL_INPUT


class ImportError_(CnnspecError):
    """A source model that cannot be written as a spec (named operation, where it sits)."""


#: reading a module's attribute for a field skips the inferred input sizes
_INFERRED = frozenset({"in_channels", "in_features", "num_features"})
_LAYOUT = {(0, 2, 3, 1): "NHWC", (0, 3, 1, 2): "NCHW"}


class Tensor:
    """Stands for a tensor argument in ``Call.args`` (the layer's inputs are ``Call.input_shapes``)."""

    def __repr__(self) -> str:
        return "<tensor>"


TENSOR = Tensor()


@dataclass
class Call:
    """One captured call offered to ``Layer.from_torch``: what ran, on what, with which arguments."""

    target: str                       # "torch.nn.Conv2d", "torch.cat", "Tensor.mean", ...
    module: nn.Module | None          # the module, for a module call
    args: tuple[Any, ...]             # positional arguments, tensors replaced by TENSOR
    kwargs: dict[str, Any]
    input_shapes: list[tuple[int, ...]]   # per tensor input, without the batch axis, channels first
    output_shape: tuple[int, ...]
    layout: str = "NCHW"              # "NHWC" when the input was permuted to channels-last
    constants: list[torch.Tensor] = field(default_factory=list)   # parameters read with get_attr
    item: int | None = None           # which output of a multi-output call (chunk) this layer is

    def arg(self, index: int, name: str, default: Any = None) -> Any:
        """A positional-or-keyword argument of a function call, by position and name."""
        if name in self.kwargs:
            return self.kwargs[name]
        return self.args[index] if index < len(self.args) else default

    def module_fields(self, layer: type[Layer]) -> dict[str, Any]:
        """The module's attributes named like the layer's fields, written as a spec writes them."""
        result = {}
        for name, info in layer.model_fields.items():
            if name in ("type", "name", "inputs", "trainable") or name in _INFERRED or not hasattr(self.module, name):
                continue
            value = getattr(self.module, name)
            if isinstance(info.default, bool) and (value is None or isinstance(value, torch.Tensor)):
                value = value is not None  # bias: a Parameter or None
            result[name] = plain(value)
        return result


def plain(value: Any) -> Any:
    """(3, 3) -> 3, (3, 5) -> [3, 5], tensors and other tuples -> lists: values as YAML writes them."""
    if isinstance(value, torch.Size):
        value = tuple(value)
    if isinstance(value, (tuple, list)):
        items = [plain(v) for v in value]
        return items[0] if items and all(v == items[0] for v in items) and len(items) == 2 else items
    return value


@dataclass
class Op:
    """One layer of the imported spec, before folding into blocks."""

    name: str
    type: str
    fields: dict[str, Any]
    inputs: list[str]
    stack: tuple[tuple[str, type], ...]          # enclosing modules, outermost first: (path, class)
    weights: list[tuple[str, torch.Tensor]]      # the source's tensors for this layer, in order
    where: str                                   # for messages: "layer1.0.conv1 (Conv2d)"


def _resolve(qualified: str) -> Any:
    if qualified.startswith("Tensor."):
        return qualified
    module, _, attribute = qualified.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError):
        return None  # an optional package (timm, a newer torchvision) that is not installed


def claims() -> dict[Any, list[type[Layer]]]:
    """Target object (module class, function) or "Tensor.NAME" -> the layer classes that claim it."""
    table: dict[Any, list[type[Layer]]] = {}
    for layer in LAYER_TYPES.values():
        for qualified in layer.imports_torch:
            target = _resolve(qualified)
            if target is not None:
                table.setdefault(target, []).append(layer)
    return table


class _Tracer(fx.Tracer):
    """fx tracing with every module class a layer claims as a leaf, and claimed plain functions
    (e.g. torchvision's ``channel_shuffle``) recorded as calls instead of traced into."""

    def __init__(self, table: dict[Any, list[type[Layer]]]):
        functions = tuple(t for t in table if callable(t) and not isinstance(t, type) and
                          getattr(t, "__module__", "").split(".")[0] not in ("torch", "_operator", "operator"))
        super().__init__(autowrap_functions=functions)
        self.leaves = tuple(t for t in table if isinstance(t, type) and issubclass(t, nn.Module))

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        if type(module) in self.leaves:
            return True
        return super().is_leaf_module(module, qualified_name)


def trace(model: nn.Module, example: torch.Tensor) -> fx.GraphModule:
    table = claims()
    tracer = _Tracer(table)
    try:
        graph = tracer.trace(model)
    except Exception as error:  # fx raises plain Python errors for data-dependent control flow
        raise ImportError_(f"torch.fx could not trace the model: {error}\n"
                           "hint: cnnspec import needs a forward without data-dependent Python control flow") from None
    module = fx.GraphModule(tracer.root, graph)
    module.graph.eliminate_dead_code()
    with torch.no_grad():
        ShapeProp(module).propagate(example)
    return module


def _target_name(node: fx.Node, module: nn.Module | None) -> tuple[str, Any]:
    """("torch.nn.Conv2d", class) / ("torch.cat", function) / ("Tensor.mean", "Tensor.mean")."""
    if node.op == "call_module":
        cls = type(module)
        return f"{cls.__module__}.{cls.__qualname__}", cls
    if node.op == "call_method":
        return f"Tensor.{node.target}", f"Tensor.{node.target}"
    target = node.target
    short = getattr(target, "__name__", "")
    if short and getattr(torch, short, None) is target:
        return f"torch.{short}", target  # torch's builtins report torch._VariableFunctionsClass
    name = getattr(target, "__qualname__", short or str(target))
    return f"{getattr(target, '__module__', None) or 'torch'}.{name}", target


def _shape(meta: Any, layout: str) -> tuple[int, ...]:
    shape = tuple(int(d) for d in meta.shape[1:])
    return (shape[2], shape[0], shape[1]) if layout == "NHWC" and len(shape) == 3 else shape


class _Values:
    """What each fx node stands for: the spec layer that makes it, its layout, and for a chunk the
    node it splits (so that ``getitem`` can become a channel slice of the chunk's input)."""

    def __init__(self) -> None:
        self.layer: dict[fx.Node, str] = {}
        self.layout: dict[fx.Node, str] = {}
        self.constant: dict[fx.Node, tuple[str, torch.Tensor]] = {}
        self.chunk: dict[fx.Node, fx.Node] = {}


def capture(model: nn.Module, input_shape: tuple[int, int, int]) -> tuple[list[Op], list[str]]:
    """The model's layers in execution order, and notes (modules never called, ...)."""
    model = model.eval()
    graph_module = trace(model, torch.zeros((1, *input_shape)))
    table = claims()
    values = _Values()
    ops: list[Op] = []
    used_names: dict[str, int] = {}
    for node in graph_module.graph.nodes:
        if node.op == "placeholder":
            values.layer[node] = MODEL_INPUT
            values.layout[node] = "NCHW"
        elif node.op == "get_attr":
            values.constant[node] = (str(node.target), _get_attr(model, str(node.target)))
        elif node.op == "output":
            result = node.args[0]
            if not isinstance(result, fx.Node) or values.layer.get(result) is None:
                raise ImportError_("the model's output is not a single tensor made by a layer")
            if values.layer[result] != ops[-1].name:
                raise ImportError_(f"the model's output comes from '{values.layer[result]}', not from its last "
                                   "operation; cnnspec specs end in their output layer")
        else:
            op = _lower(node, graph_module, values, table, used_names)
            if op is not None:
                ops.append(op)
    notes = _uncalled(model, {name for op in ops for name, _ in op.weights})
    return ops, notes


def _get_attr(model: nn.Module, path: str) -> torch.Tensor:
    value: Any = model
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _where(node: fx.Node, target: str) -> str:
    stack = list(node.meta.get("nn_module_stack", {}).values())
    inside = f" in {stack[-1][0]} ({stack[-1][1].__name__})" if stack and node.op != "call_module" else ""
    what = f"{node.target} ({target})" if node.op == "call_module" else target
    return what + inside


def _lower(node: fx.Node, graph_module: fx.GraphModule, values: _Values,
           table: dict[Any, list[type[Layer]]], used_names: dict[str, int]) -> Op | None:
    module = graph_module.get_submodule(str(node.target)) if node.op == "call_module" else None
    target_name, target = _target_name(node, module)
    inputs: list[fx.Node] = []
    constants: list[tuple[str, torch.Tensor]] = []

    def replace(value: Any) -> Any:
        if isinstance(value, fx.Node):
            if value in values.constant:
                constants.append(values.constant[value])
                return TENSOR
            inputs.append(value)
            return TENSOR
        return value

    args = fx.node.map_aggregate(node.args, replace)
    kwargs = fx.node.map_aggregate(node.kwargs, replace)
    known = [i for i in inputs if i in values.layer or i in values.chunk]
    if len(known) != len(inputs):
        raise ImportError_(f"{_where(node, target_name)} reads a value that is not a tensor made by a layer "
                           "(a shape or a Python number computed from a tensor)")
    layout = values.layout.get(inputs[0], "NCHW") if inputs else "NCHW"
    item = None
    # operations that only follow a tensor: layout changes, contiguous copies, items of a chunk
    if target_name in ("Tensor.permute", "torch.permute") and len(inputs) == 1:
        dims = tuple(a for a in args[1:]) if target_name == "Tensor.permute" and len(args) > 2 else args[1]
        order = _LAYOUT.get(tuple(dims))
        if order is None:
            raise ImportError_(f"{_where(node, target_name)} permutes the axes to {list(dims)}; only channels-last "
                               "and back ([0, 2, 3, 1] / [0, 3, 1, 2]) can be followed")
        values.layer[node], values.layout[node] = values.layer[inputs[0]], order
        return None
    if target_name in ("Tensor.contiguous",):
        values.layer[node], values.layout[node] = values.layer[inputs[0]], layout
        return None
    if target_name in ("Tensor.chunk", "torch.chunk") and len(inputs) == 1:
        values.chunk[node] = node
        values.layout[node] = layout
        return None
    if target_name == "_operator.getitem" and inputs and inputs[0] in values.chunk:
        chunk = inputs[0]
        item = int(args[1])
        source_name, target = "Tensor.chunk", "Tensor.chunk"
        args, kwargs = chunk.args[1:], dict(chunk.kwargs)
        inputs = [chunk.args[0]]
        target_name = source_name
        node_meta = node.meta.get("tensor_meta")
        input_meta = chunk.args[0].meta.get("tensor_meta")
        input_shapes = [_shape(input_meta, layout)]
        output_shape = _shape(node_meta, layout)
        args = (TENSOR, *args)
    else:
        input_shapes = [_shape(i.meta["tensor_meta"], values.layout.get(i, "NCHW")) for i in inputs]
        meta = node.meta.get("tensor_meta")
        if meta is None or not hasattr(meta, "shape"):
            raise ImportError_(f"{_where(node, target_name)} does not return one tensor")
        output_shape = _shape(meta, layout)
    call = Call(target_name, module, tuple(args), dict(kwargs), input_shapes, output_shape, layout,
                [tensor for _, tensor in constants], item)
    for layer in table.get(target, []):
        fields = layer.from_torch(call)
        if fields is not None:
            break
    else:
        claimed = ", ".join(sorted(c.model_fields["type"].default for c in table.get(target, [])))
        reason = (f"none of the layer types that import it ({claimed}) can express this call" if claimed
                  else "no cnnspec layer type imports it")
        raise ImportError_(f"cannot import {_where(node, target_name)}: {reason}",)
    name = _layer_name(node, used_names, item)
    values.layer[node] = name
    values.layout[node] = layout
    weights = list(module.state_dict().items()) if module is not None else []
    weights = [(f"{node.target}.{key}", tensor) for key, tensor in weights] + constants
    stack = tuple((path, cls) for path, cls in node.meta.get("nn_module_stack", {}).values())
    if node.op == "call_module":
        stack = stack[:-1]  # the module itself is the layer, not a container of it
    return Op(name, layer.model_fields["type"].default, _without_defaults(layer, fields),
              [values.layer[i] for i in inputs], stack, weights, _where(node, target_name))


def _without_defaults(layer: type[Layer], fields: dict[str, Any]) -> dict[str, Any]:
    result = {}
    for name, value in fields.items():
        default = layer.model_fields[name].default
        if value != default and not (isinstance(value, list) and len(set(value)) == 1 and value[0] == default):
            result[name] = value
    return result


def identifier(path: str) -> str:
    """A module path as a spec name: ``layer1.0.conv1`` -> ``layer1_0_conv1``, ``block1-0`` -> ``block1_0``."""
    return re.sub(r"\W", "_", path.replace(".", "_"))


def _layer_name(node: fx.Node, used: dict[str, int], item: int | None) -> str:
    """A module call is named by its path (``layer1.0.conv1`` -> ``layer1_0_conv1``); a function by
    the module it ran in and what it is (``layer1_0_add``); repeats get ``_1``, ``_2``."""
    if node.op == "call_module":
        base = identifier(str(node.target))
    else:
        stack = list(node.meta.get("nn_module_stack", {}).values())
        owner = identifier(stack[-1][0]) + "_" if stack else ""
        what = "chunk" if item is not None else str(node.target if node.op == "call_method" else
                                                      getattr(node.target, "__name__", "op")).strip("_")
        base = owner + (f"{what}_{item}" if item is not None else what)
    if not base[0].isalpha() and base[0] != "_":
        base = "layer_" + base
    count = used.get(base, 0)
    used[base] = count + 1
    return base if count == 0 else f"{base}_{count}"


def _uncalled(model: nn.Module, imported: set[str]) -> list[str]:
    """Parameters the eval-mode forward never reads (auxiliary heads, unused modules): they are not
    in the spec, so its counts are smaller than the module's."""
    missing = [(key, p.numel()) for key, p in model.named_parameters() if key not in imported]
    owners: dict[str, int] = {}
    for key, count in missing:
        owner = key.split(".")[0] if "." in key else key
        owners[owner] = owners.get(owner, 0) + count
    return [f"'{owner}' ({count:,} parameters) is never run in eval mode and is left out"
            for owner, count in owners.items()]
