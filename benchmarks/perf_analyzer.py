"""Triton's own load tool, perf_analyzer, against the cnnspec service: concurrency sweeps over HTTP
and gRPC (unary and streaming), batch 32 and system shared memory, each of which must exit 0.

perf_analyzer reads the server's model metadata, config.pbtxt and ``/v2/models/{m}/stats`` before
and after every measurement window and aborts when the statistics disagree (e.g. "Server side
statistics compute counts must be the same"); a sweep that finishes with exit status 0 is the
proof that the service's statistics are Triton's.

Getting perf_analyzer. The binary ships in the ``perf-analyzer`` wheel on PyPI, built for glibc
2.38 and newer; on an older glibc pip only finds the empty 0.1.0 placeholder. This script
downloads the real wheel for the manylinux_2_38 platform into ``--cache`` (pip download), and
where the system's glibc is older (Debian 12 has 2.36) it fetches the C and C++ runtime of
Debian 13 (libc6, libstdc++6, libgcc-s1) with ``apt-get download`` into the same cache and starts
perf_analyzer through that runtime's dynamic loader; nothing is installed into the system. Needs
pip and, on an old glibc, apt-get and dpkg-deb (Debian or Ubuntu) with access to deb.debian.org.
The Triton SDK container (``nvcr.io/nvidia/tritonserver:<yy.mm>-py3-sdk``) has perf_analyzer too.

The service rejects non-finite inputs by design and perf_analyzer's default random data holds
NaN/Inf bit patterns, so every run passes ``--input-data zero``.

    python benchmarks/perf_analyzer.py                    # export SimpleCNN, start the service, sweep
    python benchmarks/perf_analyzer.py --install-only     # only fetch perf_analyzer, print its command
    python benchmarks/perf_analyzer.py --url 127.0.0.1:8000 --grpc-url 127.0.0.1:8001 --model NAME
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import REPO_ROOT, build_repository, free_port, server_process  # noqa: E402

DEFAULT_CACHE = Path.home() / ".cache" / "cnnspec" / "perf_analyzer"
RUNTIME_SUITE = "trixie"  # Debian 13: glibc 2.41, libstdc++ of GCC 14
RUNTIME_PACKAGES = ("libc6", "libstdc++6", "libgcc-s1")
NEEDED_GLIBC = (2, 38)
ARCHITECTURES = {"x86_64": ("x86_64", "amd64", "x86_64-linux-gnu", "ld-linux-x86-64.so.2"),
                 "aarch64": ("aarch64", "arm64", "aarch64-linux-gnu", "ld-linux-aarch64.so.1")}


def glibc_version() -> tuple[int, int]:
    name = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else ""
    try:
        major, minor = (name or "").split()[1].split(".")[:2]
        return int(major), int(minor)
    except (IndexError, ValueError):
        raise SystemExit(f"perf_analyzer needs Linux with glibc; this system reports {name!r}")


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("$ " + " ".join(command), file=sys.stderr, flush=True)
    return subprocess.run(command, check=True, **kwargs)


def fetch_wheel(cache: Path, machine: str) -> Path:
    """perf_analyzer's binary from the newest manylinux_2_38 wheel, unpacked under ``cache``."""
    binary = cache / "wheel" / "perf_analyzer" / "bin" / "perf_analyzer"
    if binary.is_file():
        return binary
    downloads = cache / "downloads"
    run([sys.executable, "-m", "pip", "download", "perf-analyzer", "--no-deps", "--only-binary=:all:",
         "--platform", f"manylinux_2_38_{machine}", "--python-version", "3.11", "--dest", str(downloads),
         "--quiet"])
    wheels = sorted(downloads.glob("perf_analyzer-*.whl"))
    if not wheels:
        raise SystemExit("pip found no perf_analyzer wheel for manylinux_2_38; use the Triton SDK container")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        member = "perf_analyzer/bin/perf_analyzer"
        if member not in wheel.namelist():
            raise SystemExit(f"{wheels[-1].name} holds no {member}")
        wheel.extract(member, cache / "wheel")
    binary.chmod(0o755)
    return binary


def fetch_runtime(cache: Path, debian_arch: str, triplet: str) -> Path:
    """Debian 13's libc6/libstdc++6/libgcc-s1 unpacked under ``cache``: the library directory."""
    libraries = cache / "runtime" / "usr" / "lib" / triplet
    if (libraries / "libc.so.6").is_file():
        return libraries
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise SystemExit(f"this glibc is older than {NEEDED_GLIBC[0]}.{NEEDED_GLIBC[1]} and there is no {tool} "
                             "to fetch a newer runtime: run on a newer system or in the Triton SDK container")
    apt = cache / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "etc"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "etc" / "sources.list").write_text(f"deb http://deb.debian.org/debian {RUNTIME_SUITE} main\n")
    options = ["-o", f"Dir::Etc::sourcelist={apt / 'etc' / 'sources.list'}", "-o", "Dir::Etc::sourceparts=-",
               "-o", f"Dir::State::Lists={apt / 'lists'}", "-o", f"Dir::Cache={apt / 'cache'}",
               "-o", f"APT::Architecture={debian_arch}", "-o", "APT::Get::List-Cleanup=0",
               "-o", "Debug::NoDropPrivs=1", "-o", "APT::Sandbox::User=root"]
    run(["apt-get", *options, "update", "-qq"])
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    run(["apt-get", *options, "download", "-qq", *RUNTIME_PACKAGES], cwd=debs)
    for deb in sorted(debs.glob("*.deb")):
        run(["dpkg-deb", "-x", str(deb), str(cache / "runtime")])
    if not (libraries / "libc.so.6").is_file():
        raise SystemExit(f"the Debian {RUNTIME_SUITE} packages hold no {libraries / 'libc.so.6'}")
    return libraries


def perf_analyzer_command(cache: Path) -> list[str]:
    """The command that starts perf_analyzer here (through a newer loader when glibc is old)."""
    machine = platform.machine()
    if machine not in ARCHITECTURES:
        raise SystemExit(f"perf_analyzer wheels exist for x86_64 and aarch64, not {machine}")
    wheel_arch, debian_arch, triplet, loader = ARCHITECTURES[machine]
    binary = fetch_wheel(cache, wheel_arch)
    if glibc_version() >= NEEDED_GLIBC:
        return [str(binary)]
    libraries = fetch_runtime(cache, debian_arch, triplet)
    system = [p for p in (f"/lib/{triplet}", f"/usr/lib/{triplet}") if Path(p).is_dir()]
    return [str(libraries / loader), "--library-path", ":".join([str(libraries), *system]), str(binary)]


# ---------------------------------------------------------------- the sweep

CASES = [
    # (label, protocol, extra perf_analyzer flags)
    ("HTTP batch 1", "http", ["--concurrency-range", "1:16:5"]),
    ("gRPC batch 1", "grpc", ["--concurrency-range", "1:16:5"]),
    ("gRPC streaming batch 1", "grpc", ["--streaming", "--concurrency-range", "16"]),
    ("HTTP batch 32", "http", ["-b", "32", "--concurrency-range", "16"]),
    ("gRPC batch 32", "grpc", ["-b", "32", "--concurrency-range", "16"]),
    ("HTTP system shared memory", "http", ["--shared-memory", "system", "--concurrency-range", "16"]),
    ("gRPC system shared memory", "grpc", ["--shared-memory", "system", "--concurrency-range", "16"]),
]


def levels(flags: list[str]) -> list[int]:
    """The concurrencies a ``--concurrency-range start:end:step`` asks for."""
    start, end, step = (flags[flags.index("--concurrency-range") + 1].split(":") + ["", ""])[:3]
    return list(range(int(start), int(end or start) + 1, int(step or 1)))


def sweep(command: list[str], model: str, urls: dict[str, str], out: Path, window_ms: int, stability: int,
          trials: int) -> int:
    """Every case; returns the number of perf_analyzer runs that did not exit 0 or left out a
    concurrency (perf_analyzer ends a sweep early, with status 0, when a level never stabilises)."""
    failures = 0
    rows = []
    for index, (label, protocol, flags) in enumerate(CASES):
        report = out / f"{index}_{protocol}.csv"
        full = [*command, "-m", model, "-u", urls[protocol], "-i", protocol, "--input-data", "zero",
                "--measurement-interval", str(window_ms), "--stability-percentage", str(stability),
                "--max-trials", str(trials), "-f", str(report), *flags]
        print(f"\n== {label}", file=sys.stderr, flush=True)
        done = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        (out / f"{index}_{protocol}.log").write_text(done.stdout)
        if done.returncode != 0 or not report.is_file():
            failures += 1
            print(done.stdout[-3000:], file=sys.stderr)
            rows.append((label, "-", f"exit {done.returncode}", "", "", ""))
            continue
        with open(report, newline="") as file:
            records = sorted(csv.DictReader(file), key=lambda r: int(r["Concurrency"]))
        for record in records:
            rows.append((label, record["Concurrency"], f"{float(record['Inferences/Second']):,.0f}",
                         f"{int(record['p50 latency']) / 1000:.2f}", f"{int(record['p99 latency']) / 1000:.2f}",
                         "exit 0"))
        missing = sorted(set(levels(flags)) - {int(r["Concurrency"]) for r in records})
        if missing:
            failures += 1
            rows.append((label, ", ".join(map(str, missing)), "not stable", "", "", "exit 0, sweep cut short"))
    print("\n| case | concurrency | inferences/s | p50 ms | p99 ms | perf_analyzer |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nCSV files and logs: {out}")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where perf_analyzer is kept")
    parser.add_argument("--install-only", action="store_true", help="fetch perf_analyzer and print its command")
    parser.add_argument("--url", help="HTTP host:port of a running service (default: start one)")
    parser.add_argument("--grpc-url", help="gRPC host:port of a running service")
    parser.add_argument("--repo", type=Path, help="model repository to serve (default: export SimpleCNN)")
    parser.add_argument("--model", default="simple_cnn")
    parser.add_argument("--window-ms", type=int, default=3000, help="perf_analyzer's --measurement-interval")
    parser.add_argument("--stability", type=int, default=20,
                        help="perf_analyzer's --stability-percentage (its default, 10, rarely holds when the load "
                             "generator shares two cores with the server)")
    parser.add_argument("--max-trials", type=int, default=20,
                        help="perf_analyzer's --max-trials: windows it may measure before a level counts as "
                             "unstable (its default, 10, once ran out at concurrency 1 here)")
    parser.add_argument("--out", type=Path, help="folder for the CSV files and logs (default: a new temporary one)")
    args = parser.parse_args()
    command = perf_analyzer_command(args.cache)
    version = subprocess.run([*command, "--version"], capture_output=True, text=True)
    print("perf_analyzer: " + " ".join(command) + (f"  ({version.stdout.strip()})" if version.returncode == 0 else ""),
          file=sys.stderr)
    if args.install_only:
        print(" ".join(command))
        return 0
    out = args.out or Path(tempfile.mkdtemp(prefix="perf_analyzer_"))
    out.mkdir(parents=True, exist_ok=True)
    if args.url:
        if not args.grpc_url:
            raise SystemExit("--url needs --grpc-url too (the sweep covers both protocols)")
        return 1 if sweep(command, args.model, {"http": args.url, "grpc": args.grpc_url}, out, args.window_ms,
                           args.stability, args.max_trials) else 0
    with tempfile.TemporaryDirectory(prefix="perf_analyzer_repo_") as tmp:
        repo, model = (args.repo, args.model) if args.repo else build_repository(Path(tmp), REPO_ROOT / "specs" / "simple_cnn.yaml")
        port, grpc_port = free_port(), free_port()
        server = [sys.executable, "-m", "serving", "--model-repository", str(repo), "--host", "127.0.0.1",
                  "--port", str(port), "--grpc-port", str(grpc_port), "--shared-memory", "system"]
        with server_process(server, port, out / "service.log"):
            failures = sweep(command, model, {"http": f"127.0.0.1:{port}", "grpc": f"127.0.0.1:{grpc_port}"},
                             out, args.window_ms, args.stability, args.max_trials)
    print(f"{len(CASES) - failures} of {len(CASES)} perf_analyzer runs exited 0", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
