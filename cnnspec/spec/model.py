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
from .limits import MAX_SIZE
from .source import Document, load_file, load_text
from .types import BlockDefinition, BlockUse, InputSpec, Node, Spec, SpecHeader, TrainConfig
from .validation import diagnose

__all__ = [
    "BlockDefinition", "BlockUse", "InputSpec", "Node", "Spec", "SpecHeader", "TrainConfig",
    "load_spec", "parse_spec", "sort_diagnostics", "spec_from_document",
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
    header, diagnostics, input_ok = _header(document.data, locate)
    if header is None:
        raise SpecError(diagnostics, document.text)
    raw_layers, expansion_problems = expand(header, document)
    diagnostics.extend(expansion_problems)
    nodes: list[Node] = []
    for raw in raw_layers:
        node, problems = _validate_layer(raw, document)
        diagnostics.extend(problems)
        nodes.append(node)
    diagnostics.extend(resolve(nodes, document))
    if header.train is not None and header.train.augment is not None:
        from ..train.augment import validate_augment  # torch-free: the transforms' fields only

        diagnostics.extend(validate_augment(header.train.augment,
                                            lambda path, key=False: locate(("train", "augment", *path), key))[1])
    spec = Spec(header.name, header.input, nodes, document, header.labels, header.train, header.description)
    if diagnostics:
        raise SpecError(sort_diagnostics(diagnostics), document.text, partial=spec if input_ok else None)
    return spec


def sort_diagnostics(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """In file order, unlocated ones first."""
    return sorted(diagnostics, key=lambda d: (d.location.line, d.location.col) if d.location else (0, 0))


#: valid stand-ins for the header fields no layer depends on, so that their errors do not hide the layers'
_STAND_INS: dict[str, Any] = {"name": "spec", "description": None, "labels": None, "train": None,
                              "input": {"channels": 1, "height": 1, "width": 1}}


def _header(data: dict[str, Any], locate: Any) -> tuple["SpecHeader | None", list[Diagnostic], bool]:
    """The validated header, its problems, and whether ``input`` is usable for shape checks.
    A bad name, description, labels, train section or input is reported along with the layers'
    problems: the layers are still checked against stand-ins for those fields."""
    header, diagnostics = diagnose(SpecHeader, data, locate, what="the spec")
    input_data = data.get("input")
    oversized = _oversized(input_data, ("input",), locate, "the model input", None)
    if header is not None:
        return header, oversized, not oversized
    input_ok = not oversized and diagnose(InputSpec, input_data, locate, what="the input")[0] is not None \
        if isinstance(input_data, dict) else False
    patched = {**data, **{k: v for k, v in _STAND_INS.items() if k != "input" or not input_ok}}
    stand_in, _ = diagnose(SpecHeader, patched, locate, what="the spec")
    return stand_in, diagnostics + oversized, input_ok


# The registry grows; the closest names help more than a list of all of them.
_TYPE_EXPECTED = "a registered layer type (`cnnspec layers` lists them)"


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
            "layer has no 'type'", locate(()), expected=_TYPE_EXPECTED,
            hint=hint, note=raw.note,
        )]
    kind = data["type"]
    if not isinstance(kind, str) or kind not in LAYER_TYPES:
        return _placeholder(raw), [Diagnostic(
            f"unknown layer type '{kind}'", locate(("type",)),
            expected=_TYPE_EXPECTED, received=f"type={kind!r}",
            hint=did_you_mean(str(kind), LAYER_TYPES, n=3), note=raw.note,
        )]
    label = f"{kind} layer '{raw.name}'"
    layer, diagnostics = diagnose(LAYER_TYPES[kind], data, locate, what=label, note=raw.note)
    diagnostics = diagnostics or _oversized(data, (), locate, label, raw.note)
    if layer is None or diagnostics:
        return _placeholder(raw), diagnostics
    return Node(raw.name, layer, list(raw.inputs or []), raw.origin, raw.field_origins, raw.note), []


def _oversized(data: Any, path: tuple[Any, ...], locate: Any, what: str, note: str | None) -> list[Diagnostic]:
    """Every integer of a validated mapping (and of its [h, w] pairs) above MAX_SIZE: PyTorch takes
    sizes as int64 and indexes them with at most 2**31 - 1 per dimension; a kernel of 10^30 is a typo."""
    if not isinstance(data, dict):
        return []
    problems = []
    for key, value in data.items():
        for index, number in enumerate(value if isinstance(value, (list, tuple)) else [value]):
            if isinstance(number, int) and not isinstance(number, bool) and number > MAX_SIZE:
                where = (key, index) if isinstance(value, (list, tuple)) else (key,)
                problems.append(Diagnostic(
                    f"{key} is larger than the largest size PyTorch takes ({what})", locate(path + where, False),
                    expected=f"at most {MAX_SIZE:,} (2**31 - 1)", received=f"{key}={value!r}", note=note))
    return problems


def _placeholder(raw: Any) -> Node:
    """A node for a layer that failed validation, so that reference checks still run."""
    inputs = raw.inputs if isinstance(raw.inputs, list) and all(isinstance(i, str) for i in raw.inputs) else []
    return Node(raw.name, None, list(inputs), raw.origin, raw.field_origins, raw.note)
