"""Loading YAML and JSON spec files into plain Python data while remembering where each value was.

JSON and YAML are the same language here: both are composed by PyYAML's safe loader, which yields
nodes with positions. On top of the safe loader we
- refuse every tag that is not a plain YAML type (``!!python/object`` and friends),
- report duplicate keys (PyYAML silently keeps the last one),
- read ``1e-3`` as a float, as YAML 1.2 and JSON do (PyYAML follows YAML 1.1 and reads a string),
- bound what a hostile file can cost (limits.py): its size in bytes, its nesting depth, and the
  number of values it expands to once aliases and merge keys are followed (an "alias bomb" of a few
  hundred bytes stands for 10^9 values); an alias inside its own anchor is refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import Diagnostic, Location, SpecError
from .limits import SPEC_BYTES, SPEC_DEPTH, SPEC_VALUES, setting_hint

Path_ = tuple[Any, ...]
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _TooDeep(Exception):
    """Composing or building went deeper than the nesting limit at ``mark``."""

    def __init__(self, mark: Any):
        super().__init__(mark)
        self.mark = mark


class _TooLarge(_TooDeep):
    """Building expanded to more values than the limit; ``mark`` is where the budget ran out."""


def _slot(parent: Any, index: Any) -> tuple[int, Any]:
    """A child's place in its parent node: a list index, or the key node of a mapping value."""
    return (id(parent), id(index) if isinstance(index, yaml.Node) else index)


class _SpecLoader(yaml.SafeLoader):
    """The safe loader with YAML 1.2 float syntax and a bound on nesting (PyYAML's composer
    recurses once per level, so 1,000 brackets would end in a RecursionError)."""

    def __init__(self, stream: str, max_depth: int = 0):
        super().__init__(stream)
        self.max_depth = max_depth
        self.depth = 0
        #: where each alias was written: (id(parent node), index or id(key node)) -> mark
        self.alias_marks: dict[tuple[int, Any], Any] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.max_depth and self.depth > self.max_depth:
                raise _TooDeep(self.peek_event().start_mark)
            if parent is not None and self.check_event(yaml.AliasEvent):
                self.alias_marks[_slot(parent, index)] = self.peek_event().start_mark
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


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
        if path.is_file():
            _check_size(path.stat().st_size, shown)
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
    _check_size(len(text.encode("utf-8", "surrogatepass")), file)
    if json_syntax:
        _check_json_syntax(text, file)
    depth = SPEC_DEPTH.value()
    try:
        loader = _SpecLoader(text, depth)
    except yaml.reader.ReaderError as exc:  # a character YAML forbids (NUL, most control characters)
        raise SpecError([_bad_character(file, text, exc)], text) from None
    try:
        node = loader.get_single_node()
    except _TooDeep as exc:
        raise SpecError([_too_deep(file, exc.mark, depth)], text) from None
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
    finally:
        loader.dispose()
    document = Document(file, text, None)
    if node is None:
        document.positions[()] = Location(file, 1, 1)
        return document
    builder = _Builder(document, SPEC_VALUES.value(), depth, loader.alias_marks)
    try:
        document.data = builder.build(node, ())
    except _TooLarge as exc:
        raise SpecError([_too_large(file, exc.mark, builder.max_values)], text) from None
    except _TooDeep as exc:
        raise SpecError([_too_deep(file, exc.mark, depth)], text) from None
    if builder.errors:
        raise SpecError(builder.errors, text)
    return document


def _check_size(size: int, file: str) -> None:
    limit = SPEC_BYTES.value()
    if size > limit:
        raise SpecError([Diagnostic(
            f"{file} is {size:,} bytes; spec files are limited to {limit:,} bytes", Location(file, 1, 1),
            hint=setting_hint(SPEC_BYTES), note="a spec describes layers, not weights or data; "
            "repeated layers belong in a block used with 'repeat'")])


def _bad_character(file: str, text: str, error: yaml.reader.ReaderError) -> Diagnostic:
    before = text[:error.position]
    where = Location(file, before.count("\n") + 1, error.position - (before.rfind("\n") + 1) + 1)
    return Diagnostic(f"the file holds the character U+{error.character:04X}, which YAML does not allow", where,
                      hint="remove it; spec files are plain UTF-8 text")


def _mark_location(file: str, mark: Any) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


def _too_deep(file: str, mark: Any, depth: int) -> Diagnostic:
    return Diagnostic(f"mappings and lists nest deeper than {depth} levels here", _mark_location(file, mark),
                      hint=setting_hint(SPEC_DEPTH))


def _too_large(file: str, mark: Any, limit: int) -> Diagnostic:
    return Diagnostic(
        f"the document expands to more than {limit:,} values once its aliases are followed",
        _mark_location(file, mark), hint=setting_hint(SPEC_VALUES),
        note="an alias (*name) repeats everything its anchor (&name) holds, so a few lines can "
        "stand for billions of values")


def _check_json_syntax(text: str, file: str) -> None:
    try:
        json.loads(text)
    except RecursionError:
        return  # too deep for the json module; the YAML composer reports it with its place
    except json.JSONDecodeError as exc:
        raise SpecError(
            [Diagnostic(f"JSON syntax error: {exc.msg}", Location(file, exc.lineno, exc.colno))],
            text,
        ) from None


class _Builder:
    """Turns a composed node tree into Python data, recording positions and collecting errors.

    Aliases make the tree a graph: a node may be reached many times (each reach is built and
    counted against ``max_values``) and may even contain itself (refused)."""

    def __init__(self, document: Document, max_values: int = 0, max_depth: int = 0,
                 alias_marks: dict[tuple[int, Any], Any] | None = None):
        self.document = document
        self.alias_marks = alias_marks or {}
        self.aliases_followed: list[Any] = []  # marks of the aliases on the current path
        self.constructor = _SpecLoader("")
        self.errors: list[Diagnostic] = []
        self.max_values = max_values
        self.max_depth = max_depth
        self.values = 0
        self.open: set[int] = set()  # collections being built: the current path through the graph

    def _where(self, node: yaml.Node) -> Location:
        return Location(self.document.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def _spend(self, node: yaml.Node, count: int = 1) -> None:
        self.values += count
        if self.max_values and self.values > self.max_values:
            raise _TooLarge(self.aliases_followed[0] if self.aliases_followed else node.start_mark)

    def _child(self, parent: yaml.Node, index: Any, node: yaml.Node, path: Path_) -> Any:
        """Build a child node, remembering when it was reached through an alias."""
        mark = self.alias_marks.get(_slot(parent, index))
        if mark is None:
            return self.build(node, path)
        self.aliases_followed.append(mark)
        try:
            return self.build(node, path)
        finally:
            self.aliases_followed.pop()

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self._spend(node)
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
        if not isinstance(node, yaml.CollectionNode):
            try:
                return self.constructor.construct_object(node, deep=True)
            except (yaml.YAMLError, ValueError, KeyError, TypeError, AttributeError) as exc:
                # PyYAML's own text names the stream ("<unicode string>") and repeats the line, and an
                # explicit tag on a value it does not fit (!!int "x") ends in a bare ValueError/KeyError.
                tag = "!!" + node.tag.rsplit(":", 1)[-1]
                problem = exc.problem if isinstance(exc, yaml.MarkedYAMLError) and exc.problem else None
                self.errors.append(Diagnostic(
                    f"invalid {tag} value: {problem}" if problem else f"invalid {tag} value {node.value!r}",
                    self._where(node), hint=f"remove the tag {tag}; spec files need no explicit YAML tags"))
                return None
        if not self._enter(node):
            return None
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            return [self._child(node, i, item, path + (i,)) for i, item in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def _enter(self, node: yaml.Node) -> bool:
        """Start building a collection; False (with an error) when it is already being built."""
        if id(node) in self.open:
            self.errors.append(Diagnostic(
                "an alias refers to the value that contains it (a recursive structure)", self._where(node),
                hint="an alias (*name) may only repeat a value defined before it, outside it"))
            return False
        if self.max_depth and len(self.open) >= self.max_depth:
            raise _TooDeep(node.start_mark)
        self.open.add(id(node))
        return True

    def _pairs(self, node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node, yaml.Node, bool]]:
        """The mapping's own (key, value) pairs, then those its ``<<`` merge keys bring in, flagged
        True. As in YAML's merge-key rule, own keys win, and among merged mappings the first wins."""
        own: list[tuple[yaml.Node, yaml.Node, yaml.Node, bool]] = []
        merged: list[tuple[yaml.Node, yaml.Node, yaml.Node, bool]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(self._merged(value_node))
            else:
                own.append((node, key_node, value_node, False))
        return own + merged

    def _merged(self, value: yaml.Node) -> list[tuple[yaml.Node, yaml.Node, yaml.Node, bool]]:
        sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
        wrong = [source for source in sources if not isinstance(source, yaml.MappingNode)]
        if wrong:
            shown = wrong[0].value if isinstance(wrong[0], yaml.ScalarNode) else "a list"
            self.errors.append(Diagnostic(
                "a merge key '<<' takes a mapping or a list of mappings", self._where(wrong[0]),
                expected="<<: *anchor_of_a_mapping, or <<: [*first, *second]", received=f"<<: {shown}"))
            return []
        pairs = []
        for source in sources:
            self._spend(source, len(source.value))
            if not self._enter(source):
                continue
            try:
                pairs.extend((parent, key, item, True) for parent, key, item, _ in self._pairs(source))
            finally:
                self.open.discard(id(source))
        return pairs

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        first_seen: dict[Any, Location] = {}
        for parent, key_node, value_node, merged in self._pairs(node):
            key = self.build(key_node, path + ("<key>",))
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                self.errors.append(Diagnostic("mapping keys must be plain values", self._where(key_node)))
                continue
            where = self._where(key_node)
            if key in first_seen:
                if merged:
                    continue  # a merged key never overrides one given before it
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
            result[key] = self._child(parent, key_node, value_node, path + (key,))
        self.document.positions.pop(path + ("<key>",), None)
        self.document.positions[path] = self._where(node)
        return result
