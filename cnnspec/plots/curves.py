"""Training curves of a run: loss and accuracy per epoch, train and eval, from metrics.jsonl."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .canvas import EVAL_COLOR, TRAIN_COLOR, new_figure, png_path, save_png
from ..errors import UsageError

CURVES_PIXELS = (1100, 440)
"""Training-curve figure, width x height in pixels (two panels side by side)."""


REQUIRED_METRICS = ("epoch", "train_loss", "train_accuracy")
OPTIONAL_METRICS = ("eval_loss", "eval_accuracy")


def load_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of RUN_DIR/metrics.jsonl, sorted by epoch.

    A resumed run may append an epoch again; the last record of an epoch wins. Missing or null
    eval values become NaN (drawn as gaps). Any unreadable line is reported with its number.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = f"not a run directory: {run_dir} is a file" if run_dir.exists() else f"no run directory at {run_dir}"
        raise UsageError(what, ["a run directory is written by `cnnspec train SPEC --out RUN_DIR`"])
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise UsageError(f"no metrics.jsonl in {run_dir}", ["`cnnspec train` writes it after the first epoch; is this a run directory?"])
    by_epoch: dict[int, dict[str, Any]] = {}
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        if raw.strip():
            record = _parse_metrics_line(path, number, raw)
            by_epoch[record["epoch"]] = record
    if not by_epoch:
        raise UsageError(f"no epoch recorded yet: {path} is empty", ["plot again after the first epoch"])
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def _parse_metrics_line(path: Path, number: int, raw: bytes) -> dict[str, Any]:
    """One JSON object with numeric metrics; raise a UsageError naming ``path:number`` otherwise."""
    where = f"{path}:{number}: error"
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{where}: not UTF-8 text; metrics.jsonl is corrupt") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); metrics.jsonl is corrupt",
                         ["each line must be one JSON object, e.g. {\"epoch\": 1, \"train_loss\": 0.2, ...}"]) from None
    if not isinstance(record, dict):
        raise UsageError(f"{where}: expected a JSON object per line, got {type(record).__name__}")
    missing = [key for key in REQUIRED_METRICS if key not in record]
    if missing:
        raise UsageError(f"{where}: missing {', '.join(repr(k) for k in missing)}",
                         ["each line needs " + ", ".join(REQUIRED_METRICS) + " (and eval_loss, eval_accuracy)"])
    if not isinstance(record["epoch"], int) or isinstance(record["epoch"], bool):
        raise UsageError(f"{where}: 'epoch' must be a whole number, got {record['epoch']!r}")
    for key in REQUIRED_METRICS[1:] + OPTIONAL_METRICS:
        value = record.get(key)
        if value is None and key in OPTIONAL_METRICS:
            record[key] = math.nan
        elif not isinstance(value, (int, float)) or isinstance(value, bool):
            raise UsageError(f"{where}: '{key}' must be a number, got {value!r}")
    return record


def _spec_name(run_dir: Path) -> str | None:
    """The ``name:`` of RUN_DIR/spec.yaml, read without validating (a title only)."""
    import yaml

    try:
        data = yaml.safe_load((run_dir / "spec.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return str(data["name"]) if isinstance(data, dict) and "name" in data else None


def plot_curves(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Draw loss and accuracy per epoch (train and eval) side by side; return the PNG path.

    Default output: RUN_DIR/curves.png, CURVES_PIXELS in size.
    """
    run_dir = Path(run_dir)
    records = load_metrics(run_dir)
    output = png_path(output, run_dir / "curves.png")
    figure = new_figure(CURVES_PIXELS)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    epochs = [record["epoch"] for record in records]
    _draw_metric(loss_axes, epochs, records, "loss", scale=1.0)
    loss_axes.set(title="Loss", ylabel="cross-entropy loss (mean per image)")
    _draw_metric(accuracy_axes, epochs, records, "accuracy", scale=100.0)
    accuracy_axes.set(title="Accuracy", ylabel="accuracy (%)")
    _mark_best(accuracy_axes, epochs, [100.0 * record["eval_accuracy"] for record in records])
    name = _spec_name(run_dir) or run_dir.name
    run = f"  ·  run {run_dir.resolve().name}" if run_dir.resolve().name != name else ""
    figure.suptitle(f"{name}: training curves, {len(epochs)} epoch{'s' * (len(epochs) != 1)}{run}", fontsize=13)
    return save_png(figure, output)


def _draw_metric(axes: Any, epochs: list[int], records: list[dict[str, Any]], metric: str, scale: float) -> None:
    """Train and eval curves of one metric, with whole-number epoch ticks."""
    from matplotlib.ticker import MaxNLocator

    for split, color, style in (("train", TRAIN_COLOR, "-"), ("eval", EVAL_COLOR, "--")):
        values = [scale * record[f"{split}_{metric}"] for record in records]
        if not all(math.isnan(v) for v in values):
            axes.plot(epochs, values, style, marker="o", color=color, label=split, linewidth=2, markersize=5)
    axes.set_xlabel("epoch")
    if len(epochs) <= 15:
        axes.set_xticks(epochs)
    else:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(epochs) == 1:
        axes.set_xlim(epochs[0] - 0.5, epochs[0] + 0.5)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best", frameon=False)


def _mark_best(axes: Any, epochs: list[int], accuracies: list[float]) -> None:
    """Circle the best eval accuracy and give its value in the panel title (a label inside the
    panel would sit on top of the curves)."""
    known = [(value, epoch) for value, epoch in zip(accuracies, epochs) if not math.isnan(value)]
    if not known:
        return
    value, epoch = max(known)
    axes.plot([epoch], [value], "o", markersize=13, markerfacecolor="none", markeredgecolor=EVAL_COLOR)
    axes.set_title(f"Accuracy (best eval {value:.2f}% at epoch {epoch})")

