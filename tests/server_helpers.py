"""A real `python -m serving` process on 127.0.0.1 for the protocol tests (HTTP and gRPC)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx

from conftest import REPO_ROOT


@dataclass
class Server:
    port: int
    repo: Path
    process: subprocess.Popen
    grpc_port: int | None = None
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"http://{self.url}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_ready(base: str, process: subprocess.Popen, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{process.stdout.read()}")
        try:
            if httpx.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become ready in time")


@contextmanager
def running_server(repo: Path, env: dict[str, str] | None = None, args: list[str] = (),
                   grpc: bool = False) -> Iterator[Server]:
    """Start the server on free ports, wait until ready; on exit SIGTERM it and check it stopped cleanly
    (exit 0, no traceback in its output, which ``Server.log`` then holds)."""
    port = free_port()
    grpc_port = free_port() if grpc else None
    command = [sys.executable, "-m", "serving", "--model-repository", str(repo), "--port", str(port),
               "--log-level", "warning", *args]
    if grpc_port is not None:
        command += ["--grpc-port", str(grpc_port)]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, **(env or {})},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server = Server(port, repo, process, grpc_port)
    try:
        wait_ready(server.base, process)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        output = process.stdout.read()
        server.log.append(output)
        assert code == 0, output  # graceful shutdown: SIGTERM drains and exits cleanly
        assert "Traceback" not in output, output


# --- Triton statistics: the invariants perf_analyzer relies on ------------------------------------

STAT_KEYS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


def _counts(stats: dict) -> dict[str, int]:
    """Flatten one ModelStatistics (HTTP JSON, or gRPC as_json where uint64 are strings) to ints."""
    inference = stats.get("inference_stats", {})
    flat = {"inference_count": int(stats.get("inference_count", 0)),
            "execution_count": int(stats.get("execution_count", 0)),
            "last_inference": int(stats.get("last_inference", 0))}
    for key in STAT_KEYS:
        flat[f"{key}.count"] = int(inference.get(key, {}).get("count", 0))
        flat[f"{key}.ns"] = int(inference.get(key, {}).get("ns", 0))
    return flat


def assert_statistics_invariants(before: dict, after: dict, successes: int, rows: int, failures: int,
                                 max_batch_size: int, since_ms: int) -> None:
    """``before``/``after`` are one version's statistics around a load of ``successes`` successful
    requests holding ``rows`` rows in all and ``failures`` failed ones; nothing else ran meanwhile."""
    old, new = _counts(before), _counts(after)
    delta = {key: new[key] - old[key] for key in new}
    # perf_analyzer: "Server side statistics compute counts must be the same"; Triton records queue
    # and compute together with each success.
    assert delta["success.count"] == delta["queue.count"] == delta["compute_input.count"] == \
        delta["compute_infer.count"] == delta["compute_output.count"] == successes, delta
    assert delta["fail.count"] == failures, delta
    assert delta["inference_count"] == rows, delta  # inferences = batch rows, not requests
    assert 0 < delta["execution_count"] <= successes, delta
    for key in STAT_KEYS:
        if delta[f"{key}.count"]:
            assert delta[f"{key}.ns"] > 0, (key, delta)
    # each request's total time contains its queueing and its batch's compute times
    assert delta["success.ns"] >= delta["queue.ns"] + delta["compute_input.ns"] + delta["compute_infer.ns"] + \
        delta["compute_output.ns"], delta
    assert new["last_inference"] >= since_ms, (new["last_inference"], since_ms)
    # batch_stats: one entry per batch size, counts = executions of that size
    batches = after.get("batch_stats", [])
    sizes = [int(b["batch_size"]) for b in batches]
    assert sizes == sorted(set(sizes)) and all(1 <= s <= max_batch_size for s in sizes), sizes
    for batch in batches:
        counts = {int(batch[key]["count"]) for key in ("compute_input", "compute_infer", "compute_output")}
        assert len(counts) == 1, batch
    assert sum(int(b["compute_infer"]["count"]) for b in batches) == new["execution_count"], (batches, new)
    assert sum(int(b["batch_size"]) * int(b["compute_infer"]["count"]) for b in batches) == new["inference_count"]
