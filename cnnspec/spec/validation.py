"""Turning pydantic's validation errors into located, human diagnostics.

pydantic reports every independent error in one pass; we keep that, collapse the per-branch errors
of a union (``kernel_size: int | [h, w]``) into one message about the branch the user was aiming at,
and point each message at the exact key or value in the source file.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from ..errors import Diagnostic, Location, did_you_mean

Locate = Callable[[tuple[Any, ...], bool], Location | None]


def _branch_matches(tag: Any, value: Any) -> bool:
    tag = str(tag)
    if isinstance(value, bool):
        return tag.startswith("bool")
    if isinstance(value, int):
        return tag.startswith(("int", "constrained-int", "float", "constrained-float"))
    if isinstance(value, float):
        return tag.startswith(("float", "int", "constrained-float"))
    if isinstance(value, (list, tuple)):
        return tag.startswith(("tuple", "list"))
    if isinstance(value, str):
        return tag.startswith(("literal", "str"))
    if value is None:
        return tag.startswith("none")
    return False


def _is_branch_tag(part: Any) -> bool:
    text = str(part)
    return isinstance(part, str) and (
        "[" in text or text in ("int", "float", "str", "bool", "none", "constrained-int", "constrained-float", "tuple")
    )


def _value_at(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _message(raw: str, field: str) -> str:
    text = raw[0].lower() + raw[1:] if raw else raw
    subject, should, rest = text.partition(" should ")
    if should and " " not in subject:
        return f"{field} must {rest}"
    return f"{field}: {text}"


def diagnose(
    model: type[BaseModel],
    data: dict[str, Any],
    locate: Locate,
    *,
    what: str,
    note: str | None = None,
) -> tuple[BaseModel | None, list[Diagnostic]]:
    """Validate ``data`` against ``model``; return the instance or one diagnostic per bad field.

    ``locate(path, key)`` maps a path inside ``data`` to a source location; ``what`` names the
    object for messages (``"conv2d layer 'conv1'"``).
    """
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    by_field: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for error in errors:
        loc = tuple(part for part in error["loc"] if not _is_branch_tag(part))
        by_field.setdefault(loc, []).append(error)
    diagnostics = [_misspelt(model, data, loc, typo, locate, what, note)
                   for loc, typo in _misspellings(model, by_field)]
    for loc, group in by_field.items():
        diagnostics.append(_diagnose_field(model, data, loc, group, locate, what, note))
    return None, diagnostics


def _misspellings(model: type[BaseModel], by_field: dict[tuple[Any, ...], list[dict[str, Any]]]
                  ) -> list[tuple[tuple[Any, ...], str]]:
    """Unknown fields that are near misses of a missing required field (``out_channel`` for
    ``out_channels``): one error each instead of "unknown field" plus "missing field". The pairs are
    removed from ``by_field``."""
    missing = {loc[-1]: loc for loc, group in by_field.items()
               if len(loc) == 1 and group[0]["type"] == "missing"}
    pairs = []
    for loc, group in list(by_field.items()):
        if len(loc) != 1 or group[0]["type"] != "extra_forbidden":
            continue
        close = difflib.get_close_matches(str(loc[0]), list(missing), n=1, cutoff=0.6)
        if close:
            pairs.append((loc, close[0]))
            del by_field[loc], by_field[missing.pop(close[0])]
    return pairs


def _misspelt(model: type[BaseModel], data: dict[str, Any], loc: tuple[Any, ...], intended: str,
              locate: Locate, what: str, note: str | None) -> Diagnostic:
    info = model.model_fields[intended]
    return Diagnostic(
        f"unknown field '{loc[0]}' for {what}; did you mean '{intended}'?", locate(loc, True),
        expected=f"{intended}: {info.description}" if info.description else None,
        received=f"{loc[0]}={_value_at(data, loc)!r}", note=note,
    )


def _diagnose_field(
    model: type[BaseModel], data: dict[str, Any], loc: tuple[Any, ...], group: list[dict[str, Any]],
    locate: Locate, what: str, note: str | None,
) -> Diagnostic:
    field = str(loc[0]) if loc else what
    info = model.model_fields.get(field) if loc else None
    expected = info.description if info is not None else None
    first = group[0]
    if first["type"] == "missing":
        return Diagnostic(
            f"{what} is missing the required field '{field}'", locate(loc[:-1], False),
            expected=f"{field}: {expected}" if expected else None, note=note,
        )
    if first["type"] == "extra_forbidden":
        known = [name for name in model.model_fields if name != "type"]
        suggestion = did_you_mean(field, known)
        return Diagnostic(
            f"unknown field '{field}' for {what}", locate(loc, True),
            expected="one of " + ", ".join(known), received=f"{field}={_value_at(data, loc)!r}",
            hint=suggestion, note=note,
        )
    value = _value_at(data, loc)
    chosen = [e for e in group if any(_branch_matches(p, value) for p in e["loc"] if _is_branch_tag(p))]
    error = (chosen or group)[0]
    if len(group) > 1 and not chosen:
        message = f"{field} has the wrong type ({type(value).__name__})"
    else:
        message = _message(error["msg"], ".".join(str(p) for p in loc) or field)
    hint = None
    if error["type"] == "int_type" and isinstance(value, float):
        hint = "write an integer (in an expression '/' always gives a float: use '//', int() or round())"
    return Diagnostic(
        message if what == "the spec" else f"{message} ({what})", locate(loc, False), expected=expected,
        received=f"{'.'.join(str(p) for p in loc)}={value!r}", hint=hint, note=note,
    )
