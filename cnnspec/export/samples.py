"""The run's dataset images export verifies on, measures accuracy on, and calibrates with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..deploy.images import normalize_pixels
from . import ExportError
from ..train.run import TrainedRun

DEFAULT_SAMPLES = 63  # odd, so a batch-size bug that only shows on odd sizes cannot hide


@dataclass
class Samples:
    """Normalised float32 images of the run's dataset: a verification sample, the test split
    (with labels), and calibration images from the training split."""

    dataset: str
    verify: Any
    test_images: Any
    test_labels: Any
    calibration: Any | None


def load_samples(run: TrainedRun, data_dir: str | Path | None, count: int, calibration: int) -> Samples:
    """Load the run's dataset with cnnspec.train.data and normalise with the checkpoint's mean/std."""
    from ..train.data import load_split

    name = run.dataset_name
    if not name:
        raise ExportError(f"{run.checkpoint} does not say which dataset it was trained on")
    data_dir = data_dir or run.data_dir
    shape = tuple(int(v) for v in run.spec.input.shape)
    mean, std = list(run.mean), list(run.std)
    classes = run.dataset.get("labels") or None  # the class order the run trained with (spec labels first)
    images, labels = load_split(name, data_dir, train=False, input_shape=shape, classes=classes)
    test = normalize_pixels(images.numpy(), mean, std)
    calib = None
    if calibration > 0:
        train_images, _ = load_split(name, data_dir, train=True, input_shape=shape, classes=classes)
        step = max(1, len(train_images) // calibration)  # spread over classes (files are grouped by class)
        calib = normalize_pixels(train_images[::step][:calibration].numpy(), mean, std)
    spread = max(1, len(test) // max(count, 1))
    return Samples(name, test[::spread][:count], test, labels.numpy(), calib)
