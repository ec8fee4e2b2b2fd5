"""Loading a trained run for export: its checkpoint, spec, static analysis and torch module."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..train.checkpoint import CheckpointError, check_spec, load_checkpoint
from ..train.run import resolve_checkpoint

#: the batch the memory check assumes: verification runs up to --samples (63) images at once
EXPORT_BATCH = 64


@dataclass
class TrainedRun:
    """A checkpoint with its spec, static analysis and loaded (eval-mode) torch module."""

    checkpoint: Path
    payload: dict[str, Any]
    spec: Any
    analysis: Any
    model: Any

    @property
    def dataset(self) -> dict[str, Any]:
        """The checkpoint's dataset description: name, mean, std, labels, input_shape."""
        return dict(self.payload.get("dataset") or {})

    @property
    def labels(self) -> list[str]:
        """Class names: the dataset's, else the spec's, else "0".."K-1"."""
        classes = int(self.analysis.output_shape[0])
        labels = self.dataset.get("labels") or self.spec.labels or [str(i) for i in range(classes)]
        return [str(label) for label in labels]

    @property
    def eval_accuracy(self) -> float | None:
        """This checkpoint's eval accuracy: its last metrics entry's, else the recorded best."""
        metrics = self.payload.get("metrics") or []
        value = metrics[-1].get("eval_accuracy") if metrics and isinstance(metrics[-1], dict) else None
        if value is None:
            value = self.payload.get("best_eval_accuracy")
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def load_run(path: str | Path, spec_file: str | Path | None = None) -> TrainedRun:
    """Load a checkpoint, rebuild its spec from the stored text, refuse mismatched specs, load weights."""
    from ..analysis import analyze
    from ..resources import check_fits
    from ..spec.model import load_spec, parse_spec

    checkpoint = resolve_checkpoint(path)
    payload = load_checkpoint(checkpoint)
    text = payload.get("spec_text")
    if not isinstance(text, str) or not isinstance(payload.get("model"), dict):
        raise CheckpointError(f"{checkpoint} lacks its spec text or weights; it is not a complete cnnspec checkpoint")
    spec = parse_spec(text, f"{checkpoint}[spec]", json_syntax=text.lstrip().startswith("{"))
    if spec.hash != payload.get("spec_hash"):
        raise CheckpointError(f"{checkpoint} is corrupt: its spec text does not hash to its recorded spec_hash")
    others = [Path(spec_file)] if spec_file else []
    if (checkpoint.parent / "spec.yaml").is_file():  # the run directory's copy of the spec
        others.append(checkpoint.parent / "spec.yaml")
    for other in others:
        check_spec(payload, load_spec(other), checkpoint)
    analysis = analyze(spec)
    check_fits(analysis, "export", EXPORT_BATCH)  # before the module, the ONNX model and a session exist
    return TrainedRun(checkpoint, payload, spec, analysis, _load_model(spec, analysis, payload, checkpoint))


def _load_model(spec: Any, analysis: Any, payload: dict[str, Any], checkpoint: Path) -> Any:
    from ..compile import CompiledModel

    model = CompiledModel(spec, analysis)
    try:
        model.load_state_dict(payload["model"], strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0:2]
        raise CheckpointError(f"the weights in {checkpoint} do not fit spec '{spec.name}': {' '.join(first)}") from None
    return model.eval()
