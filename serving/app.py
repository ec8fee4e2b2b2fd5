"""The ASGI application: a lean hot path for ``/infer`` and Starlette routes for everything else.

``POST /v2/models/{m}[/versions/{v}]/infer`` is matched by string splitting and handled on raw ASGI
(no router, middleware, Request/Response objects or pydantic per request); the other endpoints are
ordinary Starlette routes. Authentication, errors (``{"error": "..."}`` with a 4xx/5xx status) and
the lifespan (load models, watch the repository, drain on shutdown) are handled here once.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from time import perf_counter, perf_counter_ns
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router

from cnnspec import __version__

from .classify import classify_upload
from .errors import BadRequest, NotFound, ServingError, Unauthorized, Unavailable
from .http import (ClientDisconnected, Receive, RequestHeaders, Send, compress, read_body, send_bytes,
                   send_error)
from .metrics import Metrics
from .protocol import build_infer_response, parse_infer_request, parse_json_object
from .repository import LoadedVersion, ModelTable, parse_version
from .settings import ServeSettings
from .shared_memory import SharedMemoryRegions

log = logging.getLogger("serving")

EXTENSIONS = ["binary_tensor_data", "classification", "model_repository", "model_configuration", "statistics"]
PUBLIC_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


class ServingApp:
    """The service. ``ServingApp(settings)`` loads the repository at startup (ASGI lifespan);
    pass a ``ModelTable`` that is already loaded to skip that (``python -m serving`` does, so that
    load errors stop it before it binds the port)."""

    def __init__(self, settings: ServeSettings, table: ModelTable | None = None):
        self.settings = settings
        self.table = table or ModelTable(settings, Metrics())
        self.metrics = self.table.metrics
        self.stopping = False
        self._loaded = table is not None
        self._token = settings.auth_token.get_secret_value().encode() if settings.auth_token else None
        self._public = PUBLIC_PATHS | ({"/metrics"} if settings.metrics_public else set())
        self._watch_task: asyncio.Task | None = None
        self.shared_memory = SharedMemoryRegions(settings.shared_memory == "system")
        self.grpc_server: Any = None  # grpc.aio.Server while gRPC is on (settings.grpc_port)
        self.grpc_port: int | None = None
        self.router = Router(self._routes(), redirect_slashes=False, default=self._not_found)

    # --- ASGI entry ------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        try:
            if self._token is not None and path not in self._public:
                self._authorize(scope)
            if scope["method"] == "POST" and path.startswith("/v2/models/") and path.endswith("/infer"):
                parts = path.split("/")
                if len(parts) == 5:
                    return await self.infer(scope, receive, send, parts[3], None)
                if len(parts) == 7 and parts[4] == "versions":
                    return await self.infer(scope, receive, send, parts[3], parts[5])
            scope["app"] = self  # makes Starlette raise HTTPException (405) instead of answering in text
            await self.router(scope, receive, send)
        except ServingError as error:
            await send_error(send, error)
        except HTTPException as error:
            await send_error(send, _http_error(error.status_code, f"{error.detail}: {scope['method']} {path}"))
        except ClientDisconnected:
            pass
        except Exception:  # a bug: log it, answer 500, keep serving
            log.exception("unhandled error on %s %s", scope["method"], path)
            await send_error(send, ServingError("internal server error (see the server log)"))

    def _authorize(self, scope: dict[str, Any]) -> None:
        """``Authorization: Bearer <token>``, compared in constant time."""
        for key, value in scope["headers"]:
            if key == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._token):
                    return
                raise Unauthorized("invalid bearer token")
        raise Unauthorized("this server requires a bearer token: send 'Authorization: Bearer <token>'")

    async def _not_found(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send_error(send, NotFound(f"no endpoint {scope['method']} {scope['path']}; "
                                        "see GET /v2 and the /v2/models/{name}/... endpoints"))

    # --- lifespan ---------------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as error:  # noqa: BLE001 - reported to the server, which exits
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        if not self._loaded:
            await asyncio.to_thread(self.table.load_all_sync)
            self._loaded = True
        if self.settings.watch:
            self._watch_task = asyncio.get_running_loop().create_task(self.table.watch())
        if self.settings.grpc_port is not None:
            from .grpc_server import start_grpc_server  # grpcio is imported only when gRPC is on

            self.grpc_server, self.grpc_port = await start_grpc_server(self)

    async def shutdown(self) -> None:
        """Stop watching and finish every queued batch (the server already waited for open requests)."""
        self.stopping = True
        if self._watch_task is not None:
            self._watch_task.cancel()
        if self.grpc_server is not None:  # refuse new calls, let open ones finish
            await self.grpc_server.stop(self.settings.drain_timeout_s or None)
        try:
            await asyncio.wait_for(self.table.drain(), timeout=self.settings.drain_timeout_s or None)
        except asyncio.TimeoutError:
            log.warning("shutdown: batches still running after %.1f s", self.settings.drain_timeout_s)
        self.shared_memory.close()

    # --- the hot path -----------------------------------------------------------------------------

    async def infer(self, scope: dict[str, Any], receive: Receive, send: Send, name: str,
                    version_text: str | None) -> None:
        """Parse, queue for the batcher, answer. Errors become ``{"error"}`` with their status."""
        started = perf_counter()
        entry = self.table.entry(name)
        version = parse_version(version_text)
        metrics = self.metrics.for_model(name)
        metrics.inflight.inc()
        status, loaded, outputs, serialize_ns = 200, None, None, 0
        try:
            if self.stopping:
                raise Unavailable("the server is shutting down")
            headers = RequestHeaders(scope["headers"])
            entry.arrivals.start()  # tells the batcher this request is on its way (see batching.py)
            try:
                body = await read_body(receive, headers, self.settings.max_body_bytes)
            finally:
                entry.arrivals.done()
            loaded = entry.resolve(version)  # after the last await: a reload cannot slip in before submit
            request = parse_infer_request(body, headers.header_length, loaded.model, self.settings.allow_non_finite,
                                          self.shared_memory)
            outputs = await loaded.batcher.submit(request.feeds, request.rows)
            serialize_started = perf_counter_ns()
            body, header_length = build_infer_response(loaded.model, request, outputs, self.shared_memory)
            serialize_ns = perf_counter_ns() - serialize_started
            extra = []
            if header_length is not None:
                extra.append((b"inference-header-content-length", str(header_length).encode()))
            body, encoding = compress(body, headers.accept_encoding, self.settings.compress_min_bytes)
            if encoding:
                extra.append((b"content-encoding", encoding))
            await send_bytes(send, 200, body, b"application/octet-stream" if header_length else b"application/json",
                             extra)
        except ServingError as error:
            status = error.status
            await send_error(send, error)
        except ClientDisconnected:
            status = 499  # nginx's code for "client closed the request"; nothing can be sent
        except BaseException:
            status = 500  # a bug or a cancellation; __call__ logs and answers it
            raise
        finally:
            metrics.finish_inference(status, perf_counter() - started, loaded, outputs, serialize_ns)

    # --- everything else: Starlette routes ----------------------------------------------------------

    def _routes(self) -> list[Route]:
        model, versioned = "/v2/models/{name}", "/v2/models/{name}/versions/{version}"
        routes = [
            Route("/v2/health/live", self.live, methods=["GET"]),
            Route("/v2/health/ready", self.ready, methods=["GET"]),
            Route("/v2", self.server_metadata, methods=["GET"]),
            Route("/v2/models/stats", self.all_stats, methods=["GET"]),
            Route("/v2/repository/index", self.repository_index, methods=["POST"]),
            Route("/v2/repository/models/{name}/load", self.load, methods=["POST"]),
            Route("/v2/repository/models/{name}/unload", self.unload, methods=["POST"]),
            Route("/metrics", self.prometheus, methods=["GET"]),
            Route("/v2/systemsharedmemory/status", self.shm_status, methods=["GET"]),
            Route("/v2/systemsharedmemory/region/{region}/status", self.shm_status, methods=["GET"]),
            Route("/v2/systemsharedmemory/region/{region}/register", self.shm_register, methods=["POST"]),
            Route("/v2/systemsharedmemory/unregister", self.shm_unregister, methods=["POST"]),
            Route("/v2/systemsharedmemory/region/{region}/unregister", self.shm_unregister, methods=["POST"]),
        ]
        for prefix in (model, versioned):
            routes += [
                Route(prefix, self.model_metadata, methods=["GET"]),
                Route(prefix + "/ready", self.model_ready, methods=["GET"]),
                Route(prefix + "/config", self.model_config, methods=["GET"]),
                Route(prefix + "/stats", self.model_stats, methods=["GET"]),
                Route(prefix + "/classify", self.classify, methods=["POST"]),
                Route(prefix + "/infer", self.infer_fallback, methods=["POST"]),
            ]
        return routes

    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def ready(self, request: Request) -> Response:
        if self.stopping:
            return json_response({"ready": False, "error": "the server is shutting down"}, 503)
        if not self.is_ready():
            return json_response({"ready": False, "error": self.table.not_ready_reason() or "loading"}, 503)
        return json_response({"ready": True})

    def is_ready(self) -> bool:
        return not self.stopping and self._loaded and self.table.ready()

    async def server_metadata(self, request: Request) -> Response:
        return json_response({"name": "cnnspec", "version": __version__, "extensions": self.extensions})

    @property
    def extensions(self) -> list[str]:
        return EXTENSIONS + (["system_shared_memory"] if self.shared_memory.enabled else [])

    # --- system shared memory (see shared_memory.py) ----------------------------------------------------

    async def shm_status(self, request: Request) -> Response:
        return json_response(self.shared_memory.status(request.path_params.get("region")))

    async def shm_register(self, request: Request) -> Response:
        self.shared_memory.check_enabled()  # off: say so before reading anything
        payload = await self._small_json(request)
        self.shared_memory.register(request.path_params["region"], payload.get("key"), payload.get("offset", 0),
                                    payload.get("byte_size"))
        return json_response({})

    async def shm_unregister(self, request: Request) -> Response:
        await self._small_json(request)
        self.shared_memory.unregister(request.path_params.get("region"))
        return json_response({})

    def _version(self, request: Request):
        entry = self.table.entry(request.path_params["name"])
        return entry, entry.resolve(parse_version(request.path_params.get("version")))

    async def model_metadata(self, request: Request) -> Response:
        entry, loaded = self._version(request)
        model = loaded.model
        versions = [str(model.version)] if "version" in request.path_params else [str(v) for v in sorted(entry.versions)]
        return json_response({"name": entry.name, "versions": versions, "platform": model.config.platform,
                              "inputs": [t.metadata() for t in model.inputs],
                              "outputs": [t.metadata() for t in model.outputs]})

    async def model_ready(self, request: Request) -> Response:
        entry, loaded = self._version(request)
        return json_response({"name": entry.name, "version": str(loaded.model.version), "ready": True})

    async def model_config(self, request: Request) -> Response:
        entry, loaded = self._version(request)
        return json_response(loaded.model.config.json)

    async def model_stats(self, request: Request) -> Response:
        entry = self.table.entry(request.path_params["name"])
        if "version" in request.path_params:
            versions = [entry.resolve(parse_version(request.path_params["version"]))]
        else:
            versions = [entry.versions[v] for v in sorted(entry.versions)]
        return json_response({"model_stats": [v.stats.json() for v in versions]})

    async def all_stats(self, request: Request) -> Response:
        return json_response({"model_stats": [v.stats.json() for e in self.table.entries.values()
                                              for _, v in sorted(e.versions.items())]})

    async def repository_index(self, request: Request) -> Response:
        await self._small_json(request)
        return json_response(await self.repository_index_entries())

    async def repository_index_entries(self) -> list[dict[str, str]]:
        """Models on disk or loaded: one entry per loaded version, else the model's state and reason."""
        on_disk = await asyncio.to_thread(self.table.folder.model_names)
        index = []
        for name in sorted(set(on_disk) | set(self.table.entries)):
            entry = self.table.entries.get(name)
            if entry is None:
                index.append({"name": name, "state": "UNAVAILABLE", "reason": "not loaded"})
            elif entry.versions:
                index += [{"name": name, "version": str(v), "state": "READY", "reason": ""} for v in sorted(entry.versions)]
            else:
                index.append({"name": name, "state": entry.state, "reason": entry.reason})
        return index

    async def load(self, request: Request) -> Response:
        payload = await self._small_json(request)
        parameters = payload.get("parameters") or {}
        if not isinstance(parameters, dict) or parameters:
            raise BadRequest("load parameters (config or file overrides) are not supported; change the files in "
                             "the model repository and load again")
        await self.table.load(request.path_params["name"])
        return json_response({})

    async def unload(self, request: Request) -> Response:
        await self._small_json(request)
        await self.table.unload(request.path_params["name"])
        return json_response({})

    async def _small_json(self, request: Request) -> dict[str, Any]:
        body = await read_body(request.receive, RequestHeaders(request.scope["headers"]), 64 * 1024)
        return parse_json_object(body) if body.strip() else {}

    async def prometheus(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def classify(self, request: Request) -> Response:
        started = perf_counter()
        entry = self.table.entry(request.path_params["name"])
        version = parse_version(request.path_params.get("version"))
        metrics = self.metrics.for_model(entry.name)
        status = 200
        loaded: LoadedVersion | None = None
        classified = None
        try:
            body = await read_body(request.receive, RequestHeaders(request.scope["headers"]),
                                   self.settings.max_body_bytes)
            loaded = entry.resolve(version)  # whose statistics a failure counts against
            classified = await classify_upload(request, body, entry, version, self.settings)
            loaded = classified.loaded
            return json_response(classified.result)
        except ServingError as error:
            status = error.status
            raise
        finally:
            elapsed = perf_counter() - started
            metrics.outcome(status).inc()
            metrics.classify_latency.observe(elapsed)
            if loaded is not None:  # counted as /infer requests are (Triton's statistics extension)
                if classified is not None and status < 400:
                    loaded.stats.record_success(int(elapsed * 1e9), classified.timing)
                else:
                    loaded.stats.record_failure(int(elapsed * 1e9))

    async def infer_fallback(self, request: Request) -> Response:
        # POSTs are taken by the fast path in __call__; this route exists so other methods get 405.
        raise NotFound(f"no endpoint {request.method} {request.url.path}")


def _http_error(status: int, message: str) -> ServingError:
    error = ServingError(message)
    error.status = status
    return error


def create_app(settings: ServeSettings | None = None, **overrides: Any) -> ServingApp:
    """The ASGI app for ``settings`` (or ``ServeSettings(**overrides)``); models load at startup."""
    return ServingApp(settings or ServeSettings(**overrides))
