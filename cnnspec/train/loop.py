"""``cnnspec train``: fast, reproducible, resumable, observable training of a spec's model.

Options are resolved in ``options``; the device and precision are chosen in ``hardware``.

A run directory holds::

    spec.yaml       the spec file, byte for byte
    metrics.jsonl   one JSON object per finished epoch
    last.pt         checkpoint after every epoch (what --resume continues from)
    best.pt         checkpoint of the epoch with the best eval accuracy so far

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

from . import distributed
from .checkpoint import (CheckpointError, capture_rng, check_spec, load_checkpoint, remove_stale_temporaries,
                         restore_rng, save_checkpoint)
from .data import (DatasetError, DatasetInfo, Normalizer, check_spec_matches, dataset_for_spec, epoch_order, eval_shard,
                   load_split, per_channel)
from .hardware import Precision, pick_device, threads_per_process, use_channels_last
from .optimization import make_optimizer, make_scheduler
from .options import TrainOptions, options_for_resume, resolve_options
from .progress import Reporter
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


@dataclass
class Split:
    """One split in memory: uint8 images and int64 labels, on the training device when they fit."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


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
        self.train_split, self.test_split = self._load(download)
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
                                        input_shape=self.info.input_shape, workers=self.options.workers)
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

        model = build_model(self.spec).to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
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
            if self.start_epoch >= self.options.epochs:
                self.reporter.line(f"all {self.options.epochs} epochs are done; pass a larger --epochs to train longer")
            for epoch in range(self.start_epoch, self.options.epochs):
                record = self._epoch(epoch)
                self.metrics.append(record)
                if self.context.is_main:
                    self._save(epoch + 1, record)
                self.reporter.line(self._epoch_line(record))
            distributed.barrier(self.context)
            result = self._result()
            self.reporter.line(self._summary(result))
            return result
        finally:
            self.reporter.end_epoch()
            distributed.stop(self.context)

    def _prepare_run_dir(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.run_dir)
        if self.saved is None:
            atomic_write_bytes(self.run_dir / "spec.yaml", self.spec_path.read_bytes())
            (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
            (self.run_dir / "best.pt").unlink(missing_ok=True)

    def _epoch(self, epoch: int) -> dict[str, Any]:
        started = time.perf_counter()
        train_loss, train_accuracy, train_images = self._train_epoch(epoch)
        train_seconds = time.perf_counter() - started
        eval_loss, eval_accuracy, eval_images = self.evaluate(self.test_split)
        seconds = time.perf_counter() - started
        return {
            "epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_accuracy,
            "eval_loss": eval_loss, "eval_accuracy": eval_accuracy,
            "seconds": round(seconds, 3), "train_seconds": round(train_seconds, 3),
            "images_per_second": round(train_images / train_seconds, 1),
            "train_images": train_images, "eval_images": eval_images,
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
        for step, index in enumerate(batches, start=1):
            self._step(index, tally)
            if step % every == 0 or step == len(batches):
                loss, correct = tally.loss_sum.item(), tally.correct.item()
                speed = tally.images * self.context.world_size / max(1e-9, time.perf_counter() - started)
                self.reporter.update(step, len(batches), loss / tally.images, correct / tally.images, speed, label)
        self.reporter.end_epoch()
        return tally.totals(self.context)

    def _step(self, index: torch.Tensor, tally: Tally) -> None:
        inputs = self.normalize(self.train_split.images[index])
        targets = self.train_split.labels[index].to(self.device, non_blocking=True)
        with self.precision.autocast(self.device):
            logits = self.model(inputs)
            loss = F.cross_entropy(logits, targets)
        self.optimizer.zero_grad(set_to_none=True)
        scaler = self.precision.scaler
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(self.optimizer)
            scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        tally.add(loss * targets.shape[0], logits, targets)

    def evaluate(self, split: Split) -> tuple[float, float, int]:
        """(mean loss, accuracy, images) over the whole split; each process takes every
        world_size-th image and the sums are all-reduced, so each image counts once."""
        distributed.broadcast_buffers(self.module, self.context)
        self.module.eval()
        tally = Tally.zeros(self.device)
        shape = self.info.input_shape
        batch = max(self.options.batch_size, min(1024, EVAL_BATCH_PIXELS // max(1, shape[0] * shape[1] * shape[2])))
        index = eval_shard(len(split), self.context.rank, self.context.world_size).to(split.images.device)
        with torch.inference_mode():
            for part in index.split(batch):
                targets = split.labels[part].to(self.device, non_blocking=True)
                logits = self.module(self.normalize(split.images[part]))
                tally.add(F.cross_entropy(logits, targets, reduction="sum"), logits, targets)
        self.module.train()
        return tally.totals(self.context)

    # -- files --

    def _save(self, epochs_done: int, record: dict[str, Any]) -> None:
        """best.pt first, then last.pt, then metrics.jsonl: a kill between any two leaves files
        that --resume turns into the same run (it redoes at most the epoch in flight)."""
        improved = self.best_eval_accuracy is None or record["eval_accuracy"] > self.best_eval_accuracy
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
            f" x {self.context.world_size} processes)" if self.context.distributed else ")")
        resumed = f", resuming after epoch {self.start_epoch}" if self.start_epoch else ""
        return (f"training {self.spec.name} on {options.dataset} ({len(self.train_split) :,} train / "
                f"{len(self.test_split):,} test images): {options.epochs} epoch{'s' if options.epochs != 1 else ''}, batch {options.batch_size}, "
                f"{options.optimizer} lr {options.lr:g}, scheduler {options.scheduler}, seed {options.seed}, "
                f"{where}, {self.precision.label}{resumed}")

    def _epoch_line(self, record: dict[str, Any]) -> str:
        return (f"epoch {record['epoch']}/{self.options.epochs}: train loss {record['train_loss']:.4f} "
                f"acc {record['train_accuracy']:.2%} | eval loss {record['eval_loss']:.4f} "
                f"acc {record['eval_accuracy']:.2%} | {record['seconds']:.1f} s, "
                f"{record['images_per_second']:,.0f} img/s")

    def _result(self) -> RunResult:
        best = max(self.metrics, key=lambda m: m["eval_accuracy"], default=None)
        return RunResult(self.run_dir, list(self.metrics), best["eval_accuracy"] if best else None,
                         best["epoch"] if best else None)

    def _summary(self, result: RunResult) -> str:
        if result.best_eval_accuracy is None:
            return f"nothing trained; checkpoints in {self.run_dir}"
        return (f"done: best eval accuracy {result.best_eval_accuracy:.2%} (epoch {result.best_epoch}); "
                f"checkpoints {self.run_dir / 'best.pt'} and {self.run_dir / 'last.pt'}, "
                f"metrics {self.run_dir / 'metrics.jsonl'}")


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

