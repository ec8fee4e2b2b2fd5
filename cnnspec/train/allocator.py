"""The memory allocator a training process runs on: tcmalloc when the system has it.

A CPU training step frees and reallocates the same few dozen activation and gradient buffers
(megabytes each) every step. glibc's malloc hands large blocks back to the kernel and takes them
again (page faults, cold caches); tcmalloc keeps them in per-size free lists, so the next step
reuses memory that is still mapped and cached. On 2 cores that makes a SimpleCNN step about 1.3x
faster (benchmarks/train_speed.py prints it). This is what PyTorch's own CPU launcher does
(``python -m torch.backends.xeon.run_cpu --enable-tcmalloc``).

An allocator must be in place before the process allocates anything, so ``cnnspec train``
re-executes itself once with ``LD_PRELOAD`` naming the library (same PID, arguments and
environment; ``torchrun`` workers too). ``CNNSPEC_ALLOCATOR`` chooses:

- ``auto`` (default): tcmalloc if the dynamic linker finds it (Debian/Ubuntu:
  ``apt install libtcmalloc-minimal4``), else the system allocator;
- ``tcmalloc``: tcmalloc or a clear error;
- ``system``: never preload anything.

Linux only; elsewhere, and when ``LD_PRELOAD`` already names an allocator, nothing changes.
This module imports nothing heavy: it runs before torch is imported.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from typing import Callable, Sequence

from ..errors import UsageError

ENVIRONMENT = "CNNSPEC_ALLOCATOR"
CHOICES = ("auto", "tcmalloc", "system")
LIBRARIES = ("tcmalloc_minimal", "tcmalloc")
"""tcmalloc's sonames, most specific first: the minimal build has no heap profiler (and is what
Debian's libtcmalloc-minimal4 installs)."""
KNOWN_ALLOCATORS = ("tcmalloc", "jemalloc", "mimalloc")


def find_tcmalloc() -> str | None:
    """The soname of an installed tcmalloc (``libtcmalloc_minimal.so.4``), or None."""
    for name in LIBRARIES:
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def choice(environ: dict[str, str] | os._Environ[str]) -> str:
    value = environ.get(ENVIRONMENT, "auto").strip().lower() or "auto"
    if value not in CHOICES:
        raise UsageError(f"{ENVIRONMENT}={environ.get(ENVIRONMENT)!r} is not one of {', '.join(CHOICES)}",
                         [f"unset {ENVIRONMENT} for the default (auto: tcmalloc when installed)"])
    return value


def current(environ: dict[str, str] | os._Environ[str] = os.environ, maps: str = "/proc/self/maps") -> str:
    """The allocator this process runs on, as the training banner names it: the one mapped into
    it (Linux: /proc/self/maps), else the one LD_PRELOAD names, else the system's."""
    try:
        with open(maps, encoding="utf-8", errors="replace") as file:
            loaded = " ".join(line.rsplit("/", 1)[-1] for line in file if "/lib" in line)
    except OSError:
        loaded = environ.get("LD_PRELOAD", "")
    for name in KNOWN_ALLOCATORS:
        if f"lib{name}" in loaded:
            return name
    return "system malloc"


def preload_command(argv: Sequence[str], environ: dict[str, str] | os._Environ[str],
                    find: Callable[[], str | None] = find_tcmalloc,
                    platform: str = sys.platform) -> tuple[list[str], dict[str, str]] | None:
    """(argv, environment) to re-execute this process with tcmalloc preloaded, or None to go on
    as it is. ``argv`` is the interpreter's command line (``sys.orig_argv``)."""
    wanted = choice(environ)
    if wanted == "system" or not platform.startswith("linux"):
        return None
    if any(name in environ.get("LD_PRELOAD", "") for name in KNOWN_ALLOCATORS):
        return None  # already preloaded (by us before the exec, or by the user)
    library = find()
    if library is None:
        if wanted == "tcmalloc":
            raise UsageError(f"{ENVIRONMENT}=tcmalloc, but the dynamic linker finds no libtcmalloc",
                             ["install it (Debian/Ubuntu: apt install libtcmalloc-minimal4)",
                              f"or unset {ENVIRONMENT}"])
        return None
    preload = " ".join(part for part in (library, environ.get("LD_PRELOAD", "").strip()) if part)
    return [sys.executable, *argv[1:]], {**environ, "LD_PRELOAD": preload}


def reexec_with_tcmalloc() -> None:
    """Replace this process by itself with tcmalloc preloaded, when ``preload_command`` says so."""
    planned = preload_command(getattr(sys, "orig_argv", sys.argv), os.environ)
    if planned is None:
        return
    command, environment = planned
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(command[0], command, environment)
    except OSError:  # no exec here (a sandbox, a vanished interpreter): train on the system allocator
        pass
