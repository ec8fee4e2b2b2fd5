"""Triton's ``config.pbtxt`` (protobuf text format of ``inference.ModelConfig``): the one codec.

``render_model_config`` writes it (``cnnspec export``, through ``classifier_config``);
``parse_model_config`` reads it (the inference service, and export when it adds a version to a
model whose interface must not change).

Why a small codec instead of ``tritonclient.grpc.model_config_pb2`` + ``google.protobuf.text_format``:
the schema ships only inside ``tritonclient[grpc]``, which pulls in grpcio (tens of MB). The
service's gRPC front end carries it, but ``cnnspec predict`` and ``cnnspec export`` use this room
too and must not need it, and ``text_format`` reports a misspelt field without a suggestion. The
service reads a handful of fields, so this module implements the text-format grammar (fields, ``{}``/``<>``
messages, ``[...]`` lists, strings, numbers, enum identifiers, ``#`` comments) and checks every
field against the part of Triton's schema it mirrors: an unknown field name is an error with a
suggestion (as ``text_format.Parse`` would report), so a misspelt ``max_batch_sise`` cannot
silently turn batching off. Blocks the service does not interpret (``optimization``,
``sequence_batching``, ...) are accepted as Triton spells them and passed through to the JSON view
untyped; the renderer writes the typed fields only. The tests check both directions against
Triton's real schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..errors import CnnspecError, did_you_mean


class ConfigError(CnnspecError):
    """A config.pbtxt that is not valid Triton model configuration text."""


# Field kinds of the mirrored schema. A tuple (kind, repeated) per field; message kinds name a table.
STRING, INT, BOOL, ENUM, OPAQUE = "string", "int", "bool", "enum", "opaque"

DATA_TYPES = ("TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32", "TYPE_UINT64", "TYPE_INT8",
              "TYPE_INT16", "TYPE_INT32", "TYPE_INT64", "TYPE_FP16", "TYPE_FP32", "TYPE_FP64",
              "TYPE_STRING", "TYPE_BF16")
_KIND_WORDS = {INT: "an integer", BOOL: "true or false", ENUM: "an enum value", STRING: "a quoted string"}
ENUMS = {
    "data_type": DATA_TYPES,
    "format": ("FORMAT_NONE", "FORMAT_NHWC", "FORMAT_NCHW"),
    "kind": ("KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL"),
}

SCHEMA: dict[str, dict[str, tuple[str, bool]]] = {
    "ModelConfig": {
        "name": (STRING, False), "platform": (STRING, False), "backend": (STRING, False),
        "runtime": (STRING, False), "version_policy": ("ModelVersionPolicy", False),
        "max_batch_size": (INT, False), "input": ("ModelInput", True), "output": ("ModelOutput", True),
        "batch_input": (OPAQUE, True), "batch_output": (OPAQUE, True), "optimization": (OPAQUE, False),
        "dynamic_batching": ("ModelDynamicBatching", False), "sequence_batching": (OPAQUE, False),
        "ensemble_scheduling": (OPAQUE, False), "instance_group": ("ModelInstanceGroup", True),
        "default_model_filename": (STRING, False), "cc_model_filenames": (OPAQUE, True),
        "metric_tags": (OPAQUE, True), "parameters": (OPAQUE, True), "model_warmup": (OPAQUE, True),
        "model_operations": (OPAQUE, False), "model_transaction_policy": (OPAQUE, False),
        "model_repository_agents": (OPAQUE, False), "response_cache": (OPAQUE, False),
        "model_metrics": (OPAQUE, False),
    },
    "ModelInput": {
        "name": (STRING, False), "data_type": (ENUM, False), "format": (ENUM, False),
        "dims": (INT, True), "reshape": (OPAQUE, False), "is_shape_tensor": (BOOL, False),
        "allow_ragged_batch": (BOOL, False), "optional": (BOOL, False),
        "is_non_linear_format_io": (BOOL, False),
    },
    "ModelOutput": {
        "name": (STRING, False), "data_type": (ENUM, False), "dims": (INT, True),
        "reshape": (OPAQUE, False), "label_filename": (STRING, False),
        "is_shape_tensor": (BOOL, False), "is_non_linear_format_io": (BOOL, False),
    },
    "ModelDynamicBatching": {
        "preferred_batch_size": (INT, True), "max_queue_delay_microseconds": (INT, False),
        "preserve_ordering": (BOOL, False), "priority_levels": (INT, False),
        "default_priority_level": (INT, False), "default_queue_policy": (OPAQUE, False),
        "priority_queue_policy": (OPAQUE, True),
    },
    "ModelInstanceGroup": {
        "name": (STRING, False), "kind": (ENUM, False), "count": (INT, False),
        "rate_limiter": (OPAQUE, False), "gpus": (INT, True), "secondary_devices": (OPAQUE, True),
        "profile": (STRING, True), "passive": (BOOL, False), "host_policy": (STRING, False),
    },
    "ModelVersionPolicy": {"latest": ("Latest", False), "all": ("All", False), "specific": ("Specific", False)},
    "Latest": {"num_versions": (INT, False)},
    "All": {},
    "Specific": {"versions": (INT, True)},
}

_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n]+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)[fF]?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}<>\[\]:,;])
""", re.VERBOSE)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    line: int
    col: int


def _tokenize(text: str, file: str) -> list[_Token]:
    """Split text-format source into tokens, dropping whitespace and ``#`` comments."""
    tokens, pos, line, line_start = [], 0, 1, 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ConfigError(f"{file}:{line}:{pos - line_start + 1}: error: unexpected character {text[pos]!r}")
        if match.lastgroup != "space":
            tokens.append(_Token(match.lastgroup, match.group(), line, pos - line_start + 1))
        newlines = match.group().count("\n")
        if newlines:
            line += newlines
            line_start = match.start() + match.group().rfind("\n") + 1
        pos = match.end()
    return tokens


class _Parser:
    """Recursive descent over the token list; produces ``{field: [values...]}`` dictionaries."""

    def __init__(self, text: str, file: str):
        self.file = file
        self.tokens = _tokenize(text, file)
        self.pos = 0

    def error(self, message: str, token: _Token | None = None) -> ConfigError:
        token = token or (self.tokens[self.pos] if self.pos < len(self.tokens) else None)
        where = f"{self.file}:{token.line}:{token.col}" if token else f"{self.file}: end of file"
        return ConfigError(f"{where}: error: {message}")

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, text: str | None = None) -> _Token:
        token = self.peek()
        if token is None or (text is not None and token.text != text):
            raise self.error(f"expected {text!r}" if text else "unexpected end of file")
        self.pos += 1
        return token

    def message(self, type_name: str, closer: str | None) -> dict[str, list[Any]]:
        fields: dict[str, list[Any]] = {}
        schema = SCHEMA.get(type_name)
        while (token := self.peek()) is not None and token.text != closer:
            if token.kind != "ident":
                raise self.error(f"expected a field name, found {token.text!r}")
            self.pos += 1
            kind, repeated = self._field_kind(schema, type_name, token)
            values = fields.setdefault(token.text, [])
            if values and not repeated:
                raise self.error(f"non-repeated field '{token.text}' is given twice", token)
            self._field_value(token.text, kind, values)
            if (sep := self.peek()) is not None and sep.text in ",;":
                self.pos += 1
        if closer is not None:
            self.take(closer)
        return fields

    def _field_kind(self, schema: dict | None, type_name: str, token: _Token) -> tuple[str, bool]:
        if schema is None:  # inside an opaque block: any field, any number of times
            return OPAQUE, True
        if token.text not in schema:
            hint = did_you_mean(token.text, schema)
            raise self.error(f'message type "inference.{type_name}" has no field named "{token.text}"'
                             + (f"; {hint}" if hint else ""), token)
        return schema[token.text]

    def _field_value(self, name: str, kind: str, values: list[Any]) -> None:
        is_message = kind not in (STRING, INT, BOOL, ENUM)
        if self.peek() is not None and self.peek().text == ":":
            self.pos += 1
        elif not is_message:
            raise self.error(f"expected ':' after field '{name}'")
        if self.peek() is not None and self.peek().text == "[":
            self.pos += 1
            while self.peek() is not None and self.peek().text != "]":
                values.append(self._value(name, kind, is_message))
                if self.peek() is not None and self.peek().text == ",":
                    self.pos += 1
            self.take("]")
        else:
            values.append(self._value(name, kind, is_message))

    def _value(self, name: str, kind: str, is_message: bool) -> Any:
        token = self.take()
        if token.text in "{<":
            if not is_message and kind != OPAQUE:
                raise self.error(f"field '{name}' takes {_KIND_WORDS[kind]}, not a message", token)
            return self.message(kind, "}" if token.text == "{" else ">")
        if is_message and kind != OPAQUE:
            raise self.error(f"field '{name}' takes a message in braces, found {token.text!r}", token)
        return self._scalar(name, kind, token)

    def _scalar(self, name: str, kind: str, token: _Token) -> Any:
        if token.kind == "string":
            text = _unquote(token.text)
            while (nxt := self.peek()) is not None and nxt.kind == "string":  # adjacent strings concatenate
                text += _unquote(self.take().text)
            if kind not in (STRING, OPAQUE):
                raise self.error(f"field '{name}' takes {_KIND_WORDS[kind]}, found a string", token)
            return text
        if kind == STRING:
            raise self.error(f"field '{name}' takes a quoted string, found {token.text!r}", token)
        if kind == INT:
            if token.kind != "number" or not re.fullmatch(r"[-+]?(0[xX][0-9a-fA-F]+|\d+)", token.text):
                raise self.error(f"field '{name}' takes an integer, found {token.text!r}", token)
            return int(token.text, 0) if token.text.lower().startswith(("0x", "-0x", "+0x")) else int(token.text)
        if kind == BOOL:
            if token.text not in ("true", "false", "True", "False", "1", "0", "t", "f"):
                raise self.error(f"field '{name}' takes true or false, found {token.text!r}", token)
            return token.text in ("true", "True", "1", "t")
        if kind == ENUM:
            allowed = ENUMS[name]
            if token.text not in allowed:
                hint = did_you_mean(token.text, allowed)
                raise self.error(f"unknown value {token.text!r} for enum field '{name}'"
                                 + (f"; {hint}" if hint else f" (one of {', '.join(allowed)})"), token)
            return token.text
        return _opaque_scalar(token)


_ESCAPE = re.compile(r"""\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))""", re.S)
_SIMPLE_ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "a": b"\a", "b": b"\b", "f": b"\f", "v": b"\v"}


def _unquote(text: str) -> str:
    """A string literal's value. As in protobuf, escapes stand for bytes (``\\ooo``, ``\\xhh``) or
    code points (``\\uXXXX``) and the bytes are UTF-8, so what ``_quote`` writes reads back unchanged."""
    body = text[1:-1]
    if "\\" not in body:
        return body

    def byte_string(match: re.Match) -> bytes:
        octal, hexa, short, long, other = match.groups()
        if octal or hexa:
            return bytes([int(octal, 8) & 0xFF if octal else int(hexa, 16)])
        if short or long:
            return chr(int(short or long, 16)).encode("utf-8", "surrogatepass")
        return _SIMPLE_ESCAPES.get(other, other.encode("utf-8"))

    parts, position = [], 0
    for match in _ESCAPE.finditer(body):
        parts += [body[position:match.start()].encode("utf-8"), byte_string(match)]
        position = match.end()
    parts.append(body[position:].encode("utf-8"))
    return b"".join(parts).decode("utf-8", "replace")


def _opaque_scalar(token: _Token) -> Any:
    if token.kind == "number":
        number = token.text.rstrip("fF") if not token.text.lower().startswith(("0x", "-0x")) else token.text
        try:
            return int(number, 0)
        except ValueError:
            return float(number)
    if token.text in ("true", "True"):
        return True
    if token.text in ("false", "False"):
        return False
    return token.text  # an enum identifier


@dataclass(frozen=True)
class TensorConfig:
    """One input or output of the model as config.pbtxt declares it (dims exclude the batch dim)."""

    name: str
    data_type: str
    dims: tuple[int, ...]
    label_filename: str | None = None

    @property
    def datatype(self) -> str:
        """The V2 protocol's name of the type: TYPE_FP32 -> FP32, TYPE_STRING -> BYTES."""
        return "BYTES" if self.data_type == "TYPE_STRING" else self.data_type.removeprefix("TYPE_")


@dataclass(frozen=True)
class ModelConfig:
    """The fields of ``inference.ModelConfig`` the service acts on, plus its JSON view."""

    name: str
    platform: str
    max_batch_size: int
    inputs: tuple[TensorConfig, ...]
    outputs: tuple[TensorConfig, ...]
    max_queue_delay_us: int | None
    instance_count: int
    instance_kind: str
    version_policy: tuple[str, tuple[int, ...]]  # ("latest", (n,)) | ("all", ()) | ("specific", versions)
    default_model_filename: str = "model.onnx"
    json: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # parsed text only


def parse_model_config(text: str, file: str = "config.pbtxt") -> ModelConfig:
    """Parse and check config.pbtxt text; raises ConfigError naming the line, column and problem."""
    parser = _Parser(text, file)
    fields = parser.message("ModelConfig", None)
    data = _to_json("ModelConfig", fields)
    return _model_config(data, file)


def _to_json(type_name: str, fields: dict[str, list[Any]]) -> dict[str, Any]:
    """Protobuf's JSON mapping (snake_case names, enums as names, int64 as numbers, as Triton serves it)."""
    schema = SCHEMA.get(type_name, {})
    result: dict[str, Any] = {}
    for name, values in fields.items():
        kind, repeated = schema.get(name, (OPAQUE, True))
        converted = [_to_json(kind, v) if isinstance(v, dict) and kind in SCHEMA else _opaque_json(v)
                     for v in values]
        if type_name == "ModelConfig" and name == "parameters":
            result[name] = {p.get("key"): p.get("value", {}) for p in converted}
        elif repeated:
            result[name] = converted
        else:
            result[name] = converted[0]
    return result


def _opaque_json(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    return {name: values[0] if len(values) == 1 else values for name, values in
            ((n, [_opaque_json(v) for v in vs]) for n, vs in value.items())}


def _model_config(data: dict[str, Any], file: str) -> ModelConfig:
    def tensors(key: str) -> tuple[TensorConfig, ...]:
        result = []
        for item in data.get(key, []):
            if not item.get("name"):
                raise ConfigError(f"{file}: error: every {key} needs a name")
            result.append(TensorConfig(item["name"], item.get("data_type", "TYPE_INVALID"),
                                       tuple(item.get("dims", [])), item.get("label_filename")))
        return tuple(result)

    max_batch_size = data.get("max_batch_size", 0)
    if max_batch_size < 0:
        raise ConfigError(f"{file}: error: max_batch_size must be >= 0, got {max_batch_size}")
    groups = data.get("instance_group", [])
    count = sum(g.get("count", 1) for g in groups) if groups else 1
    batching = data.get("dynamic_batching")
    return ModelConfig(
        name=data.get("name", ""), platform=data.get("platform", data.get("backend", "")),
        max_batch_size=max_batch_size, inputs=tensors("input"), outputs=tensors("output"),
        max_queue_delay_us=None if batching is None else batching.get("max_queue_delay_microseconds", 0),
        instance_count=max(1, count), instance_kind=groups[0].get("kind", "KIND_AUTO") if groups else "KIND_AUTO",
        version_policy=_version_policy(data.get("version_policy"), file),
        default_model_filename=data.get("default_model_filename") or "model.onnx", json=data)


def _version_policy(policy: dict[str, Any] | None, file: str) -> tuple[str, tuple[int, ...]]:
    """Triton's default is the latest version only."""
    if not policy:
        return ("latest", (1,))
    if len(policy) != 1:
        raise ConfigError(f"{file}: error: version_policy takes one of latest, all, specific")
    (kind, body), = policy.items()
    if kind == "latest":
        return ("latest", (body.get("num_versions", 1),))
    if kind == "specific":
        return ("specific", tuple(body.get("versions", [])))
    return ("all", ())


# --- writing ------------------------------------------------------------------------------------

INSTANCE_KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU", "auto": "KIND_AUTO"}
HEADER = "# Written by cnnspec export. Triton Inference Server / KServe model configuration.\n"


@dataclass(frozen=True)
class ServingConfig:
    """The parts of config.pbtxt a user chooses (``cnnspec export`` flags); the rest follows from the model."""

    max_batch_size: int = 64
    max_queue_delay_microseconds: int = 2000
    instance_kind: str = "cpu"
    instance_count: int = 1


def classifier_config(name: str, input_shape: Sequence[int], num_classes: int, serving: ServingConfig,
                      labels_file: str = "labels.txt") -> ModelConfig:
    """An ONNX classifier's configuration: input ``input`` float32 [C, H, W], output ``logits``
    float32 [K] labelled by ``labels_file``, dynamic batching, every version directory served."""
    return ModelConfig(
        name=name, platform="onnxruntime_onnx", max_batch_size=int(serving.max_batch_size),
        inputs=(TensorConfig("input", "TYPE_FP32", tuple(int(d) for d in input_shape)),),
        outputs=(TensorConfig("logits", "TYPE_FP32", (int(num_classes),), labels_file),),
        max_queue_delay_us=int(serving.max_queue_delay_microseconds), instance_count=int(serving.instance_count),
        instance_kind=INSTANCE_KINDS[serving.instance_kind], version_policy=("all", ()))


def render_model_config(config: ModelConfig, header: str = HEADER) -> str:
    """config.pbtxt text for the typed fields of ``config``; ``parse_model_config`` reads it back
    to an equal ModelConfig."""
    lines = [f"name: {_quote(config.name)}", f"platform: {_quote(config.platform)}",
             f"max_batch_size: {int(config.max_batch_size)}"]
    for key, tensors in (("input", config.inputs), ("output", config.outputs)):
        if tensors:
            lines += [f"{key} [", ",\n".join(_tensor(t) for t in tensors), "]"]
    if config.max_queue_delay_us is not None:
        lines += ["dynamic_batching {", f"  max_queue_delay_microseconds: {int(config.max_queue_delay_us)}", "}"]
    lines += ["instance_group [", "  {", f"    kind: {_enum('kind', config.instance_kind)}",
              f"    count: {int(config.instance_count)}", "  }", "]"]
    if config.default_model_filename != "model.onnx":
        lines.append(f"default_model_filename: {_quote(config.default_model_filename)}")
    lines.append(f"version_policy: {_version_policy_text(config.version_policy)}")
    return header + "\n".join(lines) + "\n"


def _tensor(tensor: TensorConfig) -> str:
    body = [f"name: {_quote(tensor.name)}", f"data_type: {_enum('data_type', tensor.data_type)}",
            f"dims: [ {', '.join(str(int(d)) for d in tensor.dims)} ]"]
    if tensor.label_filename:
        body.append(f"label_filename: {_quote(tensor.label_filename)}")
    return "  {\n" + "".join(f"    {line}\n" for line in body) + "  }"


def _version_policy_text(policy: tuple[str, tuple[int, ...]]) -> str:
    kind, values = policy
    if kind == "latest":
        return f"{{ latest {{ num_versions: {int(values[0])} }} }}"
    if kind == "specific":
        return f"{{ specific {{ versions: [ {', '.join(str(int(v)) for v in values)} ] }} }}"
    return "{ all { } }"


def _enum(name: str, value: str) -> str:
    if value not in ENUMS[name]:
        raise ConfigError(f"config.pbtxt: error: unknown value {value!r} for enum field '{name}'")
    return value


def _quote(text: str) -> str:
    """A text-format string literal; bytes outside printable ASCII as octal escapes of their UTF-8."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        out.append({"\\": "\\\\", '"': '\\"', "\n": "\\n"}.get(char, char) if 32 <= byte < 127 or char == "\n"
                   else f"\\{byte:03o}")
    return '"' + "".join(out) + '"'
