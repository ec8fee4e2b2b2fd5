"""``load_spec``: file -> validated, expanded, resolved Spec.

Stages, each collecting every independent error before stopping:
1. source: YAML/JSON text -> data with positions (source.py)
2. header: name, input, labels, train, blocks (pydantic models in types.py)
3. blocks: ``block:`` uses expand to plain layers with stable names (blocks.py)
4. layers: each layer mapping validated by its registered class (layers/)
5. graph: default names, uniqueness, backward-only references (graph.py)
"""


from pathlib import Path
from typing import Any

from ..errors import Diagnostic, SpecError, did_you_mean
from ..layers import LAYER_TYPES
from .blocks import expand
from .graph import resolve
from .source import Document, load_file, load_text
from .types import BlockDefinition, BlockUse, InputSpec, Node, Spec, SpecHeader, TrainConfig
from .validation import diagnose

__all__ = [
    "BlockDefinition", "BlockUse", "InputSpec", "Node", "Spec", "SpecHeader", "TrainConfig",
    "load_spec", "parse_spec", "spec_from_document",
]


def load_spec(path: str | Path) -> Spec:
    """Load and validate a spec file (YAML or JSON); raise SpecError listing every problem."""
    return spec_from_document(load_file(path))


def parse_spec(text: str, file: str = "<string>", *, json_syntax: bool = False) -> Spec:
    """Like load_spec, from text."""
    return spec_from_document(load_text(text, file, json_syntax=json_syntax))


def _kind(value: Any) -> str:
    """What a YAML value is, in the file's words (never a Python type name)."""
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return f"the text {value!r}"


def spec_from_document(document: Document) -> Spec:
    def locate(path: tuple[Any, ...], key: bool = False):
        return document.locate(path, key=key)

    if not isinstance(document.data, dict):
        message = ("the file is empty: a spec is a mapping with name, input and layers" if document.data is None
                   else "a spec must be a mapping with name, input and layers")
        raise SpecError(
            [Diagnostic(message, locate(()), received=None if document.data is None else _kind(document.data))],
            document.text,
        )
    header, diagnostics = diagnose(SpecHeader, document.data, locate, what="the spec")
    if header is None:
        raise SpecError(diagnostics, document.text)
    raw_layers, diagnostics = expand(header, document)
    nodes: list[Node] = []
    for raw in raw_layers:
        node, problems = _validate_layer(raw, document)
        diagnostics.extend(problems)
        nodes.append(node)
    diagnostics.extend(resolve(nodes, document))
    if diagnostics:
        diagnostics.sort(key=lambda d: (d.location.line, d.location.col) if d.location else (0, 0))
        raise SpecError(diagnostics, document.text)
    return Spec(header.name, header.input, nodes, document, header.labels, header.train, header.description)


def _validate_layer(raw: Any, document: Document) -> tuple[Node, list[Diagnostic]]:
    """Check ``type`` ourselves (to suggest names), then let the layer's class validate the rest."""
    data = raw.data

    def locate(path: tuple[Any, ...], key: bool = False):
        if path and path[0] in raw.field_origins:
            return document.locate(raw.field_origins[path[0]] + tuple(path[1:]), key=key)
        return document.locate(raw.origin + tuple(path), key=key)

    if "type" not in data:
        hint = "give the layer a type, e.g. {type: conv2d, ...}"
        if "block" in data:
            hint = None
        return _placeholder(raw), [Diagnostic(
            "layer has no 'type'", locate(()), expected="one of " + ", ".join(LAYER_TYPES),
            hint=hint, note=raw.note,
        )]
    kind = data["type"]
    if not isinstance(kind, str) or kind not in LAYER_TYPES:
        return _placeholder(raw), [Diagnostic(
            f"unknown layer type '{kind}'", locate(("type",)),
            expected="one of " + ", ".join(LAYER_TYPES), received=f"type={kind!r}",
            hint=did_you_mean(str(kind), LAYER_TYPES), note=raw.note,
        )]
    label = f"{kind} layer '{raw.name}'"
    layer, diagnostics = diagnose(LAYER_TYPES[kind], data, locate, what=label, note=raw.note)
    if layer is None:
        return _placeholder(raw), diagnostics
    return Node(raw.name, layer, list(raw.inputs or []), raw.origin, raw.field_origins, raw.note), []


def _placeholder(raw: Any) -> Node:
    """A node for a layer that failed validation, so that reference checks still run."""
    inputs = raw.inputs if isinstance(raw.inputs, list) and all(isinstance(i, str) for i in raw.inputs) else []
    return Node(raw.name, None, list(inputs), raw.origin, raw.field_origins, raw.note)
