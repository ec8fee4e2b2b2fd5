"""Checkpoints: written atomically, loaded safely, tied to the exact spec text.

A checkpoint is a plain dict saved with ``torch.save`` and read back with
``torch.load(weights_only=True)`` (no pickle of arbitrary objects). Keys (contract, version 1):

    format            "cnnspec-checkpoint/1"
    cnnspec_version   str
    spec_name         str
    spec_text         str   the exact spec file text
    spec_hash         str   sha256 of spec_text
    model             state_dict
    optimizer         optimizer state_dict or None
    scheduler         scheduler state_dict or None
    epoch             int   epochs completed
    rng               dict  {"torch": ByteTensor, "python": tuple, "numpy": dict of tensors/ints or None,
                             "cuda": [ByteTensor] or None}  (``capture_rng`` / ``restore_rng``)
    metrics           list of per-epoch metric dicts (as in metrics.jsonl)
    best_eval_accuracy float or None
    dataset           {"name": str, "mean": [float], "std": [float], "labels": [str], "input_shape": [C, H, W]}
    train_config      dict of the resolved training options

Added by ``cnnspec train`` (version 1 readers ignore unknown keys):

    scaler            torch.amp.GradScaler state_dict (fp16 on CUDA) or None
    world_size        int   processes that trained it (DDP)

Every value is a tensor or a plain Python container of str/int/float/bool/None, which is what
``weights_only=True`` accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..deploy.files import atomic_write_bytes
from ..errors import CnnspecError

FORMAT = "cnnspec-checkpoint/1"


class CheckpointError(CnnspecError):
    """A checkpoint is missing, corrupt, not a cnnspec checkpoint, or from another spec."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Serialise ``payload`` (see the module docstring) and write it atomically."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; raise CheckpointError with a clear message."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({first})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a cnnspec checkpoint (no '{FORMAT}' format marker)")
    return payload


def capture_rng() -> dict[str, Any]:
    """Every random-number state a training step can consume, in weights_only-safe types: torch's
    CPU generator, Python's ``random``, NumPy's global generator, and each CUDA device's."""
    import random

    import torch

    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": None, "cuda": None}
    try:
        import numpy as np
    except ImportError:  # numpy is optional for cnnspec itself
        np = None
    if np is not None:
        kind, keys, position, has_gauss, cached = np.random.get_state()
        state["numpy"] = {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(position),
                          "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back the states ``capture_rng`` took (missing parts are left alone)."""
    import random

    import torch

    torch.set_rng_state(state["torch"])
    if state.get("python") is not None:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if state.get("numpy") is not None:
        import numpy as np

        saved = state["numpy"]
        np.random.set_state((saved["kind"], saved["keys"].numpy().astype(np.uint32), saved["pos"],
                             saved["has_gauss"], saved["cached_gaussian"]))
    if state.get("cuda") is not None and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete temp files that a killed ``atomic_write_bytes`` left behind (``.<name>.*.tmp``)."""
    removed = []
    for leftover in Path(folder).glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
        removed.append(leftover)
    return removed


def check_spec(payload: dict[str, Any], spec: Any, path: str | Path = "checkpoint") -> None:
    """Refuse a checkpoint whose spec hash differs from ``spec``'s."""
    if payload.get("spec_hash") != spec.hash:
        raise CheckpointError(
            f"{path} was trained from a different spec ('{payload.get('spec_name')}', hash "
            f"{str(payload.get('spec_hash'))[:12]}) than {spec.file} (hash {spec.hash[:12]}); "
            "use the spec the checkpoint was trained with, or start a new run"
        )



def load_matching_weights(model: Any, source: str | Path) -> tuple[list[str], list[str]]:
    """``--init-from``: copy into ``model`` every tensor of ``source`` (a cnnspec checkpoint, a run
    directory, or a plain state_dict file, read with weights_only=True) whose name and shape match
    the model's; returns (loaded names, skipped descriptions). Nothing matching is an error."""
    import pickle

    import torch

    path = Path(source)
    if path.is_dir():
        from .run import resolve_checkpoint

        path = resolve_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(f"--init-from: no checkpoint or run directory at {source}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"--init-from: {path} is not a readable weights file ({first})") from None
    weights = payload.get("model") if isinstance(payload, dict) and payload.get("format") == FORMAT else payload
    if isinstance(weights, dict) and isinstance(weights.get("state_dict"), dict):  # Lightning-style wrapper
        weights = weights["state_dict"]
    if not isinstance(weights, dict) or not any(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"--init-from: {path} holds no state_dict (a mapping of names to tensors)")
    own = model.state_dict()
    matched = {name: tensor for name, tensor in weights.items()
               if isinstance(tensor, torch.Tensor) and name in own and tuple(own[name].shape) == tuple(tensor.shape)}
    skipped = [f"{name} {list(tensor.shape)} (model: {list(own[name].shape)})" if name in own else f"{name} (not in the model)"
               for name, tensor in weights.items() if isinstance(tensor, torch.Tensor) and name not in matched]
    skipped += [f"{name} (not in {path.name}; keeps its initial value)" for name in own if name not in weights]
    if not matched:
        raise CheckpointError(f"--init-from: no tensor of {path} matches the model by name and shape "
                              f"({len(weights)} tensors there, {len(own)} in the model; e.g. "
                              f"{next(iter(weights))} vs {next(iter(own))})")
    with torch.no_grad():
        for name, tensor in matched.items():
            own[name].copy_(tensor)
    return sorted(matched), skipped
