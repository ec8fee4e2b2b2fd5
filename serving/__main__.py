"""``python -m serving --model-repository MODEL_REPO [--host] [--port] [--device] ...``

Flags override ``CNNSPEC_SERVE_*`` environment variables, which override the defaults
(see serving/settings.py). ``cnnspec serve MODEL_REPO`` starts the same server.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from pydantic import ValidationError

from .errors import ServingError
from .settings import ServeSettings


def parse_args(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line flags -> settings overrides (only the flags given)."""
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--model-repository", help="model repository written by `cnnspec export`")
    add("--host", help="interface to bind (default 127.0.0.1)")
    add("--port", type=int, help="TCP port (default 8000)")
    add("--grpc-port", type=int, help="also serve the V2 gRPC API on this port (default: off)")
    add("--device", choices=["cpu", "cuda"], help="cuda needs onnxruntime-gpu (default cpu)")
    add("--intra-op-threads", type=int, help="onnxruntime threads per model instance (default 2)")
    add("--max-batch-size", type=int, help="override config.pbtxt's max_batch_size")
    add("--max-queue-delay-us", type=int, help="override dynamic_batching.max_queue_delay_microseconds")
    add("--max-body-bytes", type=int, help="request body limit, also after decompression (default 8 MiB)")
    add("--auth-token", help="require 'Authorization: Bearer TOKEN' (prefer CNNSPEC_SERVE_AUTH_TOKEN)")
    add("--watch", action="store_true", default=None, help="reload models whose files change")
    add("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    args = vars(parser.parse_args(argv))
    return {key: value for key, value in args.items() if value is not None}


def settings_from(overrides: dict[str, Any]) -> ServeSettings:
    """Build settings, turning pydantic's validation errors into one readable ServingError."""
    try:
        return ServeSettings(**overrides)
    except ValidationError as error:
        problems = "; ".join(_problem(e) for e in error.errors())
        raise ServingError(f"invalid server settings: {problems}") from None


def _problem(error: dict[str, Any]) -> str:
    """One pydantic error as ``name: message``, naming the flag and variable for a missing value."""
    name = ".".join(map(str, error["loc"])) or "settings"
    if error["type"] == "missing":
        return (f"{name} is required (--{name.replace('_', '-')} or "
                f"CNNSPEC_SERVE_{name.upper()})")
    return f"{name}: {error['msg']}"


def main(argv: Sequence[str] | None = None) -> int:
    from .server import serve

    try:
        serve(settings_from(parse_args(argv)))
    except ServingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
