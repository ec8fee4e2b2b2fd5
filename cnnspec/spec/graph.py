"""Names and references: unique names, default inputs, references only backwards, input counts."""

from __future__ import annotations

from ..errors import Diagnostic, did_you_mean
from ..layers import LAYER_TYPES
from .source import Document
from .types import Node

MODEL_INPUT = "input"


def resolve(nodes: list[Node], document: Document) -> list[Diagnostic]:
    """Fill each node's default input (the previous layer) and check every reference; return all
    problems found. Execution order is file order, so a reference may only point backwards."""
    diagnostics: list[Diagnostic] = []
    first_use: dict[str, Node] = {}
    for node in nodes:
        where = document.locate(node.origin + ("name",))
        if node.name == MODEL_INPUT:
            diagnostics.append(Diagnostic(
                "'input' is reserved for the model input", where, hint="choose another layer name", note=node.note))
        elif node.name in first_use:
            first = document.locate(first_use[node.name].origin + ("name",))
            diagnostics.append(Diagnostic(
                f"duplicate layer name '{node.name}'", where,
                note=f"first used at line {first.line}" if first else None,
                hint="layer names must be unique; rename one of them"))
        else:
            first_use[node.name] = node
    defined: set[str] = {MODEL_INPUT}
    previous = MODEL_INPUT
    for node in nodes:
        if not node.inputs:
            node.inputs = [previous]
        for index, ref in enumerate(node.inputs):
            problem = _check_reference(ref, node, index, defined, first_use, document)
            if problem:
                diagnostics.append(problem)
        if node.layer is not None:
            diagnostics.extend(_check_arity(node, document))
        defined.add(node.name)
        previous = node.name
    return diagnostics


def _check_reference(ref, node, index, defined, first_use, document) -> Diagnostic | None:
    if ref in defined:
        return None
    where = document.locate(node.origin + ("inputs", index))
    if ref == node.name:
        return Diagnostic(f"layer '{node.name}' refers to itself", where, note=node.note,
                          hint="inputs name earlier layers, or 'input' for the model input")
    if ref in first_use:
        later = document.locate(first_use[ref].origin)
        return Diagnostic(
            f"layer '{node.name}' refers to '{ref}', which is defined later"
            + (f" (line {later.line})" if later else ""),
            where, hint="references may only point backwards: move this layer after it", note=node.note)
    return Diagnostic(
        f"layer '{node.name}' refers to unknown layer '{ref}'", where,
        expected="'input' or the name of an earlier layer",
        hint=did_you_mean(ref, sorted(defined)), note=node.note)


def _check_arity(node, document) -> list[Diagnostic]:
    layer = type(node.layer)
    count = len(node.inputs)
    low, high = layer.min_inputs, layer.max_inputs
    if count >= low and (high is None or count <= high):
        return []
    wanted = f"exactly {low}" if low == high else (f"at least {low}" if high is None else f"{low} to {high}")
    return [Diagnostic(
        f"{node.layer.type} takes {wanted} input{'s' if low != 1 or high != 1 else ''}, got {count}",
        document.locate(node.origin + ("inputs",)), received=f"inputs={node.inputs}", note=node.note,
        hint=f"{_names(name for name, cls in LAYER_TYPES.items() if cls.max_inputs != 1)} merge several "
             "inputs; other layers take one")]


def _names(names) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def unread_layers(nodes: list[Node]) -> list[Node]:
    """Layers whose output no later layer reads and that are not the model output (the last
    layer): dead branches. Legal, and still built and run by the compiled module."""
    read = {ref for node in nodes for ref in node.inputs}
    return [node for node in nodes[:-1] if node.name not in read]


def feeding_only(nodes: list[Node], sink: Node) -> list[Node]:
    """The layers upstream of ``sink`` that do not reach the model output any other way (the rest
    of its dead branch), in execution order."""
    by_name = {node.name: node for node in nodes}

    def ancestors(start: str) -> set[str]:
        seen: set[str] = set()
        stack = [start]
        while stack:
            for ref in by_name[stack.pop()].inputs:
                if ref in by_name and ref not in seen:
                    seen.add(ref)
                    stack.append(ref)
        return seen

    live = ancestors(nodes[-1].name) | {nodes[-1].name}
    branch = ancestors(sink.name) - live
    return [node for node in nodes if node.name in branch]
