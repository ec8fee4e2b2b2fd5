"""The Open Inference Protocol (V2) request and response bodies, JSON and Triton's binary extension.

Request: a JSON header ``{"id", "parameters", "inputs": [...], "outputs": [...]}``. With the binary
extension the header is the first ``Inference-Header-Content-Length`` bytes and each input with
``parameters.binary_data_size`` takes that many raw little-endian bytes, in input order, from the
rest of the body. Responses put an output in binary when the request asks for it
(``outputs[i].parameters.binary_data``, or ``parameters.binary_data_output`` for unlisted outputs).

Parsing is hand-written on purpose: orjson plus ``numpy.fromiter``/``frombuffer``, no per-request
pydantic model, because this is the hot path (a 784-float JSON tensor costs ~70 us this way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from .errors import BadRequest
from .model import ModelVersion, TensorSpec
from .shared_memory import SharedMemoryRegions

_FLOAT_TYPES = ("FP16", "FP32", "FP64")


@dataclass
class RequestedOutput:
    """An entry of the request's ``outputs`` list."""

    name: str
    binary: bool
    classification: int = 0
    shared_memory: tuple[Any, Any, Any] | None = None  # (region, offset, byte_size): write the output there


@dataclass
class InferRequest:
    """A parsed request; ``feeds`` holds validated arrays keyed by input name."""

    id: str | None
    feeds: dict[str, np.ndarray]
    rows: int
    outputs: list[RequestedOutput]


def parse_json_object(text: bytes, shape_hint: str = "") -> dict[str, Any]:
    """A JSON object from a request body; malformed JSON or a non-object is a BadRequest."""
    try:
        payload = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"malformed JSON in the request body: {error}") from None
    if not isinstance(payload, dict):
        raise BadRequest(f"the request body must be a JSON object{shape_hint}")
    return payload


def parse_infer_request(body: bytes, header_length: int | None, model: ModelVersion,
                        allow_non_finite: bool = False, regions: SharedMemoryRegions | None = None) -> InferRequest:
    """Parse and validate a request body against ``model``; raises BadRequest naming the problem."""
    header_bytes, binary = _split_body(body, header_length)
    header = parse_json_object(header_bytes, " with an 'inputs' list")
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest(f"'id' must be a string, got {type(request_id).__name__}")
    feeds, rows = _inputs(header.get("inputs"), binary, model, allow_non_finite, regions)
    outputs = _outputs(header, model)
    return InferRequest(request_id, feeds, rows, outputs)


def _split_body(body: bytes, header_length: int | None) -> tuple[bytes, memoryview | None]:
    if header_length is None:
        return body, None
    if header_length > len(body):
        raise BadRequest(f"Inference-Header-Content-Length is {header_length} but the body has only "
                         f"{len(body)} bytes")
    view = memoryview(body)
    return view[:header_length], view[header_length:]


def _parameters(item: dict[str, Any], where: str) -> dict[str, Any]:
    parameters = item.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest(f"{where}: 'parameters' must be a JSON object")
    return parameters


def _inputs(items: Any, binary: memoryview | None, model: ModelVersion, allow_non_finite: bool,
            regions: SharedMemoryRegions | None) -> tuple[dict[str, np.ndarray], int]:
    if not isinstance(items, list) or not items:
        raise BadRequest("the request needs a non-empty 'inputs' list")
    feeds: dict[str, np.ndarray] = {}
    offset = 0
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest("each entry of 'inputs' must be an object with a 'name'")
        spec, shape = check_input(item, model, feeds)
        name = spec.name
        parameters = _parameters(item, f"input '{name}'")
        size = _binary_size(parameters, name)
        if "shared_memory_region" in parameters:
            array = read_shared_memory(regions, spec, shape, parameters.get("shared_memory_region"),
                                       parameters.get("shared_memory_offset", 0),
                                       parameters.get("shared_memory_byte_size"))
        elif size is not None:
            if binary is None:
                raise BadRequest(f"input '{name}' has binary_data_size but the request has no "
                                 "Inference-Header-Content-Length header")
            if offset + size > len(binary):
                raise BadRequest(f"input '{name}': binary_data_size {size} runs past the end of the body "
                                 f"({len(binary) - offset} bytes left)")
            array = from_binary(binary[offset:offset + size], spec, shape)
            offset += size
        else:
            array = _from_json(item, spec, shape)
        feeds[name] = check_finite(array, spec, allow_non_finite)
    if binary is not None and offset != len(binary):
        raise BadRequest(f"the binary part of the body is {len(binary)} bytes but the inputs' "
                         f"binary_data_size add up to {offset}")
    return feeds, batch_rows(feeds, model)


def check_input(item: dict[str, Any], model: ModelVersion, feeds: dict[str, np.ndarray]) -> tuple[TensorSpec, tuple[int, ...]]:
    """The model's spec for input ``item`` (``name``, ``shape``, ``datatype``) and its checked shape."""
    name = item["name"]
    spec = next((s for s in model.inputs if s.name == name), None)
    if spec is None:
        raise BadRequest(f"unknown input '{name}' for model '{model.name}'; inputs: {sorted(s.name for s in model.inputs)}")
    if name in feeds:
        raise BadRequest(f"input '{name}' is given twice")
    shape = _shape(item, spec)
    check_batch(shape, spec, model.max_batch_size)
    _check_datatype(item, spec)
    return spec, shape


def check_finite(array: np.ndarray, spec: TensorSpec, allow_non_finite: bool) -> np.ndarray:
    if not allow_non_finite and spec.datatype in _FLOAT_TYPES and not np.isfinite(array).all():
        count = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise BadRequest(f"input '{spec.name}' holds {count} non-finite values (NaN or Inf); the model "
                         "needs finite numbers (the server's allow_non_finite setting accepts them)")
    return array


def batch_rows(feeds: dict[str, np.ndarray], model: ModelVersion) -> int:
    """Every input given, all with the same batch size: that size (1 for a model without batching)."""
    missing = sorted({spec.name for spec in model.inputs} - set(feeds))
    if missing:
        raise BadRequest(f"missing inputs {missing} for model '{model.name}'")
    rows = next(iter(feeds.values())).shape[0] if model.max_batch_size else 1
    if model.max_batch_size and any(a.shape[0] != rows for a in feeds.values()):
        raise BadRequest("all inputs must have the same batch size (first dimension)")
    return rows


def _shape(item: dict[str, Any], spec: TensorSpec) -> tuple[int, ...]:
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise BadRequest(f"input '{spec.name}': 'shape' must be a list of non-negative integers, got {shape!r}")
    if len(shape) != len(spec.shape) or any(want != -1 and got != want for got, want in zip(shape, spec.shape)):
        raise BadRequest(f"input '{spec.name}': shape {shape} does not match the model's {list(spec.shape)} "
                         "(-1 = any size)")
    return tuple(shape)


def check_batch(shape: tuple[int, ...], spec: TensorSpec, max_batch_size: int) -> None:
    """Triton's rule: a request's batch dimension is between 1 and max_batch_size."""
    if max_batch_size and not 1 <= shape[0] <= max_batch_size:
        raise BadRequest(f"input '{spec.name}': batch size {shape[0]} is outside 1..{max_batch_size} "
                         "(the model's max_batch_size)")


def _check_datatype(item: dict[str, Any], spec: TensorSpec) -> None:
    datatype = item.get("datatype")
    if datatype != spec.datatype:
        raise BadRequest(f"input '{spec.name}': datatype {datatype!r} does not match the model's "
                         f"'{spec.datatype}'")


def read_shared_memory(regions: SharedMemoryRegions | None, spec: TensorSpec, shape: tuple[int, ...],
                       region: Any, offset: Any, byte_size: Any) -> np.ndarray:
    """An input read (copied) from a registered shared memory region."""
    if regions is None:
        raise BadRequest(f"input '{spec.name}': shared-memory inputs are not supported here")
    data = regions.read(f"input '{spec.name}'", region, offset, byte_size)
    return from_binary(data, spec, shape, "shared_memory_byte_size")


def _binary_size(parameters: dict[str, Any], name: str) -> int | None:
    size = parameters.get("binary_data_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise BadRequest(f"input '{name}': binary_data_size must be a non-negative integer, got {size!r}")
    return size


def from_binary(chunk: memoryview | bytes, spec: TensorSpec, shape: tuple[int, ...],
                size_name: str = "binary_data_size") -> np.ndarray:
    dtype = spec.dtype
    count = int(np.prod(shape))
    if len(chunk) != count * dtype.itemsize:
        raise BadRequest(f"input '{spec.name}': shape {list(shape)} of {spec.datatype} needs "
                         f"{count * dtype.itemsize} bytes but {size_name} is {len(chunk)}")
    return np.frombuffer(chunk, dtype=dtype).reshape(shape)


def _from_json(item: dict[str, Any], spec: TensorSpec, shape: tuple[int, ...]) -> np.ndarray:
    data = item.get("data")
    if not isinstance(data, list):
        raise BadRequest(f"input '{spec.name}' needs a 'data' list (or parameters.binary_data_size)")
    count = int(np.prod(shape))
    try:
        # fromiter is the fast path for the usual flat list; nested lists fall back to np.array.
        with np.errstate(over="ignore"):  # an out-of-range number becomes inf, rejected below
            array = np.fromiter(data, dtype=spec.dtype, count=len(data))
    except (TypeError, ValueError):
        try:
            with np.errstate(over="ignore"):
                array = np.array(data, dtype=spec.dtype)
        except (TypeError, ValueError, OverflowError) as error:
            raise BadRequest(f"input '{spec.name}': 'data' must hold {spec.datatype} numbers "
                             f"(nested lists must be regular): {error}") from None
    except OverflowError as error:
        raise BadRequest(f"input '{spec.name}': a value does not fit {spec.datatype}: {error}") from None
    if array.size != count:
        raise BadRequest(f"input '{spec.name}': shape {list(shape)} holds {count} elements but 'data' "
                         f"has {array.size}")
    return array.reshape(shape)


def _outputs(header: dict[str, Any], model: ModelVersion) -> list[RequestedOutput]:
    binary_default = bool(_parameters(header, "request").get("binary_data_output", False))
    items = header.get("outputs")
    if items is None:
        return [RequestedOutput(spec.name, binary_default) for spec in model.outputs]
    if not isinstance(items, list):
        raise BadRequest("'outputs' must be a list of objects with a 'name'")
    known = {spec.name for spec in model.outputs}
    result = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest("each entry of 'outputs' must be an object with a 'name'")
        if item["name"] not in known:
            raise BadRequest(f"unknown output '{item['name']}' for model '{model.name}'; outputs: {sorted(known)}")
        parameters = _parameters(item, f"output '{item['name']}'")
        shared = None
        if "shared_memory_region" in parameters:
            shared = (parameters["shared_memory_region"], parameters.get("shared_memory_offset", 0),
                      parameters.get("shared_memory_byte_size"))
        classification = parameters.get("classification", 0)
        if not isinstance(classification, int) or isinstance(classification, bool) or classification < 0:
            raise BadRequest(f"output '{item['name']}': classification must be a non-negative integer")
        result.append(RequestedOutput(item["name"], bool(parameters.get("binary_data", binary_default)),
                                      classification, shared))
    return result


def build_infer_response(model: ModelVersion, request: InferRequest, outputs: list[np.ndarray],
                         regions: SharedMemoryRegions | None = None) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length. Outputs asked
    for in shared memory are written there and answered with name, datatype and shape only, as
    Triton answers them: Triton's C++ client (perf_analyzer) reads an output's ``parameters`` as
    binary data and fails on one without ``binary_data_size``."""
    by_name = {spec.name: (spec, array) for spec, array in zip(model.outputs, outputs)}
    entries, blobs = [], []
    for wanted in request.outputs:
        spec, array = by_name[wanted.name]
        if wanted.classification:
            array = classify_rows(array, spec, wanted.classification, model.max_batch_size > 0)
            entry = {"name": spec.name, "datatype": "BYTES", "shape": list(array.shape)}
        else:
            entry = {"name": spec.name, "datatype": spec.datatype, "shape": list(array.shape)}
        if wanted.shared_memory is not None:
            write_shared_memory(regions, spec.name, wanted.shared_memory, to_bytes(array))
        elif wanted.binary:
            blob = to_bytes(array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif wanted.classification:
            entry["data"] = [s.decode() for s in array.ravel()]
        else:
            # Floats go out as float64 so that every JSON parser reads back the exact float32 value.
            values = array.astype(np.float64) if array.dtype in (np.float32, np.float16) else array
            entry["data"] = np.ascontiguousarray(values).ravel()
        entries.append(entry)
    response: dict[str, Any] = {"model_name": model.name, "model_version": str(model.version), "outputs": entries}
    if request.id is not None:
        response["id"] = request.id
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def write_shared_memory(regions: SharedMemoryRegions | None, name: str, target: tuple[Any, Any, Any],
                        blob: bytes) -> dict[str, Any]:
    """Write an output into its region; the response's parameters for it."""
    if regions is None:
        raise BadRequest(f"output '{name}': shared-memory outputs are not supported here")
    region, offset, byte_size = target
    regions.write(f"output '{name}'", region, offset, byte_size, blob)
    return {"shared_memory_region": region, "shared_memory_byte_size": len(blob)}


def to_bytes(array: np.ndarray) -> bytes:
    if array.dtype == object:  # BYTES: 4-byte little-endian length + bytes, per element
        return b"".join(len(s).to_bytes(4, "little") + s for s in array.ravel())
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def classify_rows(array: np.ndarray, spec: TensorSpec, top: int, batched: bool) -> np.ndarray:
    """Triton's classification extension: the top entries as b"score:index[:label]" strings."""
    rows = array.reshape(array.shape[0], -1) if batched else array.reshape(1, -1)
    top = min(top, rows.shape[1])
    order = np.argsort(-rows, axis=1, kind="stable")[:, :top]
    labels = spec.labels
    result = np.empty(order.shape, dtype=object)
    for r, row in enumerate(order):
        for c, index in enumerate(row):
            label = f":{labels[index]}" if index < len(labels) else ""
            result[r, c] = f"{rows[r, index]:f}:{index}{label}".encode()
    return result if batched else result.reshape(top)
