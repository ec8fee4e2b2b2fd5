"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService``, beside the HTTP server.

It runs grpcio's asyncio server on the same event loop as uvicorn and serves from the same
``ServingApp``: the same model table, dynamic batchers, statistics, Prometheus metrics, bearer
token and limits. The messages and the servicer base class are the ones the official
``tritonclient[grpc]`` package ships (``tritonclient.grpc.service_pb2``/``service_pb2_grpc``),
so the wire format is Triton's exactly.

- Errors are gRPC status codes with the same messages as HTTP: 400 -> INVALID_ARGUMENT,
  401 -> UNAUTHENTICATED, 404 -> NOT_FOUND, 413 -> RESOURCE_EXHAUSTED, 415 -> UNIMPLEMENTED,
  503 -> UNAVAILABLE, anything else -> INTERNAL.
- Auth: ``authorization: Bearer <token>`` metadata on every call but ServerLive/ServerReady.
- A received message may be at most ``max_body_bytes`` (grpc answers RESOURCE_EXHAUSTED), and a
  unary call's message must have fully arrived ``body_timeout_s`` after the call began, or the
  call ends with DEADLINE_EXCEEDED: a client stalled before or inside its message holds nothing
  for longer (grpc itself waits for the message as long as the client's own deadline allows).
- ModelInfer accepts typed ``contents`` or ``raw_input_contents`` (one entry per input, in
  order) and answers with ``raw_output_contents``, as Triton does.
- ModelStreamInfer handles the requests of a stream concurrently (they batch together) and
  answers each in a ``ModelStreamInferResponse``; a failed request gets ``error_message`` and
  the stream stays open. A stream with nothing in flight and no complete request for
  ``stream_idle_timeout_s`` ends with DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
from time import perf_counter, perf_counter_ns
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

import grpc
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from cnnspec import __version__

from .errors import BadRequest, ServingError, Unauthorized, Unavailable
from .model import ModelVersion, TensorSpec
from .protocol import (RequestedOutput, batch_rows, check_finite, check_input, classify_rows, from_binary,
                       read_shared_memory, to_bytes, write_shared_memory)
from .repository import parse_version
from .shared_memory import SharedMemoryRegions

if TYPE_CHECKING:
    from .app import ServingApp

log = logging.getLogger("serving")

STATUS_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
                404: grpc.StatusCode.NOT_FOUND, 408: grpc.StatusCode.DEADLINE_EXCEEDED,
                413: grpc.StatusCode.RESOURCE_EXHAUSTED, 415: grpc.StatusCode.UNIMPLEMENTED,
                503: grpc.StatusCode.UNAVAILABLE}

IDLE = object()
"""What ModelStreamInfer's reader hands its writer when the stream has been idle too long."""

# V2 datatype -> the InferTensorContents field that carries it (FP16 and BF16 only travel raw).
CONTENTS_FIELDS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
                   "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
                   "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
                   "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}


SERVICE = "inference.GRPCInferenceService"


class Malformed:
    """What a request that is not valid protobuf deserializes to (grpc would answer UNKNOWN and log a
    traceback); the handler answers INVALID_ARGUMENT with ``message``."""

    __slots__ = ("message",)

    def __init__(self, message: str):
        self.message = message


def tolerant_handlers(servicer: "InferenceServicer",
                      message_timeout_s: float = 0.0) -> dict[str, grpc.RpcMethodHandler]:
    """The generated method handlers of Triton's service, with deserializers that never raise.

    With ``message_timeout_s`` > 0 a unary method becomes stream-unary on the server's side (the
    wire format is the same: one message, then the client's half-close), so that the handler runs
    when the call begins and reads the message itself, with that limit."""
    class Capture:
        def add_generic_rpc_handlers(self, handlers: Any) -> None:
            pass

        def add_registered_method_handlers(self, name: str, handlers: dict) -> None:
            self.handlers = handlers

    capture = Capture()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, capture)
    result = {}
    for method, handler in capture.handlers.items():
        replaced = {"request_deserializer": _tolerant(handler.request_deserializer, method)}
        if handler.unary_unary is not None:
            behaviour = _refuse_malformed(handler.unary_unary)
            if message_timeout_s > 0:
                replaced.update(unary_unary=None, request_streaming=True,
                                stream_unary=_read_within(behaviour, message_timeout_s))
            else:
                replaced["unary_unary"] = behaviour
        result[method] = handler._replace(**replaced)
    return result


def _read_within(behaviour: Callable, seconds: float) -> Callable:
    async def handle(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            async with asyncio.timeout(seconds):
                request = await context.read()
        except TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"the request message did not fully arrive within {seconds:g} s of the call's "
                                f"start (body_timeout_s)")
        if request is grpc.aio.EOF:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the call ended before its request message")
        return await behaviour(request, context)
    return handle


def _tolerant(deserialize: Callable[[bytes], Any], method: str) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as error:  # noqa: BLE001 - protobuf's DecodeError and friends
            return Malformed(f"the {method} request is not a valid protobuf message: {error}")
    return parse


def _refuse_malformed(behaviour: Callable) -> Callable:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        return await behaviour(request, context)
    return handle


def status_code(error: ServingError) -> grpc.StatusCode:
    return STATUS_CODES.get(error.status, grpc.StatusCode.INTERNAL)


def rpc(public: bool = False) -> Callable:
    """Wrap a unary handler: check the token, turn ServingError into its status code, log bugs."""
    def decorate(method: Callable) -> Callable:
        @functools.wraps(method)
        async def handler(self: "InferenceServicer", request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                if not public:
                    self.authorize(context)
                return await method(self, request, context)
            except ServingError as error:
                code, message = status_code(error), str(error)
            except Exception:  # a bug: log it, answer INTERNAL, keep serving
                log.exception("unhandled error in gRPC %s", method.__name__)
                code, message = grpc.StatusCode.INTERNAL, "internal server error (see the server log)"
            await context.abort(code, message)
        return handler
    return decorate


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """Triton's GRPCInferenceService over a ``ServingApp``."""

    def __init__(self, app: "ServingApp"):
        self.app = app
        self.table = app.table
        self.settings = app.settings
        self._token = app.settings.auth_token.get_secret_value().encode() if app.settings.auth_token else None

    def authorize(self, context: grpc.aio.ServicerContext) -> None:
        if self._token is None:
            return
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                scheme, _, token = value.partition(" ")
                if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self._token):
                    return
                raise Unauthorized("invalid bearer token")
        raise Unauthorized("this server requires a bearer token: send 'authorization: Bearer <token>' metadata")

    # --- health and metadata ------------------------------------------------------------------------

    @rpc(public=True)
    async def ServerLive(self, request, context):
        return service_pb2.ServerLiveResponse(live=True)

    @rpc(public=True)
    async def ServerReady(self, request, context):
        return service_pb2.ServerReadyResponse(ready=self.app.is_ready())

    @rpc()
    async def ModelReady(self, request, context):
        try:
            self._resolve(request.name, request.version)
        except ServingError as error:
            if error.status != 404:
                raise
            return service_pb2.ModelReadyResponse(ready=False)
        return service_pb2.ModelReadyResponse(ready=True)

    @rpc()
    async def ServerMetadata(self, request, context):
        return service_pb2.ServerMetadataResponse(name="cnnspec", version=__version__, extensions=self.app.extensions)

    @rpc()
    async def ModelMetadata(self, request, context):
        entry, loaded = self._resolve(request.name, request.version)
        model = loaded.model
        versions = [str(model.version)] if request.version else [str(v) for v in sorted(entry.versions)]
        tensor = service_pb2.ModelMetadataResponse.TensorMetadata
        return service_pb2.ModelMetadataResponse(
            name=entry.name, versions=versions, platform=model.config.platform,
            inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in model.inputs],
            outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in model.outputs])

    @rpc()
    async def ModelConfig(self, request, context):
        _, loaded = self._resolve(request.name, request.version)
        config = json_format.ParseDict(loaded.model.config.json, model_config_pb2.ModelConfig())
        return service_pb2.ModelConfigResponse(config=config)

    @rpc()
    async def ModelStatistics(self, request, context):
        if request.name:
            entry = self.table.entry(request.name)
            versions = ([entry.resolve(parse_version(request.version))] if request.version
                        else [entry.versions[v] for v in sorted(entry.versions)])
        else:
            versions = [v for e in self.table.entries.values() for _, v in sorted(e.versions.items())]
        stats = [json_format.ParseDict(v.stats.json(), service_pb2.ModelStatistics()) for v in versions]
        return service_pb2.ModelStatisticsResponse(model_stats=stats)

    # --- model repository ---------------------------------------------------------------------------

    @rpc()
    async def RepositoryIndex(self, request, context):
        index = await self.app.repository_index_entries()
        if request.ready:
            index = [item for item in index if item["state"] == "READY"]
        return service_pb2.RepositoryIndexResponse(
            models=[service_pb2.RepositoryIndexResponse.ModelIndex(**item) for item in index])

    @rpc()
    async def RepositoryModelLoad(self, request, context):
        if request.parameters:
            raise BadRequest("load parameters (config or file overrides) are not supported; change the files in "
                             "the model repository and load again")
        await self.table.load(request.model_name)
        return service_pb2.RepositoryModelLoadResponse()

    @rpc()
    async def RepositoryModelUnload(self, request, context):
        await self.table.unload(request.model_name)
        return service_pb2.RepositoryModelUnloadResponse()

    # --- system shared memory (see shared_memory.py) ---------------------------------------------------

    @rpc()
    async def SystemSharedMemoryRegister(self, request, context):
        self.app.shared_memory.register(request.name, request.key, request.offset, request.byte_size)
        return service_pb2.SystemSharedMemoryRegisterResponse()

    @rpc()
    async def SystemSharedMemoryStatus(self, request, context):
        status = service_pb2.SystemSharedMemoryStatusResponse
        regions = {r["name"]: status.RegionStatus(**r) for r in self.app.shared_memory.status(request.name)}
        return status(regions=regions)

    @rpc()
    async def SystemSharedMemoryUnregister(self, request, context):
        self.app.shared_memory.unregister(request.name)
        return service_pb2.SystemSharedMemoryUnregisterResponse()

    # --- inference ----------------------------------------------------------------------------------

    @rpc()
    async def ModelInfer(self, request, context):
        return await self.infer(request)

    async def ModelStreamInfer(self, request_iterator: AsyncIterator, context: grpc.aio.ServicerContext):
        try:
            self.authorize(context)
        except ServingError as error:
            await context.abort(status_code(error), str(error))
        responses: asyncio.Queue = asyncio.Queue()
        tasks: set[asyncio.Task] = set()

        async def one(request: service_pb2.ModelInferRequest) -> None:
            if isinstance(request, Malformed):
                await responses.put(service_pb2.ModelStreamInferResponse(error_message=request.message))
                return
            try:
                response = service_pb2.ModelStreamInferResponse(infer_response=await self.infer(request))
            except ServingError as error:
                response = service_pb2.ModelStreamInferResponse(
                    error_message=str(error), infer_response=service_pb2.ModelInferResponse(
                        id=request.id, model_name=request.model_name, model_version=request.model_version))
            except Exception:  # noqa: BLE001 - a bug: the stream carries on
                log.exception("unhandled error in gRPC ModelStreamInfer")
                response = service_pb2.ModelStreamInferResponse(error_message="internal server error (see the server log)")
            await responses.put(response)

        idle_limit = self.settings.stream_idle_timeout_s or None

        async def read() -> None:
            """Start a task per request; give up on a stream idle for ``stream_idle_timeout_s``
            (nothing in flight, no complete message: grpc only hands over whole messages, so a
            client stopped inside one looks the same)."""
            loop = asyncio.get_running_loop()
            requests = request_iterator.__aiter__()
            try:
                while True:
                    arriving = loop.create_task(requests.__anext__())
                    while True:
                        done, _ = await asyncio.wait({arriving}, timeout=idle_limit)
                        if done:
                            break
                        if tasks:  # answering requests is not idling: keep waiting
                            continue
                        arriving.cancel()
                        await responses.put(IDLE)
                        return
                    try:
                        request = arriving.result()
                    except StopAsyncIteration:
                        break
                    task = loop.create_task(one(request))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if tasks:
                    await asyncio.gather(*tasks)
            finally:
                await responses.put(None)

        reader = asyncio.get_running_loop().create_task(read())
        try:
            while (response := await responses.get()) is not None:
                if response is IDLE:
                    await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                        f"no complete request on this stream for {idle_limit:g} s "
                                        "(stream_idle_timeout_s); open a new stream to continue")
                yield response
        finally:
            reader.cancel()
            for task in list(tasks):
                task.cancel()

    async def infer(self, request: service_pb2.ModelInferRequest) -> service_pb2.ModelInferResponse:
        """Validate, batch, answer; statistics and metrics as the HTTP handler records them."""
        started = perf_counter()
        entry = self.table.entry(request.model_name)
        version = parse_version(request.model_version)
        metrics = self.app.metrics.for_model(entry.name)
        metrics.inflight.inc()
        status, loaded, outputs, serialize_ns = 200, None, None, 0
        try:
            if self.app.stopping:
                raise Unavailable("the server is shutting down")
            loaded = entry.resolve(version)
            model = loaded.model
            feeds = parse_inputs(request, model, self.settings.allow_non_finite, self.app.shared_memory)
            wanted = requested_outputs(request, model)
            outputs = await loaded.batcher.submit(feeds, batch_rows(feeds, model))
            serialize_started = perf_counter_ns()
            response = build_response(request, model, wanted, outputs, self.app.shared_memory)
            serialize_ns = perf_counter_ns() - serialize_started
            return response
        except ServingError as error:
            status = error.status
            raise
        except BaseException:
            status = 500
            raise
        finally:
            metrics.finish_inference(status, perf_counter() - started, loaded, outputs, serialize_ns)

    def _resolve(self, name: str, version: str):
        entry = self.table.entry(name)
        return entry, entry.resolve(parse_version(version))


def parse_inputs(request: service_pb2.ModelInferRequest, model: ModelVersion, allow_non_finite: bool,
                 regions: SharedMemoryRegions | None = None) -> dict[str, np.ndarray]:
    """The request's input arrays, checked as the HTTP path checks them."""
    if not request.inputs:
        raise BadRequest("the request needs at least one input")
    raw = request.raw_input_contents
    in_memory = sum("shared_memory_region" in tensor.parameters for tensor in request.inputs)
    if raw and len(raw) != len(request.inputs) - in_memory:
        raise BadRequest(f"raw_input_contents has {len(raw)} entries for {len(request.inputs) - in_memory} inputs "
                         "not in shared memory; give one per input, in order, or use contents for every input")
    feeds: dict[str, np.ndarray] = {}
    raw_index = 0
    for tensor in request.inputs:
        spec, shape = check_input({"name": tensor.name, "shape": list(tensor.shape), "datatype": tensor.datatype},
                                  model, feeds)
        if "shared_memory_region" in tensor.parameters:
            region, offset, byte_size = _shared_memory_parameters(tensor.parameters)
            array = read_shared_memory(regions, spec, shape, region, offset, byte_size)
        elif raw:
            if tensor.HasField("contents"):
                raise BadRequest(f"input '{tensor.name}' has contents but the request uses raw_input_contents; "
                                 "use one or the other for all inputs")
            array = from_binary(raw[raw_index], spec, shape, "the raw_input_contents entry's size")
            raw_index += 1
        else:
            array = _from_contents(tensor, spec, shape)
        feeds[spec.name] = check_finite(array, spec, allow_non_finite)
    return feeds


def _from_contents(tensor: service_pb2.ModelInferRequest.InferInputTensor, spec: TensorSpec,
                   shape: tuple[int, ...]) -> np.ndarray:
    field = CONTENTS_FIELDS.get(spec.datatype)
    if field is None:
        raise BadRequest(f"input '{spec.name}': {spec.datatype} travels only in raw_input_contents")
    values = getattr(tensor.contents, field)
    count = int(np.prod(shape))
    if len(values) != count:
        raise BadRequest(f"input '{spec.name}': shape {list(shape)} holds {count} elements but "
                         f"contents.{field} has {len(values)}")
    try:
        array = np.array(values, dtype=spec.dtype)
    except OverflowError as error:
        raise BadRequest(f"input '{spec.name}': a value does not fit {spec.datatype}: {error}") from None
    return array.reshape(shape)


def requested_outputs(request: service_pb2.ModelInferRequest, model: ModelVersion) -> list[RequestedOutput]:
    if not request.outputs:
        return [RequestedOutput(spec.name, True) for spec in model.outputs]
    known = {spec.name for spec in model.outputs}
    result = []
    for output in request.outputs:
        if output.name not in known:
            raise BadRequest(f"unknown output '{output.name}' for model '{model.name}'; outputs: {sorted(known)}")
        classification = 0
        if "classification" in output.parameters:
            parameter = output.parameters["classification"]
            classification = parameter.int64_param if parameter.WhichOneof("parameter_choice") == "int64_param" else -1
            if classification < 0:
                raise BadRequest(f"output '{output.name}': classification must be a non-negative integer")
        shared = _shared_memory_parameters(output.parameters) if "shared_memory_region" in output.parameters else None
        result.append(RequestedOutput(output.name, True, classification, shared))
    return result


def _shared_memory_parameters(parameters: Any) -> tuple[Any, Any, Any]:
    """(region, offset, byte_size) from a tensor's InferParameter map; wrong kinds become None (refused)."""
    def value(key: str, kind: str, default: Any = None) -> Any:
        if key not in parameters:
            return default
        parameter = parameters[key]
        return getattr(parameter, kind) if parameter.WhichOneof("parameter_choice") == kind else None
    return (value("shared_memory_region", "string_param"), value("shared_memory_offset", "int64_param", 0),
            value("shared_memory_byte_size", "int64_param"))


def build_response(request: service_pb2.ModelInferRequest, model: ModelVersion, wanted: list[RequestedOutput],
                   outputs: list[np.ndarray], regions: SharedMemoryRegions | None = None) -> service_pb2.ModelInferResponse:
    """Every output in ``raw_output_contents`` (little-endian bytes; BYTES length-prefixed), as Triton answers;
    an output in shared memory is written there and gets an empty entry (so the indices still line up)."""
    by_name = {spec.name: (spec, array) for spec, array in zip(model.outputs, outputs)}
    tensors, blobs = [], []
    for output in wanted:
        spec, array = by_name[output.name]
        datatype = spec.datatype
        if output.classification:
            array = classify_rows(array, spec, output.classification, model.max_batch_size > 0)
            datatype = "BYTES"
        tensor = service_pb2.ModelInferResponse.InferOutputTensor(name=spec.name, datatype=datatype, shape=array.shape)
        blob = to_bytes(array)
        if output.shared_memory is not None:
            written = write_shared_memory(regions, spec.name, output.shared_memory, blob)
            tensor.parameters["shared_memory_region"].string_param = written["shared_memory_region"]
            tensor.parameters["shared_memory_byte_size"].int64_param = written["shared_memory_byte_size"]
            blob = b""
        tensors.append(tensor)
        blobs.append(blob)
    return service_pb2.ModelInferResponse(model_name=model.name, model_version=str(model.version), id=request.id,
                                          outputs=tensors, raw_output_contents=blobs)


async def start_grpc_server(app: "ServingApp") -> tuple[grpc.aio.Server, int]:
    """Bind ``host:grpc_port`` on the running event loop and start serving; returns the server and port."""
    settings = app.settings
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", settings.max_body_bytes),
        ("grpc.max_send_message_length", -1),
        ("grpc.so_reuseport", 0),
        # a connection must finish its HTTP/2 handshake within header_timeout_s (grpc's default: 120 s)
        ("grpc.server_handshake_timeout_ms", int(settings.header_timeout_s * 1000) or 120_000),
    ])
    handlers = tolerant_handlers(InferenceServicer(app), settings.body_timeout_s)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
    address = f"[{settings.host}]:{settings.grpc_port}" if ":" in settings.host else f"{settings.host}:{settings.grpc_port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ServingError(f"cannot bind the gRPC port {address} (in use, or not an address of this machine)")
    await server.start()
    log.info("gRPC: serving inference.GRPCInferenceService on %s:%d", settings.host, port)
    return server, port
