"""The one loader of a trained run: a run directory or checkpoint file -> ``TrainedRun``.

Export, the pictures and anything else that uses a trained model load it here, so every consumer
gets the same checks: the checkpoint is read with ``weights_only=True``, its spec is rebuilt from
the checkpoint's own ``spec_text`` (which must hash to its ``spec_hash``) and must equal the run
directory's ``spec.yaml`` (and a ``--spec`` file when one is given), the model must fit in memory,
and the weights must fit the spec exactly. ``TrainedRun`` then answers what a consumer asks of a
run: the spec, the eval-mode model, the labels, the dataset and its normalisation, the metrics.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checkpoint import CheckpointError, check_spec, load_checkpoint

if TYPE_CHECKING:
    from ..analysis import Analysis
    from ..compile import CompiledModel
    from ..spec.model import Spec

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


@dataclass(frozen=True)
class TrainedRun:
    """A trained model rebuilt from one checkpoint (keys in checkpoint.py), in eval mode."""

    checkpoint: Path
    payload: dict[str, Any]
    spec: Spec
    analysis: Analysis
    model: CompiledModel

    @property
    def dataset(self) -> dict[str, Any]:
        """The checkpoint's dataset description: name, mean, std, labels, input_shape."""
        return dict(self.payload.get("dataset") or {})

    @property
    def dataset_name(self) -> str | None:
        return self.dataset.get("name") or None

    @property
    def data_dir(self) -> str | None:
        """Where the training data was (absolute for runs of this version; older runs recorded it
        relative to the directory training ran from)."""
        return (self.payload.get("train_config") or {}).get("data_dir")

    @property
    def mean(self) -> tuple[float, ...]:
        """The normalisation's mean, one value per input channel: x' = (pixel / 255 - mean_c) / std_c."""
        return self._per_channel("mean", 0.0)

    @property
    def std(self) -> tuple[float, ...]:
        """The normalisation's standard deviation, one value per input channel."""
        return self._per_channel("std", 1.0)

    def _per_channel(self, key: str, default: float) -> tuple[float, ...]:
        channels = int(self.spec.input.channels)
        values = [float(v) for v in self.dataset.get(key) or [default]]
        if len(values) == 1:
            return (values[0],) * channels
        if len(values) != channels:
            raise CheckpointError(f"{self.checkpoint}: the dataset's {key} has {len(values)} values for a "
                                  f"{channels}-channel input")
        return tuple(values)

    @property
    def labels(self) -> list[str]:
        """Class names: the dataset's, else the spec's, else "0".."K-1"."""
        classes = int(self.analysis.output_shape[0])
        labels = self.dataset.get("labels") or self.spec.labels or [str(i) for i in range(classes)]
        return [str(label) for label in labels]

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """The per-epoch records up to this checkpoint (as in metrics.jsonl)."""
        return [record for record in self.payload.get("metrics") or [] if isinstance(record, dict)]

    @property
    def epoch(self) -> int | None:
        """Epochs completed when this checkpoint was written."""
        epoch = self.payload.get("epoch")
        return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None

    @functools.cached_property
    def test_figures(self) -> dict[str, Any] | None:
        """The run's test.json when it was computed on this very checkpoint (a run with a
        validation split evaluates best.pt on the test split once, at the end), else None."""
        path = self.checkpoint.parent / "test.json"
        try:
            figures = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if (isinstance(figures, dict) and figures.get("checkpoint") == self.checkpoint.name
                and figures.get("epoch") == self.epoch and isinstance(figures.get("test_accuracy"), (int, float))):
            return figures
        return None

    @property
    def eval_split(self) -> str:
        """Which split ``eval_accuracy`` is measured on: "test" or "val"."""
        if self.test_figures is not None:
            return "test"
        split = self.metrics[-1].get("eval_split") if self.metrics else None
        return split if split in ("test", "val") else "test"

    @property
    def eval_accuracy(self) -> float | None:
        """The accuracy this checkpoint reports: test.json's when it belongs to this checkpoint,
        else its last metrics entry's (the test split without a validation split, else the
        validation split), else the recorded best."""
        figures = self.test_figures
        value = figures["test_accuracy"] if figures else (self.metrics[-1].get("eval_accuracy") if self.metrics else None)
        if value is None:
            value = self.payload.get("best_eval_accuracy")
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    def caption(self) -> str:
        """'best.pt, epoch 3, test accuracy 98.9%, dataset mnist' (or val accuracy) (what is known of it)."""
        parts = [self.checkpoint.name]
        if self.epoch is not None:
            parts.append(f"epoch {self.epoch}")
        if self.eval_accuracy is not None:
            parts.append(f"{self.eval_split} accuracy {100 * self.eval_accuracy:.2f}%")
        if self.dataset_name:
            parts.append(f"dataset {self.dataset_name}")
        return ", ".join(parts)


def load_run(path: str | Path, spec_file: str | Path | None = None, *, command: str = "load",
             batch_size: int = 1) -> TrainedRun:
    """Load a checkpoint, rebuild its spec from the stored text, refuse mismatched specs and
    models that cannot fit ``command`` at ``batch_size`` (resources.check_fits), load the weights."""
    from ..analysis import analyze
    from ..resources import check_fits

    checkpoint = resolve_checkpoint(path)
    payload = load_checkpoint(checkpoint)
    spec = _stored_spec(payload, checkpoint, spec_file)
    analysis = analyze(spec)
    check_fits(analysis, command, batch_size)  # before the module exists
    return TrainedRun(checkpoint, payload, spec, analysis, _load_model(spec, analysis, payload, checkpoint))


def _stored_spec(payload: dict[str, Any], checkpoint: Path, spec_file: str | Path | None) -> Spec:
    """The checkpoint's own spec, checked against its hash, the run's spec.yaml and ``spec_file``."""
    from ..spec.model import load_spec, parse_spec

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
    return spec


def _load_model(spec: Spec, analysis: Analysis, payload: dict[str, Any], checkpoint: Path) -> CompiledModel:
    from ..compile import CompiledModel

    model = CompiledModel(spec, analysis)
    try:
        model.load_state_dict(payload["model"], strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0:2]
        raise CheckpointError(f"the weights in {checkpoint} do not fit spec '{spec.name}': {' '.join(first)}") from None
    return model.eval()
