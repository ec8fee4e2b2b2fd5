"""Triton's system shared memory extension: clients on this host pass tensors through POSIX shared
memory instead of the request body.

A client creates a POSIX shared memory object (``shm_open`` key such as ``/input0``, e.g. with
``tritonclient.utils.shared_memory``), registers a region of it under a name (key, offset, byte
size), then names that region, an offset in it and a byte size on an input (the server reads the
tensor from there) or an output (the server writes the result there and answers without data).

Safety, since a region is memory of another process:

- off unless the ``shared_memory`` setting is ``system``; only POSIX keys (``/`` + a plain name)
  are accepted, never paths;
- a registered region must lie inside the object (``offset + byte_size`` <= its size, checked on
  registration); every read and write is checked against the region (offset and size within it,
  and exactly the tensor's size for inputs, at least for outputs), so nothing outside the
  registered bytes is ever read or written;
- inputs are copied out of the region before they are queued, so a client changing the region
  while its request waits cannot change what the model sees;
- a region is looked up again when an output is written: after ``unregister`` its mapping is
  closed and a request still in flight gets an error instead of writing anywhere.
"""

from __future__ import annotations

import mmap
import os
import re
import stat
import threading
from dataclasses import dataclass
from typing import Any

from .errors import BadRequest, NotFound, ServingError

KEY_PATTERN = re.compile(r"/[A-Za-z0-9_.\-]{1,250}")
NAME_PATTERN = re.compile(r"[^\x00-\x1f/]{1,256}")
MAX_REGIONS = 1024


class SharedMemoryError(ServingError):
    status = 400


@dataclass
class Region:
    """A registered region: ``byte_size`` bytes from ``offset`` of the POSIX object ``key``."""

    name: str
    key: str
    offset: int
    byte_size: int
    mapping: mmap.mmap

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "offset": self.offset, "byte_size": self.byte_size}


def _shm_open(key: str) -> int:
    """``shm_open(key, O_RDWR)``; the POSIX call where CPython exposes it, else Linux's /dev/shm."""
    try:
        import _posixshmem  # what multiprocessing.shared_memory uses, without its resource tracker

        return _posixshmem.shm_open(key, os.O_RDWR, mode=0o600)
    except ImportError:  # pragma: no cover - every POSIX CPython has it
        return os.open("/dev/shm" + key, os.O_RDWR | os.O_NOFOLLOW)


class SharedMemoryRegions:
    """The registered regions, shared by the HTTP and gRPC APIs."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._regions: dict[str, Region] = {}
        self._lock = threading.Lock()

    def check_enabled(self) -> None:
        if not self.enabled:
            raise BadRequest("system shared memory is off on this server (setting shared_memory=system, "
                             "environment CNNSPEC_SERVE_SHARED_MEMORY=system, turns it on)")

    def register(self, name: Any, key: Any, offset: Any, byte_size: Any) -> None:
        self.check_enabled()
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise BadRequest(f"invalid shared memory region name {name!r}: 1-256 characters, no '/' or control "
                             "characters")
        if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
            raise BadRequest(f"invalid shared memory key {key!r}: a POSIX shared memory name, '/' followed by "
                             "letters, digits, '_', '.' or '-' (e.g. '/input0'), never a path")
        for label, value, least in (("offset", offset, 0), ("byte_size", byte_size, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or not least <= value < 2**62:
                raise BadRequest(f"shared memory region '{name}': {label} must be an integer >= {least}, got {value!r}")
        with self._lock:
            if name in self._regions:
                raise BadRequest(f"shared memory region '{name}' is already registered; unregister it first")
            if len(self._regions) >= MAX_REGIONS:
                raise BadRequest(f"at most {MAX_REGIONS} shared memory regions can be registered")
            self._regions[name] = self._map(name, key, offset, byte_size)

    def _map(self, name: str, key: str, offset: int, byte_size: int) -> Region:
        try:
            fd = _shm_open(key)
        except FileNotFoundError:
            raise NotFound(f"shared memory key '{key}' does not exist; create it (shm_open) before registering "
                           f"region '{name}'") from None
        except OSError as error:
            raise BadRequest(f"cannot open shared memory key '{key}': {error.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise BadRequest(f"shared memory key '{key}' is not a shared memory object")
            if offset + byte_size > info.st_size:
                raise BadRequest(f"shared memory region '{name}': offset {offset} + byte_size {byte_size} = "
                                 f"{offset + byte_size} runs past the end of '{key}' ({info.st_size} bytes)")
            mapping = mmap.mmap(fd, offset + byte_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        return Region(name, key, offset, byte_size, mapping)

    def unregister(self, name: str | None = None) -> None:
        """Unregister ``name``, or every region when ``name`` is empty."""
        self.check_enabled()
        with self._lock:
            if name:
                region = self._regions.pop(name, None)
                if region is None:
                    raise NotFound(f"no shared memory region '{name}' is registered")
                regions = [region]
            else:
                regions, self._regions = list(self._regions.values()), {}
        for region in regions:
            region.mapping.close()

    def status(self, name: str | None = None) -> list[dict[str, Any]]:
        self.check_enabled()
        with self._lock:
            if name:
                if name not in self._regions:
                    raise NotFound(f"no shared memory region '{name}' is registered")
                return [self._regions[name].status()]
            return [r.status() for _, r in sorted(self._regions.items())]

    def close(self) -> None:
        with self._lock:
            regions, self._regions = list(self._regions.values()), {}
        for region in regions:
            region.mapping.close()

    def _span(self, tensor: str, name: Any, offset: Any, byte_size: Any) -> tuple[Region, int]:
        self.check_enabled()
        if not isinstance(name, str):
            raise BadRequest(f"{tensor}: shared_memory_region must be a region name, got {name!r}")
        region = self._regions.get(name)
        if region is None:
            raise BadRequest(f"{tensor}: no shared memory region '{name}' is registered")
        for label, value in (("shared_memory_offset", offset), ("shared_memory_byte_size", byte_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise BadRequest(f"{tensor}: {label} must be a non-negative integer, got {value!r}")
        if offset + byte_size > region.byte_size:
            raise BadRequest(f"{tensor}: shared_memory_offset {offset} + shared_memory_byte_size {byte_size} runs "
                             f"past the end of region '{name}' ({region.byte_size} bytes)")
        return region, region.offset + offset

    def read(self, tensor: str, name: Any, offset: Any, byte_size: Any) -> bytes:
        """A copy of ``byte_size`` bytes at ``offset`` of region ``name`` (checked against the region)."""
        region, start = self._span(tensor, name, offset, byte_size)
        return region.mapping[start:start + byte_size]

    def write(self, tensor: str, name: Any, offset: Any, byte_size: Any, data: bytes) -> None:
        """Write ``data`` at ``offset`` of region ``name``; it must fit in ``byte_size`` and the region."""
        region, start = self._span(tensor, name, offset, byte_size)
        if len(data) > byte_size:
            raise BadRequest(f"{tensor}: the output is {len(data)} bytes but shared_memory_byte_size is {byte_size}")
        with self._lock:
            if self._regions.get(name) is not region:  # unregistered while the request ran
                raise BadRequest(f"{tensor}: shared memory region '{name}' was unregistered")
            region.mapping[start:start + len(data)] = data
