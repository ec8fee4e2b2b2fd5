"""``cnnspec evaluate RUN``: how a trained model does on a test split, class by class.

It loads the run's checkpoint (best.pt, else last.pt; or a checkpoint file), predicts every image
of the test split once (fp32, no augmentation, the model's own normalisation from the checkpoint),
and writes into ``RUN/evaluation/`` (``RUN/evaluation_<dataset>/`` for another ``--dataset``)::

    report.json            accuracy, loss, per-class precision/recall/F1/support, macro and
                           weighted averages, the confusion matrix, the misclassified images shown
    predictions.csv        index,true,predicted,confidence for every test image
    confusion_matrix.png   rows true, columns predicted; colour = fraction of the true class
    misclassified.png      the most confidently wrong predictions, with true and predicted labels

Definitions (per class c, from the confusion matrix C with rows = true, columns = predicted):
precision = C[c,c] / sum_r C[r,c], recall = C[c,c] / sum_k C[c,k], F1 = 2PR / (P + R), each 0
where its denominator is 0 (scikit-learn's ``zero_division=0``); macro = the plain mean over
classes, weighted = the mean weighted by support.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    import torch

DEFAULT_MISCLASSIFIED = 32
PREDICT_BATCH = 512


def classification_report(targets: Any, predicted: Any, labels: list[str]) -> dict[str, Any]:
    """Accuracy, the confusion matrix and per-class precision/recall/F1 of integer class arrays."""
    import numpy as np

    classes = len(labels)
    targets, predicted = np.asarray(targets, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    confusion = np.bincount(targets * classes + predicted, minlength=classes * classes).reshape(classes, classes)
    hits = np.diag(confusion).astype(float)
    support = confusion.sum(axis=1).astype(float)
    chosen = confusion.sum(axis=0).astype(float)
    precision = np.divide(hits, chosen, out=np.zeros(classes), where=chosen > 0)
    recall = np.divide(hits, support, out=np.zeros(classes), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros(classes), where=both > 0)
    rows = [{"label": labels[c], "precision": float(precision[c]), "recall": float(recall[c]),
             "f1": float(f1[c]), "support": int(support[c])} for c in range(classes)]
    weights = support / max(1.0, support.sum())

    def average(values: Any, weighted: bool) -> float:
        return float((values * weights).sum() if weighted else values.mean())

    return {
        "images": int(len(targets)), "accuracy": float(hits.sum() / max(1, len(targets))),
        "classes": rows,
        "macro_avg": {name: average(v, False) for name, v in (("precision", precision), ("recall", recall), ("f1", f1))},
        "weighted_avg": {name: average(v, True) for name, v in (("precision", precision), ("recall", recall), ("f1", f1))},
        "confusion_matrix": confusion.tolist(),
    }


def most_confident_mistakes(targets: Any, predicted: Any, confidence: Any, count: int) -> list[int]:
    """Indices of wrong predictions, the most confident first (ties: lower index first)."""
    import numpy as np

    wrong = np.flatnonzero(np.asarray(targets) != np.asarray(predicted))
    order = np.lexsort((wrong, -np.asarray(confidence)[wrong]))
    return [int(i) for i in wrong[order][:count]]


def predict_logits(model: torch.nn.Module, images: torch.Tensor, normalize: Any, batch: int = 512) -> torch.Tensor:
    """fp32 logits of uint8 images, in batches, without gradients (model in eval mode)."""
    import torch

    model.eval()
    outputs = []
    with torch.inference_mode():
        for part in images.split(batch):
            outputs.append(model(normalize(part)).float().cpu())
    return torch.cat(outputs) if outputs else torch.empty(0)


@dataclass
class EvaluationResult:
    """What ``evaluate_run`` computed and wrote."""

    report: dict[str, Any]
    out_dir: Path
    written: list[Path]


def evaluate_run(source: str | Path, *, dataset: str | None = None, data_dir: str | Path | None = None,
                 out: str | Path | None = None, misclassified: int = DEFAULT_MISCLASSIFIED,
                 download: bool = False) -> EvaluationResult:
    """Evaluate the checkpoint of ``source`` (run directory or file) on a test split; write the files."""
    import torch.nn.functional as F

    from .data import Normalizer, check_spec_matches, dataset_for_spec, load_split
    from .run import load_run

    trained = load_run(source, command="evaluate", batch_size=PREDICT_BATCH)
    name = dataset or trained.dataset_name
    if not name:
        raise UsageError(f"{trained.checkpoint} does not say which dataset it was trained on", ["pass --dataset NAME"])
    folder = Path(data_dir) if data_dir is not None else Path(trained.data_dir or "data")
    info = dataset_for_spec(name, trained.spec, folder)
    check_spec_matches(trained.spec, info, tuple(trained.analysis.output_shape))
    info = replace(info, mean=trained.mean, std=trained.std)  # the model's own preprocessing, whatever the data
    labels = trained.labels
    images, targets = load_split(name, folder, train=False, download=download, input_shape=info.input_shape,
                                 classes=info.labels)
    logits = predict_logits(trained.model, images, Normalizer(info), PREDICT_BATCH)
    probabilities = logits.softmax(1)
    confidence, predicted = probabilities.max(1)
    report = classification_report(targets.numpy(), predicted.numpy(), labels)
    report = {"checkpoint": str(trained.checkpoint), "dataset": name, "split": "test",
              "loss": float(F.cross_entropy(logits, targets)) if len(targets) else float("nan"), **report}
    shown = most_confident_mistakes(targets.numpy(), predicted.numpy(), confidence.numpy(), misclassified)
    report["misclassified"] = [{"index": i, "true": labels[int(targets[i])], "predicted": labels[int(predicted[i])],
                                "confidence": float(confidence[i])} for i in shown]
    out_dir = Path(out) if out is not None else _default_out(trained.checkpoint, name, trained.dataset_name)
    written = _write(out_dir, report, targets, predicted, confidence, images[shown] if shown else images[:0],
                     shown, labels, trained)
    return EvaluationResult(report, out_dir, written)


def _default_out(checkpoint: Path, dataset: str, trained_on: str | None) -> Path:
    return checkpoint.parent / ("evaluation" if dataset == trained_on or trained_on is None else f"evaluation_{dataset}")


def _write(out_dir: Path, report: dict[str, Any], targets: Any, predicted: Any, confidence: Any, pictures: Any,
           shown: list[int], labels: list[str], trained: Any) -> list[Path]:
    from ..deploy.files import atomic_write_bytes
    from ..plots.evaluation import confusion_figure, misclassified_figure, save_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"{trained.spec.name} ({trained.caption()}) on {report['dataset']} test: accuracy {report['accuracy']:.2%}"
    paths = [out_dir / "report.json", out_dir / "predictions.csv", out_dir / "confusion_matrix.png",
             out_dir / "misclassified.png"]
    atomic_write_bytes(paths[0], (json.dumps(report, indent=2) + "\n").encode("utf-8"))
    lines = ["index,true,predicted,confidence"] + [
        f"{i},{int(t)},{int(p)},{float(c):.6f}" for i, (t, p, c) in enumerate(zip(targets, predicted, confidence))]
    atomic_write_bytes(paths[1], ("\n".join(lines) + "\n").encode("utf-8"))
    save_figure(confusion_figure(report["confusion_matrix"], labels, title), paths[2])
    wrong = [(int(targets[i]), int(predicted[i]), float(confidence[i])) for i in shown]
    save_figure(misclassified_figure(pictures.numpy(), [w[0] for w in wrong], [w[1] for w in wrong],
                                     [w[2] for w in wrong], labels,
                                     f"the {len(shown)} most confident mistakes of {len(targets):,} test images"),
                paths[3])
    return paths


def summary_line(report: dict[str, Any]) -> str:
    return (f"{report['checkpoint']} on the {report['dataset']} test split ({report['images']:,} images): "
            f"accuracy {report['accuracy']:.2%}, loss {report['loss']:.4f}")


def render_report(report: dict[str, Any]) -> Any:
    """The per-class table (rich), with the macro and weighted averages."""
    from rich.table import Table

    table = Table()
    for column in ("class", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in report["classes"]:
        table.add_row(row["label"], f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}",
                      f"{row['support']:,}")
    table.add_section()
    for name in ("macro_avg", "weighted_avg"):
        values = report[name]
        table.add_row(name.replace("_", " "), f"{values['precision']:.4f}", f"{values['recall']:.4f}",
                      f"{values['f1']:.4f}", f"{report['images']:,}")
    return table
