"""Service settings: one pydantic-settings object, read from flags, ``CNNSPEC_SERVE_*`` variables or tests.

Precedence: explicit values (command-line flags, ``ServeSettings(...)`` in tests) over environment
variables over the defaults below. ``command_line_flags`` derives one flag per setting from the
fields, and both command lines (``python -m serving`` with argparse, ``cnnspec serve`` with click)
build their options from it, so a setting added here is a flag of both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class ServeSettings(BaseSettings):
    """Everything the server can be told. Environment variable = ``CNNSPEC_SERVE_`` + upper-case name."""

    model_config = SettingsConfigDict(env_prefix="CNNSPEC_SERVE_", extra="forbid", protected_namespaces=())

    model_repository: Path = Field(description="Folder written by `cnnspec export` (Triton layout).")
    host: str = Field("127.0.0.1", description="Interface to bind; 0.0.0.0 exposes the service.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port; 0 picks a free one.")
    grpc_port: int | None = Field(
        None, ge=0, le=65535, description="Also serve the V2 gRPC API (inference.GRPCInferenceService) on this "
                                          "port of the same host; unset = HTTP only, 0 picks a free port.")
    device: Literal["cpu", "cuda"] = Field("cpu", description="cuda needs onnxruntime-gpu; no silent fallback.")
    intra_op_threads: int = Field(
        2, ge=0, description="onnxruntime intra-op threads per model instance (0 = onnxruntime's default, "
                             "one per physical core). 2 measured best on a 2-CPU box: equal or better at "
                             "batch 1 and ~1.5x at batch 32 against 1 thread (spinning is off either way).")
    max_batch_size: int | None = Field(None, ge=1, description="Override config.pbtxt's max_batch_size.")
    max_queue_delay_us: int | None = Field(
        None, ge=0, description="Override config.pbtxt's dynamic_batching.max_queue_delay_microseconds.")
    max_body_bytes: int = Field(8 * MIB, ge=1024, description="Limit on a request body, also after decompression.")
    max_image_pixels: int = Field(4096 * 4096, ge=1, description="Limit on an uploaded image's width x height.")
    shared_memory: Literal["off", "system"] = Field(
        "off", description="system: Triton's system shared memory extension for clients on this host (they "
                           "pass tensors in POSIX shared memory); off: refused.")
    allow_non_finite: bool = Field(False, description="Accept NaN/Inf in floating-point inputs.")
    auth_token: SecretStr | None = Field(None, description="If set, require `Authorization: Bearer <token>`.")
    metrics_public: bool = Field(False, description="Serve /metrics without the token (health probes always are).")
    watch: bool = Field(False, description="Poll the repository and (re)load models whose files changed.")
    watch_interval_s: float = Field(1.0, gt=0, description="Seconds between repository polls in watch mode.")
    header_timeout_s: float = Field(
        10.0, ge=0, description="Close a connection whose request headers are not complete this many seconds "
                                "after its first byte (408; 0 = no limit).")
    body_timeout_s: float = Field(
        30.0, ge=0, description="Close a connection whose request body has not fully arrived this many seconds "
                                "after its headers (408; a total, not an idle time; 0 = no limit). A unary "
                                "gRPC call whose message is not in by then ends with DEADLINE_EXCEEDED.")
    keep_alive_timeout_s: float = Field(5.0, gt=0, description="Close a keep-alive connection idle this long.")
    stream_idle_timeout_s: float = Field(
        60.0, ge=0, description="End a gRPC ModelStreamInfer stream with DEADLINE_EXCEEDED when no complete request "
                                "has arrived for this long and none is being answered (a stalled or forgotten "
                                "stream, also one stopped inside a message; 0 = no limit).")
    drain_timeout_s: float = Field(30.0, ge=0, description="On shutdown, wait this long for in-flight requests.")
    compress_min_bytes: int = Field(
        64 * 1024, ge=0, description="gzip/deflate a response only when the client accepts it and it is this big.")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info", description="Server log level.")
    access_log: bool = Field(False, description="Log every request (costs throughput).")


@dataclass(frozen=True)
class Flag:
    """The command-line form of one setting: ``--max-batch-size`` for ``max_batch_size``. Values are
    passed to ServeSettings as given, so its validation (ranges, secrets) is the only one."""

    setting: str
    option: str
    kind: type  # bool (an on/off switch), int, float, str or Path
    choices: tuple[str, ...] | None
    help: str
    default: Any  # None when the setting is required or unset by default
    required: bool


def command_line_flags() -> list[Flag]:
    """One Flag per ServeSettings field, in field order; a field type without a command-line form
    is an error here, not a flag that silently takes strings."""
    flags = []
    for name, field in ServeSettings.model_fields.items():
        annotation = field.annotation
        if get_origin(annotation) in (Union, type(int | None)):
            annotation, = [a for a in get_args(annotation) if a is not type(None)]
        choices = tuple(get_args(annotation)) if get_origin(annotation) is Literal else None
        kind = str if choices or annotation is SecretStr else annotation
        if kind not in (bool, int, float, str, Path):
            raise TypeError(f"ServeSettings.{name}: {field.annotation} has no command-line form")
        default = None if field.is_required() else field.default
        text = field.description or ""
        if name == "auth_token":
            text += " Prefer CNNSPEC_SERVE_AUTH_TOKEN: a flag shows in the process list."
        flags.append(Flag(name, "--" + name.replace("_", "-"), kind, choices, text, default, field.is_required()))
    return flags
