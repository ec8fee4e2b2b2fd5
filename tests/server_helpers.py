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
