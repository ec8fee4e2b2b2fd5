"""Writing an imported model as a readable spec: one flow mapping per layer, blocks first.

The text is YAML that cnnspec's own loader reads back (tests parse every imported spec): plain
scalars where YAML allows them, quoted strings otherwise, ``$arg`` references unquoted.
"""

from __future__ import annotations

import json
import re
from typing import Any

_PLAIN = re.compile(r"^[A-Za-z_$][A-Za-z0-9_.$]*$")
_RESERVED = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def scalar(value: Any) -> str:
    """A value in YAML flow style: numbers and booleans as YAML 1.2 writes them, lists in brackets."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        text = repr(value)
        return text if ("e" in text or "." in text or "inf" in text or "nan" in text) else text + ".0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return mapping(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED:
        return text
    return json.dumps(text)


def mapping(fields: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{key}: {scalar(value)}" for key, value in fields.items()) + "}"


def layer_line(layer: dict[str, Any]) -> str:
    """``{type: conv2d, name: conv1, ...}`` with type, name and inputs first."""
    order = ["type", "block", "name", "inputs", "repeat", "when"]
    keys = [k for k in order if k in layer] + [k for k in layer if k not in order]
    return mapping({k: layer[k] for k in keys})


def render(name: str, description: str, header: list[str], input_shape: tuple[int, int, int],
           blocks: dict[str, dict[str, Any]], layers: list[dict[str, Any]]) -> str:
    lines = [f"# {line}" if line else "#" for line in header]
    lines += [f"name: {name}", f"description: {scalar(description)}",
              f"input: {{channels: {input_shape[0]}, height: {input_shape[1]}, width: {input_shape[2]}}}"]
    if blocks:
        lines.append("blocks:")
        for block_name, block in blocks.items():
            lines.append(f"  {block_name}:")
            if block["args"]:
                lines.append(f"    args: {mapping(block['args'])}")
            lines.append("    layers:")
            lines += [f"      - {layer_line(layer)}" for layer in block["layers"]]
    lines.append("layers:")
    lines += [f"  - {layer_line(layer)}" for layer in layers]
    return "\n".join(lines) + "\n"
