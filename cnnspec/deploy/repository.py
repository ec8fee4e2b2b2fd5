"""Writing and reading a Triton/KServe-style model repository.

Layout (what Triton Inference Server loads unchanged)::

    MODEL_REPO/
      <name>/
        config.pbtxt          inference.ModelConfig in protobuf text format
        labels.txt            one class label per line, output index order
        <version>/model.onnx  versions are positive integers; several may sit side by side

Writes are atomic. A new model is assembled in a hidden temporary folder inside MODEL_REPO
(``.cnnspec-tmp-*``) and renamed to ``<name>`` in one step; a new version of an existing model is
assembled the same way and renamed to ``<name>/<version>``, after which ``config.pbtxt`` and
``labels.txt`` are replaced atomically (temp file + rename). A reader therefore sees either the old
repository or the new one, never a half-written model, and existing versions are never touched.
Readers (Triton, ``serving/``) must ignore entries whose names start with a dot.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from ..errors import CnnspecError, did_you_mean
from .files import atomic_write_bytes

MODEL_FILENAME = "model.onnx"
CONFIG_FILENAME = "config.pbtxt"
LABELS_FILENAME = "labels.txt"
TEMP_PREFIX = ".cnnspec-tmp-"
#: a model name is a plain folder name (no path, no hidden temporaries); export and serving share it
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")
#: a version folder: a positive integer without leading zeros (so "7" and "007" cannot both be 7)
VERSION_PATTERN = re.compile(r"[1-9][0-9]{0,17}")


class RepositoryError(CnnspecError):
    """A model repository cannot be written or read, or holds no such model/version."""


def render_labels(labels: Sequence[str]) -> str:
    """labels.txt: one label per line, in output order (Triton's classification extension)."""
    for label in labels:
        if "\n" in label or "\r" in label:
            raise RepositoryError(f"label {label!r} contains a line break; labels.txt holds one label per line")
    return "".join(f"{label}\n" for label in labels)


def check_name(name: str) -> str:
    """Model names become folder names: up to 128 letters, digits, '_', '-', '.', not starting with '.'."""
    if not NAME_PATTERN.fullmatch(name or ""):
        raise RepositoryError(
            f"invalid model name {name!r}: use up to 128 letters, digits, '_', '-' and '.', not starting with '.'")
    return name


def versions(model_dir: Path) -> list[int]:
    """The numeric version folders of a model, ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and VERSION_PATTERN.fullmatch(p.name))


def next_version(repo: Path, name: str) -> int:
    """The default version of a new export: one more than the highest existing version, else 1."""
    existing = versions(Path(repo) / name)
    return existing[-1] + 1 if existing else 1


def models(repo: Path) -> list[str]:
    """Model folders of a repository (those holding a config.pbtxt or a version folder)."""
    repo = Path(repo)
    if not repo.is_dir():
        return []
    return sorted(p.name for p in repo.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and ((p / CONFIG_FILENAME).is_file() or versions(p)))


def _prepare_repo(repo: Path, create: bool) -> None:
    """Prove the repository folder is (or can be created) writable, with a clear error if not;
    create it only when ``create``. The probe is a temporary folder, removed at once."""
    try:
        if repo.exists() and not repo.is_dir():
            raise RepositoryError(f"model repository {repo} exists but is not a folder")
        if not repo.exists():
            ancestor = next(p for p in [repo, *repo.parents] if p.exists())
            if not ancestor.is_dir():
                raise RepositoryError(f"cannot create model repository {repo}: {ancestor} is not a folder")
            if not os.access(ancestor, os.W_OK | os.X_OK):
                raise RepositoryError(f"cannot create model repository {repo}: {ancestor} is not writable")
            if not create:
                return
            repo.mkdir(parents=True, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=repo))
    except RepositoryError:
        raise
    except OSError as exc:
        raise RepositoryError(f"cannot write to model repository {repo}: {exc.strerror or exc}") from None


def check_target(repo: str | Path, name: str, version: int | None, *, create: bool = False) -> int:
    """Fail early, before any work, if ``repo/name/version`` cannot be written; return the version
    that will be written (``next_version`` when ``version`` is None)."""
    repo = Path(repo)
    check_name(name)
    _prepare_repo(repo, create)
    model_dir = repo / name
    if model_dir.exists() and not model_dir.is_dir():
        raise RepositoryError(f"{model_dir} exists but is not a model folder")
    version = next_version(repo, name) if version is None else version
    if version < 1:
        raise RepositoryError(f"model versions are positive integers; got --version {version}")
    if (model_dir / str(version)).exists():
        raise RepositoryError(
            f"{model_dir / str(version)} already exists; versions are never overwritten "
            f"(omit --version to write version {next_version(repo, name)})")
    return version


def write_model(
    repo: str | Path, name: str, version: int | None, model_bytes: bytes, *, config_text: str,
    labels_text: str,
) -> Path:
    """Add ``model_bytes`` as ``repo/name/version/model.onnx`` with its config and labels, atomically.

    ``version=None`` takes ``next_version``. An existing version is never overwritten. Returns the
    path of the written model.onnx."""
    repo = Path(repo)
    version = check_target(repo, name, version, create=True)
    model_dir = repo / name
    staging = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=repo))
    try:
        if model_dir.is_dir():
            _add_version(staging, model_dir, version, model_bytes, config_text, labels_text)
        else:
            _new_model(staging, model_dir, version, model_bytes, config_text, labels_text)
    except OSError as exc:
        raise RepositoryError(f"cannot write {model_dir / str(version)}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return model_dir / str(version) / MODEL_FILENAME


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _new_model(staging: Path, model_dir: Path, version: int, model_bytes: bytes, config: str, labels: str) -> None:
    """Assemble the whole model folder in ``staging`` and rename it to ``model_dir`` in one step."""
    built = staging / "model"
    (built / str(version)).mkdir(parents=True)
    _write(built / str(version) / MODEL_FILENAME, model_bytes)
    _write(built / CONFIG_FILENAME, config.encode())
    _write(built / LABELS_FILENAME, labels.encode())
    os.rename(built, model_dir)


def _add_version(staging: Path, model_dir: Path, version: int, model_bytes: bytes, config: str, labels: str) -> None:
    """Rename a complete version folder into place, then replace config and labels atomically."""
    built = staging / str(version)
    built.mkdir()
    _write(built / MODEL_FILENAME, model_bytes)
    os.rename(built, model_dir / str(version))
    atomic_write_bytes(model_dir / CONFIG_FILENAME, config.encode())
    atomic_write_bytes(model_dir / LABELS_FILENAME, labels.encode())


def find_model(repo: str | Path, name: str | None = None, version: int | None = None) -> Path:
    """The model.onnx of ``name`` (default: the only model) at ``version`` (default: the highest)."""
    repo = Path(repo)
    available = models(repo)
    if name is None:
        if len(available) != 1:
            listing = ", ".join(available) or "none"
            raise RepositoryError(f"{repo} holds {len(available)} models ({listing}); choose one with --model NAME")
        name = available[0]
    if name not in available:
        hint = did_you_mean(name, available)
        raise RepositoryError(
            f"no model '{name}' in repository {repo} (models: {', '.join(available) or 'none'})"
            + (f"; {hint}" if hint else ""))
    found = versions(repo / name)
    if version is None:
        if not found:
            raise RepositoryError(f"model '{name}' in {repo} has no version folders")
        version = found[-1]
    path = repo / name / str(version) / MODEL_FILENAME
    if not path.is_file():
        raise RepositoryError(
            f"model '{name}' has no version {version} in {repo} (versions: {', '.join(map(str, found)) or 'none'})")
    return path
