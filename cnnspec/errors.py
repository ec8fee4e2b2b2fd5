"""Typed, located errors: the one channel through which cnnspec tells a user what is wrong.

Library code raises these; the CLI renders them as ``path:line:col: error: message`` with the
source line and a caret, then exits 1. Nothing here imports torch.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Sequence


@dataclass(frozen=True)
class Location:
    """A 1-based place in a source file."""

    file: str
    line: int
    col: int


@dataclass
class Diagnostic:
    """One problem: what is wrong, where, what was expected, what was received, what to do."""

    message: str
    location: Location | None = None
    expected: str | None = None
    received: str | None = None
    hint: str | None = None
    note: str | None = None
    severity: Literal["error", "warning"] = "error"

    def render(self, source_lines: Sequence[str] | None = None) -> str:
        """The compiler-style text: header, source line with caret, then the details."""
        where = self.location
        head = f"{where.file}:{where.line}:{where.col}: " if where else ""
        lines = [f"{head}{self.severity}: {self.message}"]
        if where and source_lines and where.line > len(source_lines):
            where = Location(where.file, len(source_lines), len(source_lines[-1]) + 1)
        if where and source_lines and 0 < where.line <= len(source_lines):
            text, caret = _excerpt(source_lines[where.line - 1].rstrip("\n"), where.col - 1)
            gutter = f"{where.line:>5} | "
            lines.append(gutter + text)
            lines.append(" " * (len(gutter) - 2) + "| " + " " * caret + "^")
        for label, value in (
            ("expected", self.expected),
            ("received", self.received),
            ("hint", self.hint),
            ("note", self.note),
        ):
            if value:
                lines.append(f"  {label}: {value}")
        return "\n".join(lines)


#: a source line longer than this is shown as a window around the caret (minified JSON, 1,000 brackets)
MAX_SHOWN_LINE = 120


def _excerpt(text: str, column: int) -> tuple[str, int]:
    """The part of a source line to print and the caret's offset in it: the whole line when it is
    short, else MAX_SHOWN_LINE characters around the column with '...' where text was cut."""
    if len(text) <= MAX_SHOWN_LINE:
        return text, column
    start = max(0, min(column - MAX_SHOWN_LINE // 2, len(text) - MAX_SHOWN_LINE))
    shown = text[start:start + MAX_SHOWN_LINE]
    head = "..." if start > 0 else ""
    tail = "..." if start + MAX_SHOWN_LINE < len(text) else ""
    return head + shown + tail, column - start + len(head)


class CnnspecError(Exception):
    """Base class of every error cnnspec reports to a user (never shown as a traceback)."""


class SpecError(CnnspecError):
    """A spec file is invalid; carries every independent diagnostic found in one pass."""

    def __init__(self, diagnostics: Iterable[Diagnostic], source_text: str | None = None, partial: Any = None):
        self.diagnostics = list(diagnostics)
        self.source_text = source_text
        #: what could still be built despite the errors (a Spec whose failed layers have no config),
        #: so that later stages report their independent problems in the same pass; or None
        self.partial = partial
        super().__init__(self.render())

    def render(self) -> str:
        lines = self.source_text.splitlines() if self.source_text is not None else None
        body = "\n".join(d.render(lines) for d in self.diagnostics)
        count = len(self.diagnostics)
        if count > 1:
            body += f"\n{count} errors"
        return body


class SpecWarning(UserWarning):
    """Something legal but probably unintended in a spec (an unread layer). Emitted with
    ``warnings.warn``; the CLI prints it to stderr like an error, located, and goes on."""

    def __init__(self, diagnostic: Diagnostic, source_text: str | None = None):
        self.diagnostic = diagnostic
        super().__init__(diagnostic.render(source_text.splitlines() if source_text is not None else None))


class LayerError(CnnspecError):
    """Raised by a layer's shape rule; the analyzer adds the location of the offending field."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        expected: str | None = None,
        received: str | None = None,
        hint: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.field = field
        self.expected = expected
        self.received = received
        self.hint = hint


@dataclass
class UsageError(CnnspecError):
    """A command-line or file problem that is not about a spec's content."""

    message: str
    hints: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join([self.message, *(f"  hint: {h}" for h in self.hints)])


def did_you_mean(word: str, choices: Iterable[str], n: int = 1) -> str | None:
    """Suggest the closest known name (up to ``n``, closest first), the way click's NoSuchOption
    does (difflib): "did you mean 'relu'?", "did you mean 'relu', 'relu6' or 'gelu'?"."""
    close = [f"'{name}'" for name in difflib.get_close_matches(str(word), list(choices), n=n, cutoff=0.6)]
    if not close:
        return None
    return f"did you mean {close[0] if len(close) == 1 else ', '.join(close[:-1]) + ' or ' + close[-1]}?"
