"""The training options of ``cnnspec train``, their defaults, and how a run resolves them.

Options come from the command line, else the spec's ``train:`` section, else ``DEFAULTS`` (the
chapter's recipe: 3 epochs, batch 64, Adam, lr 1e-3, seed 0).

Every choice is one ``Literal`` alias here; the spec schema (``spec/types.py`` ``TrainConfig``),
the command line (``click.Choice(get_args(...))``) and the trainer all take it from here, so a
new optimiser or dataset is named once. Pure Python (the spec package imports it): no torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from ..errors import UsageError

if TYPE_CHECKING:
    from ..spec.model import Spec

DatasetName = Literal["mnist", "fashion_mnist", "cifar10", "imagefolder", "mnist_sample"]
"""The registered datasets (``data.DATASETS`` describes each)."""
OptimizerName = Literal["adam", "adamw", "sgd"]
SchedulerName = Literal["none", "cosine", "step", "onecycle"]
"""Learning-rate schedules, stepped after every batch (``optimization.make_scheduler``)."""
DeviceName = Literal["auto", "cpu", "cuda", "mps"]
PrecisionName = Literal["auto", "fp32", "bf16", "fp16"]
"""How a training step computes (``hardware.Precision``)."""

DATASET_NAMES: tuple[str, ...] = get_args(DatasetName)
OPTIMIZERS: tuple[str, ...] = get_args(OptimizerName)
SCHEDULERS: tuple[str, ...] = get_args(SchedulerName)
DEVICES: tuple[str, ...] = get_args(DeviceName)
PRECISIONS: tuple[str, ...] = get_args(PrecisionName)
MonitorName = Literal["val_loss", "val_accuracy"]
"""The validation figure that picks best.pt and drives early stopping."""
MONITORS: tuple[str, ...] = get_args(MonitorName)


@dataclass(frozen=True)
class TrainOptions:
    """The resolved options of a run (stored in checkpoints as ``train_config``)."""

    dataset: DatasetName | None = None
    data_dir: str = "data"
    epochs: int = 3
    batch_size: int = 64
    optimizer: OptimizerName = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: SchedulerName = "none"
    seed: int = 0
    device: DeviceName = "auto"
    workers: int = 0
    precision: PrecisionName = "auto"
    augment: list[dict[str, Any]] = field(default_factory=list)
    val_split: float = 0.0
    early_stopping: int | None = None
    monitor: MonitorName = "val_loss"
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    warmup_epochs: float = 0.0
    init_from: str | None = None


DEFAULTS = TrainOptions()
# On --resume these may differ from the checkpoint's options (where and how long, not what).
RESUME_MAY_CHANGE = ("epochs", "device", "workers", "data_dir", "precision")


def check_options(options: TrainOptions) -> TrainOptions:
    """Refuse combinations that cannot mean what they say."""
    if not 0.0 <= options.val_split < 1.0:
        raise UsageError(f"--val-split {options.val_split:g} is not a fraction in [0, 1)",
                         ["hold out e.g. --val-split 0.1 (10% of the training set)"])
    if options.early_stopping is not None and options.val_split == 0.0:
        raise UsageError("--early-stopping needs a validation split to watch (the test split must stay unseen)",
                         ["add --val-split 0.1, or drop --early-stopping"])
    if options.monitor not in MONITORS:
        raise UsageError(f"--monitor {options.monitor} is not one of {', '.join(MONITORS)}")
    if options.warmup_epochs >= options.epochs and options.warmup_epochs > 0:
        raise UsageError(f"--warmup-epochs {options.warmup_epochs:g} leaves nothing of the {options.epochs} epochs to train at full rate",
                         ["choose fewer warm-up epochs than --epochs"])
    return options


def resolve_options(spec: Spec, flags: dict[str, Any]) -> TrainOptions:
    """Each option from ``flags`` when given (not None), else the spec's ``train:`` section (its
    ``data_dir`` relative to the spec file), else ``DEFAULTS``; no dataset anywhere is an error.
    ``data_dir`` is made absolute, so the run (its checkpoints' ``train_config``) names the data
    wherever ``cnnspec export`` or ``--resume`` is run from later."""
    from_spec = spec.train.model_dump(exclude_none=True) if spec.train is not None else {}
    if "data_dir" in from_spec:  # a path written in a spec file is relative to that file
        from_spec["data_dir"] = str(Path(spec.file).parent / Path(from_spec["data_dir"]).expanduser())
    values = {}
    for option in fields(TrainOptions):
        flag = flags.get(option.name)
        values[option.name] = flag if flag is not None else from_spec.get(option.name, getattr(DEFAULTS, option.name))
    options = TrainOptions(**{**values, "data_dir": absolute_path(values["data_dir"])})
    if options.dataset is None:
        raise UsageError("no dataset to train on", [
            f"pass --dataset NAME or set train: {{dataset: NAME}} in {spec.file}; NAME is one of {', '.join(DATASET_NAMES)}",
        ])
    return check_options(options)


def options_for_resume(saved: dict[str, Any], flags: dict[str, Any]) -> TrainOptions:
    """The checkpoint's options, with the flags that may change on resume applied; any other flag
    that disagrees with the checkpoint is an error (it would silently train another recipe)."""
    options = TrainOptions(**{f.name: saved[f.name] for f in fields(TrainOptions) if f.name in saved})
    if flags.get("init_from") is not None:
        raise UsageError("--init-from starts a new run from other weights; --resume continues this run's own",
                         ["drop --init-from to resume, or start a new run with --out"])
    changes = {}
    for name, value in flags.items():
        if value is None or value == getattr(options, name):
            continue
        if name not in RESUME_MAY_CHANGE:
            raise UsageError(f"--{name.replace('_', '-')} {value} differs from the run being resumed "
                             f"({name}={getattr(options, name)})",
                             ["drop the flag to continue the run as it was started, or start a new run with --out"])
        changes[name] = absolute_path(value) if name == "data_dir" else value
    options = replace(options, **changes)
    if options.epochs != saved.get("epochs") and options.scheduler != "none":
        raise UsageError(f"--epochs cannot change on resume with scheduler '{options.scheduler}' "
                         f"(its schedule spans the original {saved.get('epochs')} epochs)",
                         ["resume with the original --epochs, or train with --scheduler none"])
    return options



def absolute_path(path: str | Path) -> str:
    """``path`` (``~`` expanded) as an absolute, normalised path of the current directory."""
    return os.path.abspath(os.path.expanduser(str(path)))
