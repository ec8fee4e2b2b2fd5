"""Starting the service: load the repository (failing fast with a clear message), then run uvicorn.

One process, one event loop (uvloop when installed, httptools with header and body deadlines), onnxruntime in worker threads.
Scale out with replicas behind a load balancer rather than ``uvicorn --workers``: workers that share
one listening socket lose TCP_NODELAY (uvicorn #3149) and add ~44 ms per request on small responses.
On SIGTERM/SIGINT uvicorn stops accepting, waits up to ``drain_timeout_s`` for open requests, then
the app finishes every queued batch.
"""

from __future__ import annotations

import importlib.util
import logging
import signal

from .app import ServingApp
from .metrics import Metrics
from .errors import StartupError
from .model import providers_for
from .repository import ModelTable
from .settings import ServeSettings

log = logging.getLogger("serving")


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def uvicorn_log_config() -> dict:
    """uvicorn's loggers (uvicorn.error, uvicorn.access) without handlers of their own: their records
    reach the root handler, so every line of the server has LOG_FORMAT instead of two formats.
    uvicorn.error, which carries uvicorn's every message ("Started server process"), is shown as
    uvicorn."""
    return {"version": 1, "disable_existing_loggers": False,
            "filters": {"rename": {"()": _UvicornName}},
            "loggers": {"uvicorn": {"handlers": [], "propagate": True},
                        "uvicorn.error": {"handlers": [], "propagate": True, "filters": ["rename"]},
                        "uvicorn.access": {"handlers": [], "propagate": True}}}


class _UvicornName(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.name = "uvicorn"
        return True


def local_url(host: str, port: int) -> str:
    """Where a client on this machine reaches the server: 0.0.0.0 / :: mean every interface."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def build_app(settings: ServeSettings) -> ServingApp:
    """Check the device, load every model (raising ServingError on any failure) and build the app."""
    providers_for(settings.device)
    table = ModelTable(settings, Metrics())
    table.load_all_sync()
    return ServingApp(settings, table)


def serve(settings: ServeSettings) -> None:
    """Run the server until SIGINT/SIGTERM."""
    import uvicorn

    from .http_protocol import timed_protocol  # imports uvicorn's protocol module

    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    app = build_app(settings)
    loaded = {name: sorted(e.versions) for name, e in app.table.entries.items()}
    log.info("serving %s from %s on http://%s:%d (device %s); try: curl %s/v2/health/ready",
             loaded or "no models", settings.model_repository, settings.host, settings.port, settings.device,
             local_url(settings.host, settings.port))
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, lifespan="on", log_level=settings.log_level,
        log_config=uvicorn_log_config(),
        access_log=settings.access_log, server_header=False,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http=timed_protocol(settings.header_timeout_s, settings.body_timeout_s),
        timeout_keep_alive=settings.keep_alive_timeout_s,
        timeout_graceful_shutdown=settings.drain_timeout_s or None,
        proxy_headers=False, limit_concurrency=None, backlog=2048)
    # uvicorn re-raises the SIGTERM it handled once it has shut down; a no-op handler makes that
    # re-raise harmless, so a drained, clean stop exits with status 0 (what container runtimes expect).
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    server = uvicorn.Server(config)
    try:
        server.run()
    except SystemExit as stop:  # uvicorn exits 1 (port taken) or 3 (lifespan failed) after logging why
        if stop.code not in (0, None):
            raise StartupError("the server did not start; see the error above") from None
        raise
    if not server.started:
        raise StartupError("the server did not start; see the error above")
    log.info("stopped")
