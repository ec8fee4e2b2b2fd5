"""The layer catalogue and the JSON Schema, both generated from the registered layer classes, so
documentation, editor completion and validation cannot drift from the code."""

from __future__ import annotations

import json
import typing
from typing import Any

from pydantic_core import PydanticUndefined

from .layers import LAYER_TYPES, Layer

COMMON_FIELDS = ("type", "name", "inputs", "trainable")


def _type_text(annotation: Any) -> str:
    """A short human form of a field's annotation: 'int > 0 | [int, int]'."""
    text = typing.get_origin(annotation)
    if annotation is None or annotation is type(None):
        return "null"
    if text is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if text in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(_type_text(a) for a in typing.get_args(annotation))
    if text is typing.Annotated:
        base, *meta = typing.get_args(annotation)
        bounds = []
        for item in meta:
            for field in ("gt", "ge", "lt", "le"):
                value = getattr(item, field, None)
                if value is None:
                    for sub in getattr(item, "metadata", []) or []:
                        value = getattr(sub, field, value)
                if value is not None:
                    bounds.append(f"{ {'gt': '>', 'ge': '>=', 'lt': '<', 'le': '<='}[field]} {value}")
        return _type_text(base) + (" " + " ".join(bounds) if bounds else "")
    if text is tuple:
        return "[" + ", ".join(_type_text(a) for a in typing.get_args(annotation)) + "]"
    if text is list:
        return "[" + _type_text(typing.get_args(annotation)[0]) + ", ...]"
    return getattr(annotation, "__name__", str(annotation))


def value_text(value: Any) -> str:
    """A default as the catalogue's tables show it, quoted as the types are: 'zeros', true, [1, 1]."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(item) for item in value) + "]"
    return str(value)


def _default(cls: type[Layer], name: str) -> tuple[bool, Any, str]:
    """(required, default as a JSON value, default as the tables show it)."""
    info = cls.model_fields[name]
    if info.is_required():
        return True, None, "required"
    default = info.default
    if default is PydanticUndefined or default is None:
        return False, None, cls.none_default.get(name, "none")
    value = json.loads(json.dumps(list(default) if isinstance(default, tuple) else default))
    return False, value, value_text(default)


def summary_of(cls: type) -> str:
    """The docstring's first paragraph as one line (a summary may wrap in the source)."""
    return " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())


def catalog() -> list[dict[str, Any]]:
    """Every layer type with its summary, input needs and fields (name, type, default, meaning)."""
    entries = []
    for type_name, cls in LAYER_TYPES.items():
        fields = []
        for name, info in cls.model_fields.items():
            if name in COMMON_FIELDS:
                continue
            annotation = info.annotation
            if info.metadata:
                annotation = typing.Annotated[(annotation, *info.metadata)]
            required, default, shown = _default(cls, name)
            fields.append({
                "name": name,
                "type": _type_text(annotation),
                "required": required,
                "default": default,  # a JSON value: 1, 'zeros', true, [1, 1]; null when required or computed
                "default_text": shown,  # as the table and the Markdown show it: 1, 'zeros', inferred
                "description": info.description or "",
            })
        arity = "2 or more" if cls.max_inputs is None else str(cls.max_inputs)
        entries.append({
            "type": type_name,
            "summary": summary_of(cls),
            "input": {"feature_map": "[C, H, W]", "vector": "[F]", None: "any"}[cls.needs],
            "inputs": arity,
            "fields": fields,
        })
    return entries


def render_catalog_markdown() -> str:
    """The layer reference as Markdown (embedded in README.md; a test keeps them equal)."""
    lines = ["Every layer also takes `name`, `inputs` and `trainable` (see above).", ""]
    for entry in catalog():
        lines.append(f"#### `{entry['type']}`")
        lines.append("")
        lines.append(f"{entry['summary']} Input: {entry['input']}; inputs: {entry['inputs']}.")
        lines.append("")
        if entry["fields"]:
            lines.append("| field | type | default | meaning |")
            lines.append("|---|---|---|---|")
            for field in entry["fields"]:
                description = field["description"].replace("|", "\\|")
                kind = field["type"].replace("|", "\\|")
                lines.append(f"| `{field['name']}` | {kind} | {field['default_text']} | {description} |")
            lines.append("")
    return "\n".join(lines)


def json_schema() -> dict[str, Any]:
    """Draft 2020-12 JSON Schema of a spec file, from the same classes that validate it."""
    from typing import Annotated, Union

    from pydantic import Field, TypeAdapter, create_model

    from .spec.model import BlockUse, SpecHeader

    layer_union = Annotated[Union[tuple(LAYER_TYPES.values())], Field(discriminator="type")]
    entry = Union[layer_union, BlockUse]
    model = create_model(
        "CnnspecSpec", __base__=SpecHeader,
        layers=(list[entry], Field(min_length=1, description="Layers in execution order.")),
    )
    for cls in LAYER_TYPES.values():
        cls.model_rebuild()
    schema = TypeAdapter(model).json_schema(by_alias=True)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://cnnspec.dev/schema/spec.json",
        **schema,
    }
    schema["title"] = "cnnspec model spec"
    schema["properties"]["layers"]["items"] = _layer_entry(schema["properties"]["layers"]["items"])
    return schema


def _layer_entry(union: dict[str, Any]) -> dict[str, Any]:
    """One layer list entry, discriminated on ``type`` the way the loader reads it: a mapping with
    ``block`` and no ``type`` is a block use, anything else is the layer class its ``type`` names.

    pydantic writes the layer union as ``oneOf`` plus OpenAPI's ``discriminator``, which JSON Schema
    validators ignore: a typo'd conv2d field then fails every branch and an editor can only say
    "not valid under any of the given schemas". With ``if``/``then`` on ``type`` it checks the one
    class meant and says "Additional properties are not allowed ('kernal_size' was unexpected)"."""
    layers, block_use = union["anyOf"]
    mapping = layers["discriminator"]["mapping"]
    return {
        "type": "object",
        "if": {"required": ["block"], "not": {"required": ["type"]}},
        "then": block_use,
        "else": {
            "required": ["type"],
            "properties": {"type": {"enum": list(mapping)}},
            "allOf": [{"if": {"required": ["type"], "properties": {"type": {"const": name}}}, "then": {"$ref": ref}}
                      for name, ref in mapping.items()],
        },
        "discriminator": {"propertyName": "type", "mapping": mapping},  # for OpenAPI tools
    }
