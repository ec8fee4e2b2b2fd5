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

Values: ``$arg`` / ``${arg}`` is the argument's value, whatever its type; ``"${...}"`` is an
expression (expressions.py) over the block's arguments and the copy's ``index`` and ``count``.
Each copy's arguments are resolved in declaration order, so a default may use earlier arguments;
``with`` / ``first`` values are computed where the use is written (the enclosing block's names, or
numbers only at the top level), as a function call's arguments are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import Diagnostic, Location, did_you_mean
from .expressions import ExpressionError, evaluate
from .limits import MODEL_LAYERS, setting_hint
from .source import Document
from .types import BlockUse
from .validation import diagnose

_ARG = re.compile(r"^\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\})$")
_MAX_DEPTH = 8
#: names every copy of a block sees besides its arguments
COPY_NAMES = ("index", "count")


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
    max_layers: int = 0
    overflow: bool = False  # more than max_layers: expansion stopped

    def full(self, document: Document, origin: tuple[Any, ...], note: str | None = None) -> bool:
        """True (with one diagnostic, the first time) once the model has more than max_layers
        layers, so that ``repeat: 2**63`` or blocks nested ten deep stop at once."""
        if not self.overflow and len(self.layers) > self.max_layers:
            self.overflow = True
            self.diagnostics.append(Diagnostic(
                f"the model expands to more than {self.max_layers:,} layers", document.locate(origin),
                hint=setting_hint(MODEL_LAYERS),
                note="counted after every block use and repeat is expanded" + (f"; {note}" if note else "")))
        return self.overflow


def expand(header: Any, document: Document) -> tuple[list[RawLayer], list[Diagnostic]]:
    """Expand the top-level layer list; block-use names become aliases of their last layer."""
    result = Expansion(max_layers=MODEL_LAYERS.value())
    items = []
    for index, item in enumerate(header.layers):
        data, _ = _substitute(item, {}, {}, ("layers", index), document, result, None)
        items.append(item if data is None else data)
    if result.diagnostics:
        return [], result.diagnostics
    _expand_list(items, ("layers",), "", None, {}, header.blocks, document, result, None, 0)
    if result.full(document, ("layers",)):
        return [], result.diagnostics  # a cut-off model would only add errors about missing layers
    for raw in result.layers:
        if raw.inputs:  # not yet validated: an entry may be a list or a mapping
            raw.inputs = [result.aliases.get(name, name) if isinstance(name, str) else name for name in raw.inputs]
    return result.layers, _unique(result.diagnostics)


def _unique(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """One report per problem: a mistake in a block template shows in every copy of every use."""
    seen, kept = set(), []
    for diagnostic in diagnostics:
        key = (diagnostic.message, diagnostic.location)
        if key not in seen:
            seen.add(key)
            kept.append(diagnostic)
    return kept


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
    if use_model.repeat > result.max_layers:
        result.diagnostics.append(Diagnostic(
            f"repeat: {use_model.repeat:,} is more than the {result.max_layers:,} layers a model may have",
            document.locate(origin + ("repeat",)), hint=setting_hint(MODEL_LAYERS), note=note))
    if result.diagnostics:
        return None
    block_input = previous
    if use_model.inputs:  # inside a block, 'input' is that block's input here too
        block_input = _resolve_ref(use_model.inputs[0], enclosing_input, scope)
    line = document.locate(origin).line if document.locate(origin) else "?"
    last = block_input
    reserved = [arg for arg in definition.args if arg in COPY_NAMES]
    if reserved:
        result.diagnostics.append(Diagnostic(
            f"block argument '{reserved[0]}' has a reserved name: every copy already has 'index' and 'count'",
            document.locate(("blocks", use_model.block, "args", reserved[0]), key=True),
            hint=f"rename the argument, e.g. '{reserved[0]}_'"))
        return None
    for copy in range(use_model.repeat):
        if result.full(document, origin, note):
            return None
        copy_prefix = f"{name}_{copy}_" if use_model.repeat > 1 else f"{name}_"
        copy_note = f"in block '{use_model.block}' used as '{name}' at line {line}" + (
            f", copy {copy}" if use_model.repeat > 1 else "")
        args, arg_origins = _arguments(use_model, definition, copy, origin, document, result, copy_note)
        if args is None:
            return None
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


def _arguments(use: Any, definition: Any, copy: int, origin: tuple[Any, ...], document: Document,
               result: Expansion, note: str | None) -> tuple[dict[str, Any] | None, dict[str, tuple[Any, ...]]]:
    """The argument values of one copy: ``with`` for every copy, ``first`` for copy 0, otherwise
    the default, which may be an expression of earlier arguments (and of ``index`` and ``count``)."""
    given = dict(use.with_)
    given_origins = {arg: origin + ("with", arg) for arg in given}
    if copy == 0:
        given |= use.first
        given_origins |= {arg: origin + ("first", arg) for arg in use.first}
    names: dict[str, Any] = {"index": copy, "count": use.repeat}
    args: dict[str, Any] = {}
    origins: dict[str, tuple[Any, ...]] = {}
    failed = False
    for arg, default in definition.args.items():
        if arg in given:
            args[arg], origins[arg] = given[arg], given_origins[arg]
        else:
            path = ("blocks", use.block, "args", arg)
            ok, value = _resolve(default, names, path, document, result, note, "argument")
            failed = failed or not ok
            args[arg], origins[arg] = value, path
        names[arg] = args[arg]
    return (None if failed else names), origins


def _resolve(value: Any, names: dict[str, Any], path: tuple[Any, ...], document: Document,
             result: Expansion, note: str | None, what: str = "block argument") -> tuple[bool, Any]:
    """One string value: ``$arg`` / ``${arg}`` is the argument's value (of any type), ``${...}``
    an expression's; anything else is returned as it is. Errors are recorded in ``result``."""
    if not isinstance(value, str) or "$" not in value:
        return True, value
    match = _ARG.match(value)
    if match is not None:
        arg = match.group(1) or match.group(2)
        if arg in names:
            return True, names[arg]
        result.diagnostics.append(Diagnostic(
            f"unknown {what} '${arg}'", document.locate(path),
            expected="one of " + (", ".join(f"${a}" for a in names) or "(no arguments: numbers only here)"),
            hint=did_you_mean(arg, names), note=note))
        return False, value
    if not (value.startswith("${") and value.endswith("}")):
        result.diagnostics.append(Diagnostic(
            "an expression must be the whole value: '${' ... '}' with nothing around it",
            document.locate(path), received=repr(value),
            hint='write the whole value as one expression, e.g. "${channels * 4}"', note=note))
        return False, value
    try:
        return True, evaluate(value[2:-1], names)
    except ExpressionError as exc:
        result.diagnostics.append(Diagnostic(
            f"in expression '{value}': {exc.message}", _locate_in_value(document, path, value, 2 + exc.offset),
            expected=exc.expected, hint=exc.hint, note=note))
        return False, value


def _locate_in_value(document: Document, path: tuple[Any, ...], value: str, offset: int) -> Location | None:
    """The position of character ``offset`` of a string value, when the value is written on one
    line as it reads (plain or quoted without escapes); else the value's own position."""
    where = document.locate(path)
    if where is None or path not in document.positions:
        return where
    lines = document.text.splitlines()
    if not 0 < where.line <= len(lines):
        return where
    line, col = lines[where.line - 1], where.col - 1
    if line[col:col + 1] in ("'", '"'):
        col += 1
    if not line.startswith(value, col):
        return where
    return Location(where.file, where.line, col + offset + 1)


def _substitute(template, names, arg_origins, origin, document, result, note):
    """Replace ``$arg`` strings and ``${...}`` expressions anywhere in a layer (or block use);
    remember where each top-level field's value came from when it is an argument passed through,
    so that errors about it point at the use site."""
    field_origins: dict[str, tuple[Any, ...]] = {}
    failed = False

    def walk(value: Any, path: tuple[Any, ...]) -> Any:
        nonlocal failed
        if isinstance(value, dict):
            return {k: walk(v, path + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, path + (i,)) for i, v in enumerate(value)]
        ok, resolved = _resolve(value, names, origin + path, document, result, note)
        if not ok:
            failed = True
        match = _ARG.match(value) if ok and isinstance(value, str) else None
        if match is not None and len(path) == 1 and (match.group(1) or match.group(2)) in arg_origins:
            field_origins[str(path[0])] = arg_origins[match.group(1) or match.group(2)]
        return resolved

    data = walk(template, ())
    return (None, {}) if failed else (data, field_origins)
