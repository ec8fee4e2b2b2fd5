"""The one loader of a trained run: a run directory or checkpoint file -> spec, model and what it was trained on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError, check_spec, load_checkpoint

#: what a run directory stands for, in order of preference
CHECKPOINT_NAMES = ("best.pt", "last.pt")


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or a run directory's best.pt (else last.pt)."""
    path = Path(path)
    if path.is_dir():
        for name in CHECKPOINT_NAMES:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(
            f"run directory {path} holds no checkpoint (neither best.pt nor last.pt); "
            f"train first with: cnnspec train SPEC --out {path}")
    if not path.exists():
        raise CheckpointError(f"no run directory or checkpoint at {path}")
    return path


@dataclass
class TrainedModel:
    """A model rebuilt from a checkpoint: the spec it was trained from and its weights, in eval mode."""

    path: Path
    spec: Any
    model: Any
    payload: dict[str, Any]

    @property
    def dataset(self) -> dict[str, Any]:
        return self.payload.get("dataset") or {}

    def caption(self) -> str:
        """'best.pt, epoch 3, eval accuracy 98.9%' (what is known of it)."""
        parts = [self.path.name]
        if isinstance(self.payload.get("epoch"), int):
            parts.append(f"epoch {self.payload['epoch']}")
        metrics = self.payload.get("metrics") or []
        accuracy = metrics[-1].get("eval_accuracy") if metrics and isinstance(metrics[-1], dict) else None
        if isinstance(accuracy, (int, float)):
            parts.append(f"eval accuracy {100 * accuracy:.2f}%")
        if self.dataset.get("name"):
            parts.append(f"dataset {self.dataset['name']}")
        return ", ".join(parts)


def load_trained_model(path: str | Path) -> TrainedModel:
    """Load a checkpoint safely, rebuild its model from the stored spec text and load the weights."""
    from ..compile import build_model
    from ..spec.model import parse_spec

    file = resolve_checkpoint(path)
    payload = load_checkpoint(file)
    text = payload.get("spec_text")
    if not isinstance(text, str):
        raise CheckpointError(f"no spec text in {file}; the model cannot be rebuilt")
    spec = parse_spec(text, f"{file}[spec]")
    check_spec(payload, spec, file)
    model = build_model(spec)
    try:
        model.load_state_dict(payload["model"])
    except (KeyError, RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"the weights in {file} do not fit the spec stored with them ({first})") from None
    model.eval()
    return TrainedModel(file, spec, model, payload)

