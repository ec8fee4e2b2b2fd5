"""The memory allocator a training process runs on: tcmalloc when the system has it, else glibc's
malloc tuned to keep what it frees.

A CPU training step frees and reallocates the same few dozen activation and gradient buffers
(megabytes each) every step. glibc's malloc, as it comes, hands large blocks back to the kernel and
takes them again (page faults, cold caches); tcmalloc keeps them in per-size free lists, so the next
step reuses memory that is still mapped and cached. On 2 cores that makes a SimpleCNN step about
1.3x faster (benchmarks/train_speed.py prints it). This is what PyTorch's own CPU launcher does
(``python -m torch.backends.xeon.run_cpu --enable-tcmalloc``). Without tcmalloc, glibc's own
tunables do the same for a step: blocks under 32 MiB come from the heap rather than from fresh
mmaps, and freed heap stays mapped (``GLIBC_TUNABLES``, ``GLIBC_KEEP`` below).

An allocator must be in place before the process allocates anything, so ``cnnspec train``
re-executes itself once with ``LD_PRELOAD`` naming the library, or with ``GLIBC_TUNABLES`` set
(same PID, arguments and environment; ``torchrun`` workers too). ``CNNSPEC_ALLOCATOR`` chooses:

- ``auto`` (default): tcmalloc if the dynamic linker finds it (Debian/Ubuntu:
  ``apt install libtcmalloc-minimal4``), else tuned glibc malloc, else (another libc) the system's;
- ``tcmalloc``: tcmalloc or a clear error;
- ``glibc``: glibc malloc with ``GLIBC_KEEP`` (a no-op on another libc);
- ``system``: never change anything.

Linux only; elsewhere, and when ``LD_PRELOAD`` already names an allocator or ``GLIBC_TUNABLES``
already sets a ``glibc.malloc`` tunable (the user's choice, or ours before the exec), nothing
changes. This module imports nothing heavy: it runs before torch is imported.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from typing import Callable, Sequence

from ..errors import UsageError

ENVIRONMENT = "CNNSPEC_ALLOCATOR"
CHOICES = ("auto", "tcmalloc", "glibc", "system")
LIBRARIES = ("tcmalloc_minimal", "tcmalloc")
"""tcmalloc's sonames, most specific first: the minimal build has no heap profiler (and is what
Debian's libtcmalloc-minimal4 installs)."""
KNOWN_ALLOCATORS = ("tcmalloc", "jemalloc", "mimalloc")
GLIBC_KEEP = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"
"""glibc malloc kept from handing a step's buffers back: allocations under 32 MiB (the largest
mmap threshold glibc accepts on 64-bit) come from the heap, and up to 4 GiB of free memory at the
heap's top stays mapped. glibc as it comes adapts its mmap threshold to what is freed, and whether
that settles depends on the process: 200 SimpleCNN steps here took 18-20 ms with 1,900-2,600 page
faults each in one process, 12.6-12.8 ms with none on these tunables (tcmalloc: 12-15 ms, 6-8)."""
TUNED_GLIBC = "glibc malloc, tuned"


def find_tcmalloc() -> str | None:
    """The soname of an installed tcmalloc (``libtcmalloc_minimal.so.4``), or None."""
    for name in LIBRARIES:
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def is_glibc() -> bool:
    """Whether this process runs on GNU libc (whose dynamic loader reads ``GLIBC_TUNABLES``)."""
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError, OSError):
        return False


def choice(environ: dict[str, str] | os._Environ[str]) -> str:
    value = environ.get(ENVIRONMENT, "auto").strip().lower() or "auto"
    if value not in CHOICES:
        raise UsageError(f"{ENVIRONMENT}={environ.get(ENVIRONMENT)!r} is not one of {', '.join(CHOICES)}",
                         [f"unset {ENVIRONMENT} for the default (auto: tcmalloc when installed, else tuned glibc)"])
    return value


def current(environ: dict[str, str] | os._Environ[str] = os.environ, maps: str = "/proc/self/maps") -> str:
    """The allocator this process runs on, as the training banner names it: the one mapped into
    it (Linux: /proc/self/maps), else the one LD_PRELOAD names, else glibc's as tuned by
    ``GLIBC_KEEP`` when the environment sets it, else the system's."""
    try:
        with open(maps, encoding="utf-8", errors="replace") as file:
            loaded = " ".join(line.rsplit("/", 1)[-1] for line in file if "/lib" in line)
    except OSError:
        loaded = environ.get("LD_PRELOAD", "")
    for name in KNOWN_ALLOCATORS:
        if f"lib{name}" in loaded:
            return name
    if GLIBC_KEEP in environ.get("GLIBC_TUNABLES", "") and is_glibc():
        return TUNED_GLIBC
    return "system malloc"


def preload_command(argv: Sequence[str], environ: dict[str, str] | os._Environ[str],
                    find: Callable[[], str | None] = find_tcmalloc,
                    platform: str = sys.platform,
                    glibc: Callable[[], bool] = is_glibc) -> tuple[list[str], dict[str, str]] | None:
    """(argv, environment) to re-execute this process on the allocator ``CNNSPEC_ALLOCATOR``
    chooses (tcmalloc preloaded, or glibc's tunables set), or None to go on as it is. ``argv`` is
    the interpreter's command line (``sys.orig_argv``)."""
    wanted = choice(environ)
    if wanted == "system" or not platform.startswith("linux"):
        return None
    if any(name in environ.get("LD_PRELOAD", "") for name in KNOWN_ALLOCATORS):
        return None  # already preloaded (by us before the exec, or by the user)
    tunables = environ.get("GLIBC_TUNABLES", "").strip(":")
    if "glibc.malloc." in tunables:
        return None  # tuned already (by us before the exec, or by the user)
    command = [sys.executable, *argv[1:]]
    library = find() if wanted in ("auto", "tcmalloc") else None
    if library is not None:
        preload = " ".join(part for part in (library, environ.get("LD_PRELOAD", "").strip()) if part)
        return command, {**environ, "LD_PRELOAD": preload}
    if wanted == "tcmalloc":
        raise UsageError(f"{ENVIRONMENT}=tcmalloc, but the dynamic linker finds no libtcmalloc",
                         ["install it (Debian/Ubuntu: apt install libtcmalloc-minimal4)",
                          f"or unset {ENVIRONMENT} (auto: tuned glibc malloc without it)"])
    if not glibc():
        return None
    return command, {**environ, "GLIBC_TUNABLES": ":".join(part for part in (tunables, GLIBC_KEEP) if part)}


def reexec_for_allocator() -> None:
    """Replace this process by itself on the allocator ``preload_command`` plans, if it plans one."""
    planned = preload_command(getattr(sys, "orig_argv", sys.argv), os.environ)
    if planned is None:
        return
    command, environment = planned
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(command[0], command, environment)
    except OSError:  # no exec here (a sandbox, a vanished interpreter): train on the allocator as it is
        pass
