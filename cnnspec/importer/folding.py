"""Folding repeated sub-structures of an imported model into blocks with arguments and ``repeat``.

The source's own modules say what repeats: every instance of one module class (a ResNet
``Bottleneck``, an ``InvertedResidual``) is a candidate copy of one block. Instances unify when
their layers, named relative to the instance (``layer1.0.conv1`` -> ``conv1``), appear in one order
with one type each; what differs between them becomes an argument: a field value (``stride``), an
input (the shortcut), or whether a layer is there at all (``when:``). Consecutive instances
``P.0 .. P.n-1`` that chain into each other become one use ``{block, name: P, repeat: n}`` with
``with:`` for what all copies share and ``first:`` for copy 0, which is exactly how the expanded
names ``P_<i>_<layer>`` come out; copies that differ in other ways are separate uses of the same block.
Expansion reproduces the flat layer list exactly (names, fields, wiring): tests compare the two.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..layers import LAYER_TYPES
from ..spec.graph import MODEL_INPUT
from .capture import Op, identifier

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_MISSING = object()


@dataclass
class Instance:
    """The layers one module instance produced, named relative to it."""

    path: str
    cls: type
    ops: list[Op]
    prefix: str
    input: str = ""
    layers: dict[str, Op] = field(default_factory=dict)   # relative name -> op

    def relative(self, name: str) -> str:
        if name == self.input:
            return MODEL_INPUT
        return name[len(self.prefix):] if name.startswith(self.prefix) and name[len(self.prefix):] in self.layers else ""


def _unit(op: Op) -> tuple[str, type] | None:
    """The outermost module around the op that is not a container (Sequential and its subclasses
    such as torchvision's Conv2dNormActivation, ModuleList, ModuleDict)."""
    for path, cls in op.stack:
        if path and not issubclass(cls, _CONTAINERS):
            return path, cls
    return None


def _instances(ops: list[Op]) -> list[Instance]:
    """Module instances whose layers are contiguous and read one value from outside."""
    by_path: dict[str, Instance] = {}
    order: list[str] = []
    for index, op in enumerate(ops):
        unit = _unit(op)
        if unit is None:
            continue
        path, cls = unit
        if path not in by_path:
            by_path[path] = Instance(path, cls, [], identifier(path) + "_")
            order.append(path)
        by_path[path].ops.append(op)
    position = {op.name: i for i, op in enumerate(ops)}
    result = []
    for path in order:
        instance = by_path[path]
        first, last = position[instance.ops[0].name], position[instance.ops[-1].name]
        if last - first + 1 != len(instance.ops) or not instance.prefix[0].isalpha():
            continue
        names = {op.name for op in instance.ops}
        if not all(op.name.startswith(instance.prefix) for op in instance.ops):
            continue
        outside = {i for op in instance.ops for i in op.inputs if i not in names}
        if len(outside) != 1 or instance.ops[0].inputs != [next(iter(outside))]:
            continue
        instance.input = next(iter(outside))
        instance.layers = {op.name[len(instance.prefix):]: op for op in instance.ops}
        if not all(rel[0].isalpha() or rel[0] == "_" for rel in instance.layers):
            continue  # relative names must be names themselves
        result.append(instance)
    return result


@dataclass
class Block:
    name: str
    order: list[str]                               # relative layer names, template order
    types: dict[str, str]
    instances: list[Instance]
    args: dict[str, Any] = field(default_factory=dict)          # argument -> default
    template: list[dict[str, Any]] = field(default_factory=list)
    values: dict[str, list[Any]] = field(default_factory=dict)  # argument -> value per instance


def _merge_order(order: list[str], names: list[str]) -> list[str] | None:
    """The shortest order containing both as subsequences, when it is unambiguous enough: the
    names of ``names`` must keep their relative order in ``order``."""
    positions = [order.index(n) for n in names if n in order]
    if positions != sorted(positions):
        return None
    merged, i = [], 0
    for name in names:
        if name in order:
            j = order.index(name)
            merged += [n for n in order[i:j + 1] if n not in merged]
            i = j + 1
        else:
            merged.append(name)
    merged += [n for n in order[i:] if n not in merged]
    return merged


def _group(instances: list[Instance]) -> list[Block]:
    groups: list[Block] = []
    for instance in instances:
        for block in groups:
            if block.instances[0].cls is not instance.cls:
                continue
            if any(block.types.get(r, op.type) != op.type for r, op in instance.layers.items()):
                continue
            order = _merge_order(block.order, list(instance.layers))
            if order is None:
                continue
            block.order = order
            block.types.update({r: op.type for r, op in instance.layers.items()})
            block.instances.append(instance)
            break
        else:
            groups.append(Block("", list(instance.layers), {r: op.type for r, op in instance.layers.items()}, [instance]))
    return [g for g in groups if len(g.instances) > 1]


def _field_value(op: Op | None, name: str) -> Any:
    if op is None:
        return _MISSING
    if name in op.fields:
        return op.fields[name]
    return LAYER_TYPES[op.type].model_fields[name].default


def _parametrise(block: Block) -> bool:
    """Fill the template and the arguments; False when the instances cannot share one template."""
    candidates: list[tuple[str, str, list[Any]]] = []   # (relative layer, what, values per instance)
    for rel in block.order:
        ops = [inst.layers.get(rel) for inst in block.instances]
        if any(op is None for op in ops):
            candidates.append((rel, "when", [op is not None for op in ops]))
        present = [op for op in ops if op is not None]
        declared = list(LAYER_TYPES[present[0].type].model_fields)
        fields = sorted({f for op in present for f in op.fields}, key=declared.index)
        for name in fields:
            candidates.append((rel, name, [_field_value(op, name) for op in ops]))
        lengths = {len(op.inputs) for op in present}
        if len(lengths) != 1:
            return False
        for k in range(lengths.pop()):
            values = [inst.relative(op.inputs[k]) if op is not None else _MISSING
                      for inst, op in zip(block.instances, ops)]
            if "" in values:
                return False   # reads a layer of another instance: not a copy of a block
            candidates.append((rel, f"inputs.{k}", values))
    varying = [(rel, what, values) for rel, what, values in candidates
               if len({repr(v) for v in values if v is not _MISSING}) > 1]
    # one argument for values that vary together where both are defined (conv2's stride and the
    # projection's stride; the presence of the projection's conv and of its batchnorm)
    arguments: dict[str, list[Any]] = {}
    kinds: dict[str, str] = {}
    which: dict[tuple[str, str], str] = {}
    field_names = Counter(what for _, what, _ in varying)
    for rel, what, values in varying:
        kind = "when" if what == "when" else "inputs" if what.startswith("inputs.") else "field"
        for name, known in arguments.items():
            if kinds[name] == kind and _compatible(known, values):
                arguments[name] = [v if v is not _MISSING else w for v, w in zip(known, values)]
                which[(rel, what)] = name
                break
        else:
            if kind == "when":
                name = f"has_{rel.rstrip('_0123456789') or rel}"
            elif kind == "inputs":
                name = f"{rel}_input" if what == "inputs.0" else f"{rel}_input_{what.split('.')[1]}"
            else:
                name = what if field_names[what] == 1 and what not in ("index", "count") else f"{rel}_{what}"
            while name in arguments:
                name += "_"
            arguments[name], kinds[name] = values, kind
            which[(rel, what)] = name
    # an argument that is the only one set from its field is named by the field (stride, not conv2_stride)
    origin = {name: what for (rel, what), name in which.items() if kinds[name] == "field"}
    plain = Counter(origin.values())
    renames = {name: what for name, what in origin.items()
               if plain[what] == 1 and what not in arguments and what not in ("index", "count")}
    arguments = {renames.get(name, name): values for name, values in arguments.items()}
    which = {key: renames.get(name, name) for key, name in which.items()}
    block.values = arguments
    block.args = {name: Counter(repr(v) for v in values if v is not _MISSING).most_common(1)[0][0]
                  for name, values in arguments.items()}
    block.args = {name: next(v for v in arguments[name] if v is not _MISSING and repr(v) == default)
                  for name, default in block.args.items()}
    template = []
    previous, previous_always = MODEL_INPUT, True
    for rel in block.order:
        ops = [inst.layers.get(rel) for inst in block.instances]
        present = [(inst, op) for inst, op in zip(block.instances, ops) if op is not None]
        inst, op = present[0]
        layer: dict[str, Any] = {"type": op.type, "name": rel}
        inputs = []
        for k in range(len(op.inputs)):
            argument = which.get((rel, f"inputs.{k}"))
            inputs.append(f"${argument}" if argument else inst.relative(op.inputs[k]))
        # without 'inputs' a layer reads the layer before it in the expanded copy: only the
        # template's previous layer when that one is always there
        if inputs != [previous] or not previous_always:
            layer["inputs"] = inputs
        conditional = (rel, "when") in which
        if conditional:
            layer["when"] = f"${which[(rel, 'when')]}"
        previous, previous_always = rel, not conditional
        for name in sorted({f for _, o in present for f in o.fields}, key=list(LAYER_TYPES[op.type].model_fields).index):
            argument = which.get((rel, name))
            layer[name] = f"${argument}" if argument else _field_value(op, name)
        template.append(layer)
    block.template = template
    return True


def _compatible(known: list[Any], values: list[Any]) -> bool:
    """Equal wherever both are defined, and defined together somewhere."""
    both = [(a, b) for a, b in zip(known, values) if a is not _MISSING and b is not _MISSING]
    return bool(both) and all(type(a) is type(b) and a == b for a, b in both)


def _block_name(cls: type, taken: set[str]) -> str:
    words, name = [], cls.__name__.lstrip("_")
    for i, ch in enumerate(name):
        if ch.isupper() and i and (not name[i - 1].isupper() or (i + 1 < len(name) and name[i + 1].islower())):
            words.append("_")
        words.append(ch.lower())
    base = "".join(words).replace("__", "_") or "block"
    result, n = base, 2
    while result in taken or result in LAYER_TYPES:
        result, n = f"{base}_{n}", n + 1
    return result


def fold(ops: list[Op]) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """(blocks, layer list) for the spec: folded where instances unify, flat elsewhere."""
    blocks = [b for b in _group(_instances(ops)) if _parametrise(b)]
    taken: set[str] = set()
    for block in blocks:
        block.name = _block_name(block.instances[0].cls, taken)
        taken.add(block.name)
    owner = {inst.ops[0].name: (block, k) for block in blocks for k, inst in enumerate(block.instances)}
    position = {op.name: i for i, op in enumerate(ops)}
    layers: list[dict[str, Any]] = []
    i = 0
    previous = MODEL_INPUT
    while i < len(ops):
        op = ops[i]
        if op.name in owner:
            block, k = owner[op.name]
            run = _run(block, k)
            use = _use(block, run, previous)
            layers.append(use)
            last = block.instances[run[-1]].ops[-1]
            i = position[last.name] + 1
            previous = last.name
            continue
        layer: dict[str, Any] = {"type": op.type, "name": op.name}
        if op.inputs != [previous]:
            layer["inputs"] = op.inputs
        layer.update(op.fields)
        layers.append(layer)
        previous = op.name
        i += 1
    used = {layer["block"] for layer in layers if "block" in layer}
    definitions = {b.name: {"args": b.args, "layers": b.template} for b in blocks if b.name in used}
    return definitions, layers


def _run(block: Block, k: int) -> list[int]:
    """Instances k, k+1, ... that form one ``repeat``: paths P.0, P.1, ... chained output to input,
    with the same argument values from copy 1 on."""
    stem = _stem(block.instances[k], 0)
    if stem is None:
        return [k]
    run = [k]
    while run[-1] + 1 < len(block.instances):
        nxt = block.instances[run[-1] + 1]
        prev = block.instances[run[-1]]
        if _stem(nxt, len(run)) != stem or nxt.input != prev.ops[-1].name:
            break
        if len(run) > 1 and any(values[run[1]] != values[run[-1] + 1] for values in block.values.values()):
            break
        run.append(run[-1] + 1)
    if len(run) > 1 and any(values[run[1]] != values[j] for values in block.values.values() for j in run[1:]):
        return [k]
    return run


def _stem(instance: Instance, index: int) -> str | None:
    """``layer1`` for the instance ``layer1.<index>`` (``trunk_output_block2_block2`` for
    ``trunk_output.block2.block2-<index>``): the use name whose copy ``index`` it is."""
    name = identifier(instance.path)
    suffix = f"_{index}"
    return name[: -len(suffix)] if name.endswith(suffix) and len(name) > len(suffix) else None


def _use(block: Block, run: list[int], previous: str) -> dict[str, Any]:
    first = block.instances[run[0]]
    use: dict[str, Any] = {"block": block.name}
    if len(run) > 1:
        use["name"] = _stem(first, 0)
        use["repeat"] = len(run)
        shared = {a: v[run[1]] for a, v in block.values.items() if v[run[1]] is not _MISSING
                  and v[run[1]] != block.args[a]}
        first_values = {a: v[run[0]] for a, v in block.values.items() if v[run[0]] is not _MISSING
                        and v[run[0]] != shared.get(a, block.args[a])}
        if shared:
            use["with"] = shared
        if first_values:
            use["first"] = first_values
    else:
        use["name"] = identifier(first.path)
        values = {a: v[run[0]] for a, v in block.values.items() if v[run[0]] is not _MISSING and v[run[0]] != block.args[a]}
        if values:
            use["with"] = values
    if first.input != previous:
        use["inputs"] = [first.input]
    return use
