"""Loading YAML and JSON spec files into plain Python data while remembering where each value was.

JSON and YAML are the same language here: both are composed by PyYAML's safe loader, which yields
nodes with positions. On top of the safe loader we
- refuse every tag that is not a plain YAML type (``!!python/object`` and friends),
- report duplicate keys (PyYAML silently keeps the last one),
- read ``1e-3`` as a float, as YAML 1.2 and JSON do (PyYAML follows YAML 1.1 and reads a string).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import Diagnostic, Location, SpecError

Path_ = tuple[Any, ...]


class _SpecLoader(yaml.SafeLoader):
    """The safe loader with YAML 1.2 float syntax."""


_FLOAT_12 = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))

_PLAIN_TAGS = {
    "tag:yaml.org,2002:" + name
    for name in ("str", "int", "float", "bool", "null", "map", "seq", "binary", "timestamp")
}


@dataclass
class Document:
    """A loaded spec file: its data, its text, and the 1-based position of every value and key."""

    file: str
    text: str
    data: Any
    positions: dict[Path_, Location] = field(default_factory=dict)
    key_positions: dict[Path_, Location] = field(default_factory=dict)

    def locate(self, path: Path_, *, key: bool = False) -> Location | None:
        """The position of ``path`` (or of its key), falling back to the nearest enclosing value."""
        path = tuple(path)
        if key and path in self.key_positions:
            return self.key_positions[path]
        while path:
            if path in self.positions:
                return self.positions[path]
            path = path[:-1]
        return self.positions.get(())


def load_file(path: str | Path) -> Document:
    """Read and parse a spec file; raises SpecError with a location for any syntax problem."""
    path = Path(path)
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([Diagnostic(f"no such file: {shown}", hint="check the path")]) from None
    except IsADirectoryError:
        raise SpecError([Diagnostic(f"{shown} is a directory, not a spec file")]) from None
    except UnicodeDecodeError as exc:
        raise SpecError([Diagnostic(f"{shown} is not UTF-8 text ({exc.reason})")]) from None
    except OSError as exc:
        raise SpecError([Diagnostic(f"cannot read {shown}: {exc.strerror}")]) from None
    return load_text(text, shown, json_syntax=path.suffix.lower() == ".json")


def load_text(text: str, file: str = "<string>", *, json_syntax: bool = False) -> Document:
    """Parse spec text (YAML, or JSON when ``json_syntax``) into a positioned Document."""
    if json_syntax:
        _check_json_syntax(text, file)
    try:
        node = yaml.compose(text, Loader=_SpecLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else None
        problem = exc.problem or exc.context or "invalid syntax"
        note = None
        if exc.context and exc.context_mark and exc.problem:
            note = f"{exc.context} that starts at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1}"
        hint = None
        if mark and text.splitlines()[mark.line:mark.line + 1] and text.splitlines()[mark.line][:mark.column].endswith("$"):
            hint = 'quote an expression inside {...} or [...]: out_channels: "${channels * 4}"'
        raise SpecError(
            [Diagnostic(f"{'JSON' if json_syntax else 'YAML'} syntax error: {problem}", where, hint=hint, note=note)],
            text,
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError([Diagnostic(f"YAML error: {exc}", Location(file, 1, 1))], text) from None
    document = Document(file, text, None)
    if node is None:
        document.positions[()] = Location(file, 1, 1)
        return document
    builder = _Builder(document)
    document.data = builder.build(node, ())
    if builder.errors:
        raise SpecError(builder.errors, text)
    return document


def _check_json_syntax(text: str, file: str) -> None:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            [Diagnostic(f"JSON syntax error: {exc.msg}", Location(file, exc.lineno, exc.colno))],
            text,
        ) from None


class _Builder:
    """Turns a composed node tree into Python data, recording positions and collecting errors."""

    def __init__(self, document: Document):
        self.document = document
        self.constructor = _SpecLoader("")
        self.errors: list[Diagnostic] = []

    def _where(self, node: yaml.Node) -> Location:
        return Location(self.document.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.document.positions[path] = self._where(node)
        if node.tag not in _PLAIN_TAGS:
            self.errors.append(
                Diagnostic(
                    f"unsupported YAML tag '{node.tag}'",
                    self._where(node),
                    expected="plain YAML values (mappings, lists, strings, numbers, booleans)",
                    hint="spec files never construct Python objects; remove the tag",
                )
            )
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.errors.append(Diagnostic(f"invalid value: {exc}", self._where(node)))
            return None

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        self.constructor.flatten_mapping(node)
        result: dict[Any, Any] = {}
        first_seen: dict[Any, Location] = {}
        for key_node, value_node in node.value:
            key = self.build(key_node, path + ("<key>",))
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                self.errors.append(Diagnostic("mapping keys must be plain values", self._where(key_node)))
                continue
            where = self._where(key_node)
            if key in first_seen:
                first = first_seen[key]
                self.errors.append(
                    Diagnostic(
                        f"duplicate key '{key}'",
                        where,
                        note=f"first defined at line {first.line}, column {first.col}",
                        hint="each key may appear once per mapping; remove or rename one of them",
                    )
                )
                continue
            first_seen[key] = where
            self.document.key_positions[path + (key,)] = where
            result[key] = self.build(value_node, path + (key,))
        self.document.positions.pop(path + ("<key>",), None)
        self.document.positions[path] = self._where(node)
        return result
