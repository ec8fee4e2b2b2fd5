"""``cnnspec train``: fast, reproducible, resumable, observable training of a spec's model.

Options are resolved in ``options``; the device and precision are chosen in ``hardware``.

A run directory holds::

    spec.yaml       the spec file, byte for byte
    metrics.jsonl   one JSON object per finished epoch
    last.pt         checkpoint after every epoch (what --resume continues from)
    best.pt         checkpoint of the best epoch so far: by the ``monitor`` figure on the
                    validation split when ``val_split`` > 0, else by test accuracy
    test.json       with a validation split: best.pt's figures on the test split, computed once at the end
    tensorboard/    TensorBoard event files (``tensorboard --logdir RUN``; tags in tensorboard.py)

Each epoch evaluates the ``eval_split`` (``val`` with a validation split, else ``test``); its
figures are the record's ``eval_loss`` and ``eval_accuracy``. Augmentation (``augment``) touches
training batches only, drawn from a generator seeded by (seed, epoch, step, rank).

Each epoch writes best.pt (if improved), then last.pt, then metrics.jsonl, each atomically, so a
kill at any moment leaves a consistent run that ``--resume`` continues. Reproducibility: the
training order of epoch e is a function of (seed, e) (``data.epoch_order``), and every random
state is saved in the checkpoint, so on CPU a resumed run ends with exactly the weights of an
uninterrupted one.
"""

from __future__ import annotations

import json
import math
import random
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import allocator, distributed
from .checkpoint import (CheckpointError, capture_rng, check_spec, load_checkpoint, load_matching_weights,
                         remove_stale_temporaries, restore_rng, save_checkpoint)
from .augment import Augmenter, parse_augment
from .data import (DatasetError, DatasetInfo, Normalizer, check_spec_matches, dataset_for_spec, epoch_order, eval_shard,
                   load_split, per_channel, validation_split)
from .hardware import Precision, keep_gradients_channels_last, pick_device, threads_per_process, use_channels_last
from .optimization import make_optimizer, make_scheduler
from .options import TrainOptions, options_for_resume, resolve_options
from .progress import Reporter
from .tensorboard import TensorBoardLog
from ..deploy.files import atomic_write_bytes
from ..errors import SpecWarning, UsageError
from ..analysis import analyze_file

EVAL_BATCH_PIXELS = 1 << 22  # eval batches hold about 4M input values (1,024 MNIST digits at most)


# --- the run -----------------------------------------------------------------------------------

@dataclass
class RunResult:
    """What a finished ``train`` call produced."""

    run_dir: Path
    metrics: list[dict[str, Any]]
    best_eval_accuracy: float | None
    best_epoch: int | None
    test: dict[str, Any] | None = None
    stopped_early: bool = False


@dataclass
class Split:
    """One split in memory: uint8 images and int64 labels, on the training device when they fit."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class Evaluation:
    """One pass over an evaluation split, summed over every process."""

    loss: float
    accuracy: float
    images: int
    confusion: list[list[int]]


@dataclass
class Tally:
    """Running sums of one pass, kept on the device (no synchronisation per step)."""

    loss_sum: torch.Tensor
    correct: torch.Tensor
    images: int = 0

    @classmethod
    def zeros(cls, device: torch.device) -> "Tally":
        return cls(torch.zeros((), dtype=torch.float64, device=device), torch.zeros((), dtype=torch.int64, device=device))

    def add(self, loss_sum: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """``loss_sum``: the batch's summed loss; accuracy counts argmax == target."""
        self.loss_sum += loss_sum.detach().double()
        self.correct += (logits.argmax(1) == targets).sum()
        self.images += int(targets.shape[0])

    def totals(self, context: distributed.Context) -> tuple[float, float, int]:
        """(mean loss, accuracy, images) summed over every process."""
        sums = torch.stack([self.loss_sum, self.correct.double(),
                            torch.tensor(float(self.images), dtype=torch.float64, device=self.loss_sum.device)])
        loss, correct, images = distributed.all_reduce_sum(sums, context).tolist()
        return loss / max(1.0, images), correct / max(1.0, images), int(images)


class Run:
    """Everything one training run holds; ``fit`` trains the remaining epochs."""

    def __init__(self, spec_path: str | Path, out: str | Path, flags: dict[str, Any], *, resume: bool = False,
                 download: bool = False, reporter_out: Any = None):
        self.spec_path = Path(spec_path)
        self.context = distributed.from_environment()
        self.spec = analyze_file(self.spec_path).spec  # every problem of the file in one pass
        self.run_dir = Path(out)
        self.reporter = Reporter(self.context.is_main, reporter_out)
        self.saved = self._checkpoint_to_resume() if resume else None
        self._refuse_to_overwrite(resume)
        self.options = (options_for_resume(self.saved["train_config"], flags) if self.saved
                        else resolve_options(self.spec, flags))
        self.device = pick_device(self.options.device, self.context)
        self._check_memory()
        distributed.start(self.context, self.device.type)
        torch.set_num_threads(threads_per_process(self.context))
        self.info = self._dataset()
        full_train, self.test_split = self._load(download)
        self.train_split, self.val_split = self._hold_out(full_train)
        self.eval_split = self.val_split if self.val_split is not None else self.test_split
        self.eval_name = "val" if self.val_split is not None else "test"
        self.augment = self._augmenter()
        self._seed(self.options.seed)
        self.channels_last = use_channels_last(self.spec, self.device)
        self.model, self.module = self._model()
        self.normalize = Normalizer(self.info, self.device, self.channels_last)
        self.steps_per_epoch = math.ceil(math.ceil(len(self.train_split) / self.context.world_size) / self.options.batch_size)
        self.optimizer = make_optimizer(self.model, self.options)
        self.scheduler = make_scheduler(self.optimizer, self.options, self.steps_per_epoch)
        self.precision = Precision.choose(self.options.precision, self.device)
        self.metrics: list[dict[str, Any]] = []
        self.best_eval_accuracy: float | None = None
        self.start_epoch = 0
        self.tensorboard = TensorBoardLog(self.run_dir, False)
        if self.saved:
            self._restore(self.saved)

    # -- setup --

    def _checkpoint_to_resume(self) -> dict[str, Any]:
        path = self.run_dir / "last.pt"
        if not path.is_file():
            raise CheckpointError(f"--resume: no {path} to continue from; run without --resume to start this run")
        saved = load_checkpoint(path)
        check_spec(saved, self.spec, path)
        return saved

    def _refuse_to_overwrite(self, resume: bool) -> None:
        if not resume and (self.run_dir / "last.pt").exists():
            raise UsageError(f"{self.run_dir} already holds a training run (last.pt)",
                             ["add --resume to continue it, or choose another --out"])

    def _check_memory(self) -> None:
        """Refuse a model that cannot fit before anything is allocated (a located error, not an OOM)."""
        from ..analysis import analyze
        from ..resources import check_fits

        check_fits(analyze(self.spec), "train", self.options.batch_size, self.device)

    def _dataset(self) -> DatasetInfo:
        from ..analysis import analyze

        info = dataset_for_spec(self.options.dataset, self.spec, self.options.data_dir)
        check_spec_matches(self.spec, info, tuple(analyze(self.spec).output_shape))
        return info

    def _load(self, download: bool) -> tuple[Split, Split]:
        """Both splits into memory; rank 0 downloads first so that processes never race on files."""
        splits = []
        for train in (True, False):
            if download and self.context.distributed and not self.context.is_main:
                distributed.barrier(self.context)
            images, labels = load_split(self.options.dataset, self.options.data_dir, train, download,
                                        input_shape=self.info.input_shape, workers=self.options.workers,
                                        classes=self.info.labels)
            if download and self.context.distributed and self.context.is_main:
                distributed.barrier(self.context)
            splits.append(self._place(Split(images, labels)))
        return splits[0], splits[1]

    def _place(self, split: Split) -> Split:
        """Move a split to the GPU when it is small (MNIST is 47 MB) so batches never cross PCIe;
        otherwise pin it so that batch copies overlap with compute."""
        if self.device.type == "cpu":
            return split
        if split.images.numel() <= 2 * 1024**3:
            return Split(split.images.to(self.device), split.labels.to(self.device))
        pin = self.device.type == "cuda"
        return Split(split.images.pin_memory() if pin else split.images, split.labels.to(self.device))

    def _hold_out(self, split: Split) -> tuple[Split, Split | None]:
        """(training, validation) splits: ``val_split`` of the training images held out by seed."""
        if not self.options.val_split:
            return split, None
        keep, held_out = validation_split(split.labels, self.options.val_split, self.options.seed)
        if not len(held_out) or not len(keep):
            raise UsageError(f"--val-split {self.options.val_split:g} of {len(split):,} training images leaves "
                             f"{len(held_out)} for validation and {len(keep)} for training", ["choose a fraction like 0.1"])
        device = split.images.device
        parts = [Split(split.images[i.to(device)], split.labels[i.to(split.labels.device)]) for i in (keep, held_out)]
        return parts[0], parts[1]

    def _augmenter(self) -> Augmenter:
        """The ``augment`` list as a batch transform; it must keep the model's input size."""
        augment = Augmenter(parse_augment(self.options.augment, "train.augment"), self.options.seed, self.context.rank)
        _, height, width = self.info.input_shape
        size = augment.output_size(height, width)
        if size != (height, width):
            raise UsageError(f"the augmentations turn {height}x{width} images into {size[0]}x{size[1]}, "
                             f"but the model takes {height}x{width}",
                             [f"give random_crop / random_resized_crop size: [{height}, {width}] (pad first to shift)"])
        return augment

    def _seed(self, seed: int) -> None:
        """Same initial weights on every process; different dropout streams per process."""
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            import numpy as np

            np.random.seed(seed % 2**32)
        except ImportError:
            pass

    def _model(self) -> tuple[nn.Module, nn.Module]:
        """(the module to train: DDP-wrapped under torchrun, the plain compiled module)."""
        from ..compile import build_model

        model = build_model(self.spec)
        if self.options.init_from and not self.saved:
            loaded, skipped = load_matching_weights(model, self.options.init_from)
            self.reporter.line(f"--init-from {self.options.init_from}: loaded {len(loaded)} of "
                               f"{len(model.state_dict())} tensors" + (f"; skipped {len(skipped)}:" if skipped else ""))
            for line in skipped:
                self.reporter.line(f"  skipped {line}")
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
            keep_gradients_channels_last(model)
        if self.context.rank:
            torch.manual_seed(self.options.seed + self.context.rank)
        if not self.context.distributed:
            return model, model
        return distributed.wrap(model, self.device), model

    def _restore(self, saved: dict[str, Any]) -> None:
        self.module.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scheduler is not None and saved.get("scheduler") is not None:
            self.scheduler.load_state_dict(saved["scheduler"])
        if self.precision.scaler is not None and saved.get("scaler") is not None:
            self.precision.scaler.load_state_dict(saved["scaler"])
        if self.context.is_main:
            restore_rng(saved["rng"])
        else:  # the checkpoint holds rank 0's streams; the others restart theirs from (seed, rank, epoch)
            torch.manual_seed(self.options.seed + self.context.rank + 1_000_003 * int(saved["epoch"]))
        self.start_epoch = int(saved["epoch"])
        self.metrics = list(saved.get("metrics") or [])
        self.best_eval_accuracy = saved.get("best_eval_accuracy")

    # -- training --

    def fit(self) -> RunResult:
        """Train epochs start_epoch+1 .. epochs, writing checkpoints and metrics after each."""
        try:
            if self.context.is_main:
                self._prepare_run_dir()
            self.reporter.line(self._banner())
            stopped = self._patience_exhausted()
            if stopped:
                self.reporter.line(f"early stopping ended this run after epoch {len(self.metrics)}; nothing to resume")
            elif self.start_epoch >= self.options.epochs:
                self.reporter.line(f"all {self.options.epochs} epochs are done; pass a larger --epochs to train longer")
            for epoch in range(self.start_epoch, self.options.epochs if not stopped else self.start_epoch):
                record = self._epoch(epoch)
                self.metrics.append(record)
                if self.context.is_main:
                    self._save(epoch + 1, record)
                self.reporter.line(self._epoch_line(record))
                self._log_epoch(record)
                if self._patience_exhausted():
                    stopped = True
                    self.reporter.line(f"early stopping: {self.options.monitor} has not improved for "
                                       f"{self.options.early_stopping} epoch(s) (best: epoch {self._best_epoch()})")
                    break
            distributed.barrier(self.context)
            result = self._result()
            result.stopped_early = stopped
            if self.val_split is not None and result.best_epoch is not None:
                result.test = self._final_test()
            self.reporter.line(self._summary(result))
            return result
        finally:
            self.reporter.end_epoch()
            self.tensorboard.close()
            distributed.stop(self.context)

    def _prepare_run_dir(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.run_dir)
        if self.saved is None:
            atomic_write_bytes(self.run_dir / "spec.yaml", self.spec_path.read_bytes())
            for name in ("metrics.jsonl", "best.pt", "test.json"):
                (self.run_dir / name).unlink(missing_ok=True)
        purge = self.start_epoch * self.steps_per_epoch + 1 if self.saved else None
        self.tensorboard = TensorBoardLog(self.run_dir, True, purge_step=purge, say=self.reporter.line)
        if self.saved is None:
            self.tensorboard.text("spec", "```\n" + self.spec.text + "\n```")
            self.tensorboard.text("options", "```\n" + json.dumps(asdict(self.options), indent=2) + "\n```")

    def _epoch(self, epoch: int) -> dict[str, Any]:
        started = time.perf_counter()
        train_loss, train_accuracy, train_images = self._train_epoch(epoch)
        train_seconds = time.perf_counter() - started
        evaluation = self.evaluate(self.eval_split)
        self.last_confusion = evaluation.confusion
        seconds = time.perf_counter() - started
        return {
            "epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_accuracy,
            "eval_loss": evaluation.loss, "eval_accuracy": evaluation.accuracy, "eval_split": self.eval_name,
            "seconds": round(seconds, 3), "train_seconds": round(train_seconds, 3),
            "images_per_second": round(train_images / train_seconds, 1),
            "train_images": train_images, "eval_images": evaluation.images,
            "lr": self.optimizer.param_groups[0]["lr"], "world_size": self.context.world_size,
            "precision": self.precision.label.split()[0], "device": self.device.type,
        }

    def _train_epoch(self, epoch: int) -> tuple[float, float, int]:
        """One pass over this process's shard; returns (mean loss, accuracy, images) over all processes."""
        self.model.train()
        order = epoch_order(len(self.train_split), self.options.seed, epoch,
                            self.context.rank, self.context.world_size).to(self.train_split.images.device)
        batches = order.split(self.options.batch_size)
        label = f"epoch {epoch + 1}/{self.options.epochs}"
        self.reporter.batch_images = self.options.batch_size * self.context.world_size
        self.reporter.start_epoch(label, len(batches))
        tally = Tally.zeros(self.device)
        started = time.perf_counter()
        every = max(1, len(batches) // 100)
        window = (0.0, 0, 0)  # loss sum, correct, images at the previous report: TensorBoard logs the window
        for step, index in enumerate(batches, start=1):
            self._step(index, tally, epoch, step)
            if step % every == 0 or step == len(batches):
                loss, correct = tally.loss_sum.item(), tally.correct.item()
                speed = tally.images * self.context.world_size / max(1e-9, time.perf_counter() - started)
                self.reporter.update(step, len(batches), loss / tally.images, correct / tally.images, speed, label)
                images = max(1, tally.images - window[2])
                self.tensorboard.scalars({"step/loss": (loss - window[0]) / images,
                                          "step/accuracy": (correct - window[1]) / images,
                                          "step/lr": self.optimizer.param_groups[0]["lr"]},
                                         epoch * self.steps_per_epoch + step)
                window = (loss, correct, tally.images)
        self.reporter.end_epoch()
        return tally.totals(self.context)

    def _step(self, index: torch.Tensor, tally: Tally, epoch: int, step: int) -> None:
        images = self.train_split.images[index]
        if self.augment:
            images = self.augment(images.to(self.device, non_blocking=True), epoch, step)
        inputs = self.normalize(images)
        targets = self.train_split.labels[index].to(self.device, non_blocking=True)
        with self.precision.autocast(self.device):
            logits = self.model(inputs)
            loss = F.cross_entropy(logits, targets, label_smoothing=self.options.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        scaler = self.precision.scaler
        if scaler is not None:
            scaler.scale(loss).backward()
            if self.options.grad_clip is not None:
                scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.options.grad_clip)
            scaler.step(self.optimizer)
            scaler.update()
        else:
            loss.backward()
            if self.options.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.options.grad_clip)
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        tally.add(loss * targets.shape[0], logits, targets)

    def evaluate(self, split: Split) -> Evaluation:
        """Mean (unsmoothed) loss, accuracy, images and confusion matrix over the whole split; each
        process takes every world_size-th image and the sums are all-reduced, so each image counts once."""
        distributed.broadcast_buffers(self.module, self.context)
        self.module.eval()
        tally = Tally.zeros(self.device)
        classes = len(self.info.labels)
        confusion = torch.zeros(classes * classes, dtype=torch.int64, device=self.device)
        shape = self.info.input_shape
        batch = max(self.options.batch_size, min(1024, EVAL_BATCH_PIXELS // max(1, shape[0] * shape[1] * shape[2])))
        index = eval_shard(len(split), self.context.rank, self.context.world_size).to(split.images.device)
        with torch.inference_mode():
            for part in index.split(batch):
                targets = split.labels[part].to(self.device, non_blocking=True)
                logits = self.module(self.normalize(split.images[part]))
                tally.add(F.cross_entropy(logits, targets, reduction="sum"), logits, targets)
                confusion += torch.bincount(targets * classes + logits.argmax(1), minlength=classes * classes)
        self.module.train()
        loss, accuracy, images = tally.totals(self.context)
        counts = distributed.all_reduce_sum(confusion.double(), self.context).round().long().view(classes, classes)
        return Evaluation(loss, accuracy, images, counts.tolist())

    # -- files --

    def _save(self, epochs_done: int, record: dict[str, Any]) -> None:
        """best.pt first, then last.pt, then metrics.jsonl: a kill between any two leaves files
        that --resume turns into the same run (it redoes at most the epoch in flight)."""
        improved = self._best_epoch() == record["epoch"]
        if improved:
            self.best_eval_accuracy = record["eval_accuracy"]
        payload = self._payload(epochs_done)
        if improved:
            save_checkpoint(self.run_dir / "best.pt", payload)
        save_checkpoint(self.run_dir / "last.pt", payload)
        text = "".join(json.dumps(m, sort_keys=False) + "\n" for m in self.metrics)
        atomic_write_bytes(self.run_dir / "metrics.jsonl", text.encode("utf-8"))

    def _payload(self, epochs_done: int) -> dict[str, Any]:
        """The checkpoint dict (keys documented in cnnspec/train/checkpoint.py)."""
        from .. import __version__

        info = self.info
        return {
            "cnnspec_version": __version__, "spec_name": self.spec.name,
            "spec_text": self.spec.text, "spec_hash": self.spec.hash,
            "model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.precision.scaler.state_dict() if self.precision.scaler is not None else None,
            "epoch": epochs_done, "rng": capture_rng(), "metrics": list(self.metrics),
            "best_eval_accuracy": self.best_eval_accuracy,
            "dataset": {"name": info.name, "mean": per_channel(info.mean, info.channels),
                        "std": per_channel(info.std, info.channels), "labels": list(info.labels),
                        "input_shape": list(info.input_shape)},
            "train_config": asdict(self.options), "world_size": self.context.world_size,
        }

    # -- text --

    def _banner(self) -> str:
        options = self.options
        threads = torch.get_num_threads()
        where = f"{self.device.type} ({threads} thread{'s' if threads > 1 else ''}" + (
            f" x {self.context.world_size} processes" if self.context.distributed else "") + f", {allocator.current()})"
        resumed = f", resuming after epoch {self.start_epoch}" if self.start_epoch else ""
        held_out = f"{len(self.val_split):,} val / " if self.val_split is not None else ""
        extras = [f"augment {', '.join(t.type for t in self.augment.transforms)}" if self.augment else "",
                  f"warm-up {options.warmup_epochs:g} epochs" if options.warmup_epochs else "",
                  f"label smoothing {options.label_smoothing:g}" if options.label_smoothing else "",
                  f"grad clip {options.grad_clip:g}" if options.grad_clip is not None else "",
                  f"early stopping after {options.early_stopping} epochs without a better {options.monitor}"
                  if options.early_stopping else ""]
        return (f"training {self.spec.name} on {options.dataset} ({len(self.train_split) :,} train / {held_out}"
                f"{len(self.test_split):,} test images): {options.epochs} epoch{'s' if options.epochs != 1 else ''}, batch {options.batch_size}, "
                f"{options.optimizer} lr {options.lr:g}, scheduler {options.scheduler}, seed {options.seed}, "
                f"{where}, {self.precision.label}{resumed}" + "".join(f", {e}" for e in extras if e))

    def _epoch_line(self, record: dict[str, Any]) -> str:
        return (f"epoch {record['epoch']}/{self.options.epochs}: train loss {record['train_loss']:.4f} "
                f"acc {record['train_accuracy']:.2%} | {self.eval_name} loss {record['eval_loss']:.4f} "
                f"acc {record['eval_accuracy']:.2%} | {record['seconds']:.1f} s, "
                f"{record['images_per_second']:,.0f} img/s")

    def _best_epoch(self) -> int | None:
        """The epoch best.pt holds: the lowest eval loss or highest eval accuracy (``monitor``) on
        the validation split, or the highest test accuracy without one; the earliest on ties."""
        if not self.metrics:
            return None
        if self.val_split is not None and self.options.monitor == "val_loss":
            best = min(self.metrics, key=lambda m: (m["eval_loss"], m["epoch"]))
        else:
            best = max(self.metrics, key=lambda m: (m["eval_accuracy"], -m["epoch"]))
        return int(best["epoch"])

    def _patience_exhausted(self) -> bool:
        """Early stopping: ``early_stopping`` epochs in a row since the best one (a pure function of
        the metrics, so a resumed run stops exactly where an uninterrupted one does)."""
        best = self._best_epoch()
        patience = self.options.early_stopping
        return patience is not None and best is not None and len(self.metrics) - best >= patience

    def _log_epoch(self, record: dict[str, Any]) -> None:
        step = record["epoch"] * self.steps_per_epoch
        split = self.eval_name
        self.tensorboard.scalars({
            "epoch/train_loss": record["train_loss"], "epoch/train_accuracy": record["train_accuracy"],
            f"epoch/{split}_loss": record["eval_loss"], f"epoch/{split}_accuracy": record["eval_accuracy"],
            "epoch/lr": record["lr"], "epoch/images_per_second": record["images_per_second"]}, step)
        self.tensorboard.confusion(f"confusion_matrix/{split}", self.last_confusion, self.info.labels,
                                   f"{split} split after epoch {record['epoch']}: accuracy {record['eval_accuracy']:.2%}",
                                   step)
        self.tensorboard.flush()

    def _final_test(self) -> dict[str, Any]:
        """best.pt's weights on the test split, once, for the reported figure (test.json)."""
        best = self._best_epoch()
        saved = load_checkpoint(self.run_dir / "best.pt")
        self.module.load_state_dict(saved["model"])
        evaluation = self.evaluate(self.test_split)
        test = {"checkpoint": "best.pt", "epoch": best, "monitor": self.options.monitor,
                "test_loss": evaluation.loss, "test_accuracy": evaluation.accuracy, "test_images": evaluation.images,
                "val_loss": self.metrics[best - 1]["eval_loss"], "val_accuracy": self.metrics[best - 1]["eval_accuracy"]}
        if self.context.is_main:
            atomic_write_bytes(self.run_dir / "test.json", (json.dumps(test, indent=2) + "\n").encode("utf-8"))
            step = len(self.metrics) * self.steps_per_epoch
            self.tensorboard.scalars({"final/test_loss": evaluation.loss, "final/test_accuracy": evaluation.accuracy}, step)
            self.tensorboard.confusion("confusion_matrix/final_test", evaluation.confusion, self.info.labels,
                                       f"test split, best.pt (epoch {best}): accuracy {evaluation.accuracy:.2%}", step)
        return test

    def _result(self) -> RunResult:
        best = self._best_epoch()
        record = self.metrics[best - 1] if best else None
        return RunResult(self.run_dir, list(self.metrics), record["eval_accuracy"] if record else None, best)

    def _summary(self, result: RunResult) -> str:
        if result.best_eval_accuracy is None:
            return f"nothing trained; checkpoints in {self.run_dir}"
        files = (f"checkpoints {self.run_dir / 'best.pt'} and {self.run_dir / 'last.pt'}, "
                 f"metrics {self.run_dir / 'metrics.jsonl'}, TensorBoard {self.run_dir / 'tensorboard'}")
        if result.test is not None:
            return (f"done: best epoch {result.best_epoch} by {self.options.monitor} (val accuracy "
                    f"{result.best_eval_accuracy:.2%}); test accuracy of best.pt {result.test['test_accuracy']:.2%} "
                    f"on {result.test['test_images']:,} images; {files}")
        return f"done: best eval accuracy {result.best_eval_accuracy:.2%} (epoch {result.best_epoch}); {files}"


def train(spec_path: str | Path, out: str | Path, *, resume: bool = False, download: bool = False,
          reporter_out: Any = None, **flags: Any) -> RunResult:
    """Train ``spec_path`` into run directory ``out``; ``flags`` are TrainOptions fields (None = not given)."""
    unknown = set(flags) - {f.name for f in fields(TrainOptions)}
    if unknown:
        raise TypeError(f"unknown training options: {', '.join(sorted(unknown))}")
    with warnings.catch_warnings():
        if not distributed.from_environment().is_main:  # rank 0 shows the spec's warnings, like all output
            warnings.simplefilter("ignore", SpecWarning)
        try:
            run = Run(spec_path, out, flags, resume=resume, download=download, reporter_out=reporter_out)
        except DatasetError as exc:
            raise UsageError(str(exc), _data_hints(exc, download)) from None
        return run.fit()


def _data_hints(error: DatasetError, download: bool) -> list[str]:
    """What ``cnnspec train`` offers when a dataset cannot be loaded, in its own flags."""
    hints = ["pass --data-dir DIR, the folder that holds the dataset (a spec's train.data_dir is relative to the spec)"]
    if error.downloadable and not download:
        hints.append("or add --download to fetch it into --data-dir")
    return hints

