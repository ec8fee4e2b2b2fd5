"""Expanding ``block:`` uses into plain layers with stable, readable names.

    blocks:
      basic:
        args: {channels: 64, stride: 1, shortcut: input, project: false}
        layers:
          - {type: conv2d, name: conv1, out_channels: $channels, kernel_size: 3, stride: $stride, padding: 1}
          - ...
          - {type: conv2d, name: down, inputs: [input], when: $project, ...}
          - {type: add, name: add, inputs: [bn2, $shortcut]}
    layers:
      - {block: basic, name: layer2, repeat: 2, with: {channels: 128}, first: {stride: 2, project: true, shortcut: down_bn}}

Copy i of ``layer2`` names its layers ``layer2_<i>_<layer>`` (``layer2_<layer>`` without ``repeat``),
like torchvision's ``layer2.0.conv1``. Inside a block ``input`` is the block's input and a layer name
means that layer of the same copy; ``layer2`` itself names the output of the last copy.
Every layer also gets a default name when it has none: ``<type>_<n>``, n counting layers of that
type in the same list from 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import Diagnostic, did_you_mean
from .source import Document
from .types import BlockUse
from .validation import diagnose

_ARG = re.compile(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$")
_MAX_DEPTH = 8


@dataclass
class RawLayer:
    """A layer mapping after substitution, with its final name and resolved input names."""

    data: dict[str, Any]
    origin: tuple[Any, ...]
    name: str
    inputs: list[str] | None
    field_origins: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    note: str | None = None


@dataclass
class Expansion:
    layers: list[RawLayer] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def expand(header: Any, document: Document) -> tuple[list[RawLayer], list[Diagnostic]]:
    """Expand the top-level layer list; block-use names become aliases of their last layer."""
    result = Expansion()
    _expand_list(header.layers, ("layers",), "", None, {}, header.blocks, document, result, None, 0)
    for raw in result.layers:
        if raw.inputs:
            raw.inputs = [result.aliases.get(name, name) for name in raw.inputs]
    return result.layers, result.diagnostics


def _default_names(items: list[dict[str, Any]]) -> list[str]:
    counts: dict[str, int] = {}
    names = []
    for item in items:
        kind = str(item.get("type") or item.get("block") or "layer")
        counts[kind] = counts.get(kind, 0) + 1
        names.append(item.get("name") if isinstance(item.get("name"), str) else f"{kind}_{counts[kind]}")
    return names


def _expand_list(
    items: list[dict[str, Any]], base: tuple[Any, ...], prefix: str, block_input: str | None,
    scope: dict[str, str], blocks: dict[str, Any], document: Document, result: Expansion,
    note: str | None, depth: int,
) -> str | None:
    """Expand one list of layers; returns the global name of its last layer."""
    local: dict[str, str] = {}
    previous = block_input
    for index, (item, name) in enumerate(zip(items, _default_names(items))):
        origin = base + (index,)
        if not isinstance(item, dict):
            result.diagnostics.append(Diagnostic(
                "each layer must be a mapping such as {type: relu}", document.locate(origin),
                received=repr(item), note=note))
            continue
        global_name = prefix + name
        if "block" in item and "type" not in item:
            last = _expand_use(item, origin, global_name, previous, block_input, scope | local, blocks,
                               document, result, note, depth)
            if last is not None:
                local[name] = global_name
                result.aliases[global_name] = last
                previous = last
            continue
        inputs = item.get("inputs")
        if isinstance(inputs, list):
            inputs = [_resolve_ref(ref, block_input, scope | local) for ref in inputs]
        elif inputs is None and previous is not None and block_input is not None and index == 0:
            inputs = [block_input]
        else:
            inputs = None
        result.layers.append(RawLayer(item, origin, global_name, inputs, note=note))
        local[name] = global_name
        previous = global_name
    return previous


def _resolve_ref(ref: Any, block_input: str | None, scope: dict[str, str]) -> Any:
    if not isinstance(ref, str):
        return ref
    if ref == "input" and block_input is not None:
        return block_input
    return scope.get(ref, ref)


def _expand_use(
    use: dict[str, Any], origin: tuple[Any, ...], name: str, previous: str | None,
    enclosing_input: str | None, scope: dict[str, str], blocks: dict[str, Any], document: Document, result: Expansion,
    note: str | None, depth: int,
) -> str | None:
    too_many = _too_many_inputs(use, origin, document, note)
    if too_many is not None:  # say it in the block's words, then check the rest of the use
        result.diagnostics.append(too_many)
        use = {**use, "inputs": use["inputs"][:1]}
    use_model, problems = diagnose(
        BlockUse, use, lambda p, key=False: document.locate(origin + tuple(p), key=key), what="block use", note=note
    )
    if use_model is None or too_many is not None:
        result.diagnostics.extend(problems)
        return None
    if use_model.block not in blocks:
        result.diagnostics.append(Diagnostic(
            f"unknown block '{use_model.block}'", document.locate(origin + ("block",)),
            expected="one of the names under 'blocks': " + (", ".join(blocks) or "(none defined)"),
            hint=did_you_mean(use_model.block, blocks), note=note))
        return None
    if depth >= _MAX_DEPTH:
        result.diagnostics.append(Diagnostic(
            f"blocks nest deeper than {_MAX_DEPTH} levels (does block '{use_model.block}' use itself?)",
            document.locate(origin), note=note))
        return None
    definition = blocks[use_model.block]
    for key, values in (("with", use_model.with_), ("first", use_model.first)):
        for arg in values:
            if arg not in definition.args:
                result.diagnostics.append(Diagnostic(
                    f"block '{use_model.block}' has no argument '{arg}'", document.locate(origin + (key, arg), key=True),
                    expected="one of " + (", ".join(definition.args) or "(no arguments)"),
                    hint=did_you_mean(arg, definition.args), note=note))
    if result.diagnostics:
        return None
    block_input = previous
    if use_model.inputs:  # inside a block, 'input' is that block's input here too
        block_input = _resolve_ref(use_model.inputs[0], enclosing_input, scope)
    line = document.locate(origin).line if document.locate(origin) else "?"
    last = block_input
    for copy in range(use_model.repeat):
        args, arg_origins = _arguments(use_model, definition, copy, origin)
        copy_prefix = f"{name}_{copy}_" if use_model.repeat > 1 else f"{name}_"
        copy_note = f"in block '{use_model.block}' used as '{name}' at line {line}" + (
            f", copy {copy}" if use_model.repeat > 1 else "")
        templates = []
        for index, template in enumerate(definition.layers):
            data, origins = _substitute(template, args, arg_origins, ("blocks", use_model.block, "layers", index),
                                        document, result, copy_note)
            if data is None:
                continue
            when = data.pop("when", True)
            if not isinstance(when, bool):
                result.diagnostics.append(Diagnostic(
                    "'when' must be true or false", document.locate(("blocks", use_model.block, "layers", index, "when")),
                    received=f"when={when!r}", note=copy_note))
                continue
            if when:
                templates.append((index, data, origins))
        before = len(result.layers)
        last = _expand_list(
            [t[1] for t in templates], ("blocks", use_model.block, "layers"), copy_prefix, last, scope,
            blocks, document, result, copy_note, depth + 1,
        )
        for raw, (index, _, origins) in zip(result.layers[before:], templates):
            raw.origin = ("blocks", use_model.block, "layers", index)
            raw.field_origins = origins
        if use_model.repeat > 1:
            result.aliases[f"{name}_{copy}"] = last
    return last


def _too_many_inputs(use: dict[str, Any], origin: tuple[Any, ...], document: Document,
                     note: str | None) -> Diagnostic | None:
    """A block has one input (``input`` inside it); pydantic would only say "at most 1 item"."""
    inputs = use.get("inputs")
    if not isinstance(inputs, list) or len(inputs) < 2:
        return None
    names = ", ".join(str(ref) for ref in inputs)
    return Diagnostic(
        f"a block use takes one input, got {len(inputs)}", document.locate(origin + ("inputs",)),
        expected="inputs: [one layer name] (inside the block it is called 'input')",
        received=f"inputs={inputs!r}",
        hint=f"merge them first, e.g. {{type: concat, name: merged, inputs: [{names}]}} (or add), "
        "and give the block inputs: [merged]", note=note)


def _arguments(use: Any, definition: Any, copy: int, origin: tuple[Any, ...]):
    args = dict(definition.args)
    origins = {arg: ("blocks", use.block, "args", arg) for arg in args}
    for arg, value in use.with_.items():
        args[arg], origins[arg] = value, origin + ("with", arg)
    if copy == 0:
        for arg, value in use.first.items():
            args[arg], origins[arg] = value, origin + ("first", arg)
    return args, origins


def _substitute(template, args, arg_origins, origin, document, result, note):
    """Replace ``$arg`` strings anywhere in a template layer; remember where each top-level
    substituted field's value came from so that errors point at the use site."""
    field_origins: dict[str, tuple[Any, ...]] = {}
    failed = False

    def walk(value: Any, path: tuple[Any, ...]) -> Any:
        nonlocal failed
        if isinstance(value, dict):
            return {k: walk(v, path + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, path + (i,)) for i, v in enumerate(value)]
        match = _ARG.match(value) if isinstance(value, str) else None
        if match is None:
            return value
        arg = match.group(1)
        if arg not in args:
            failed = True
            result.diagnostics.append(Diagnostic(
                f"unknown block argument '${arg}'", document.locate(origin + path),
                expected="one of " + (", ".join(f"${a}" for a in args) or "(no arguments declared under args)"),
                hint=did_you_mean(arg, args), note=note))
            return value
        if len(path) == 1:
            field_origins[str(path[0])] = arg_origins[arg]
        return args[arg]

    data = walk(template, ())
    return (None, {}) if failed else (data, field_origins)
