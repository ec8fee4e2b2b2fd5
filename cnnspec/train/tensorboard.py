"""TensorBoard event files of a run, under ``RUN/tensorboard/`` (``tensorboard --logdir RUN``).

One x axis for everything: the optimiser step (``global_step``), so that on ``--resume`` the
writer's ``purge_step`` (the first step of the epoch being redone) makes TensorBoard drop what a
killed process had logged beyond the last checkpoint. Tags:

    step/loss, step/accuracy, step/lr     running training figures, about 100 points per epoch
    epoch/train_loss, epoch/train_accuracy, epoch/lr, epoch/images_per_second
    epoch/val_loss, epoch/val_accuracy    with a validation split (else epoch/test_loss, epoch/test_accuracy)
    confusion_matrix/val (or /test)       the evaluation split's confusion matrix, an image per epoch
    final/test_loss, final/test_accuracy, confusion_matrix/final_test   (with a validation split)
    spec                                  the spec text and the resolved options (text)

Only the main process writes. Without the ``tensorboard`` package (part of cnnspec[ml]) the run
goes on and says once that no event files are written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

FOLDER = "tensorboard"


class TensorBoardLog:
    """A SummaryWriter that does nothing when disabled or unavailable."""

    def __init__(self, run_dir: Path, enabled: bool, purge_step: int | None = None, say: Any = print):
        self.writer: Any = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            say("tensorboard is not installed: no event files in "
                f"{Path(run_dir) / FOLDER} (pip install tensorboard, part of cnnspec[ml])")
            return
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / FOLDER), purge_step=purge_step or None)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                if value is not None:
                    self.writer.add_scalar(tag, value, step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, step)

    def confusion(self, tag: str, confusion: Any, labels: Sequence[str], title: str, step: int) -> None:
        """The confusion matrix drawn as cnnspec evaluate draws it, logged as an RGB image."""
        if self.writer is None:
            return
        from ..plots.evaluation import confusion_figure, figure_pixels

        pixels = figure_pixels(confusion_figure(confusion, labels, title))
        self.writer.add_image(tag, pixels, step, dataformats="HWC")

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
