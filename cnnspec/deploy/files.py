"""Atomic file writes: readers see the old file or the new one, never half of one."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

NEW_FILE_MODE = 0o666
"""Asked of the kernel for every new file, which removes the umask's bits (0644 under umask 022),
exactly as ``open(path, "w")`` does."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``: readers see
    the old file or the new one, never half of one. The file gets the mode the umask allows
    (``tempfile.mkstemp`` would make every file 0600, unreadable to a server running as another user)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new, exclusively created ``.<name>.<random>.tmp`` beside ``path`` (O_EXCL: never an
    existing file or a planted symlink), opened for writing."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, NEW_FILE_MODE), tmp
        except FileExistsError:  # 48 random bits collided: draw again
            continue
