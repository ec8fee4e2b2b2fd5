"""Pictures of an evaluation: the confusion matrix, and the most confidently misclassified images.

Drawn like every cnnspec figure (matplotlib's object API on an Agg canvas, fixed pixel sizes,
atomic PNG writes). ``figure_pixels`` turns a figure into an RGB array for TensorBoard.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Sequence

from .canvas import DPI, new_figure, save_png

CONFUSION_CELL_PIXELS = 44
"""One cell of the confusion matrix; the figure grows with the number of classes (at most 1,400 px)."""

ANNOTATE_UP_TO = 30
"""Counts are written into the cells for up to this many classes."""

MISCLASSIFIED_CELL_PIXELS = 150
MISCLASSIFIED_COLUMNS = 8


def confusion_figure(confusion: Any, labels: Sequence[str], title: str) -> Any:
    """Rows: true class; columns: predicted class; colour: the fraction of the row (recall on the
    diagonal), text: the count."""
    import numpy as np

    counts = np.asarray(confusion, dtype=np.int64)
    classes = counts.shape[0]
    side = int(min(1400, max(420, 160 + CONFUSION_CELL_PIXELS * classes)))
    figure = new_figure((side, side))
    axes = figure.add_subplot()
    totals = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    image = axes.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class")
    names = [str(label) for label in labels]
    axes.set_xticks(range(classes), names, rotation=90 if max(map(len, names), default=1) > 3 else 0)
    axes.set_yticks(range(classes), names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(textwrap.fill(title, width=max(40, side // 9)), fontsize=10)
    if classes <= ANNOTATE_UP_TO:
        for row in range(classes):
            for column in range(classes):
                if counts[row, column]:
                    colour = "white" if fractions[row, column] > 0.5 else "black"
                    axes.text(column, row, f"{counts[row, column]:,}", ha="center", va="center",
                              fontsize=8 if classes > 12 else 9, color=colour)
    return figure


def misclassified_figure(images: Any, true: Sequence[int], predicted: Sequence[int], confidence: Sequence[float],
                         labels: Sequence[str], title: str) -> Any:
    """A grid of uint8 images (N x C x H x W), each captioned 'true A / predicted B (p%)'."""
    import numpy as np

    pictures = np.asarray(images)
    count = max(1, len(pictures))
    columns = min(MISCLASSIFIED_COLUMNS, count)
    rows = -(-count // columns)
    figure = new_figure((columns * MISCLASSIFIED_CELL_PIXELS, rows * (MISCLASSIFIED_CELL_PIXELS + 18) + 40))
    figure.suptitle(title, fontsize=10)
    grid = figure.subplots(rows, columns, squeeze=False)
    for index, axes in enumerate(grid.flat):
        axes.set_axis_off()
        if index >= len(pictures):
            continue
        picture = pictures[index]
        if picture.shape[0] == 1:
            axes.imshow(picture[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:
            axes.imshow(np.transpose(picture[:3], (1, 2, 0)), interpolation="nearest")
        axes.set_title(f"true {labels[true[index]]}\npredicted {labels[predicted[index]]} ({100 * confidence[index]:.0f}%)",
                       fontsize=8, color="#b00000")
    if not len(pictures):
        grid.flat[0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    return figure


def save_figure(figure: Any, output: str | Path) -> Path:
    """Write ``figure`` as a PNG, atomically."""
    path = Path(output)
    save_png(figure, path)
    return path


def figure_pixels(figure: Any) -> Any:
    """The rendered figure as an H x W x 3 uint8 array (what TensorBoard's add_image takes as HWC)."""
    import numpy as np

    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


__all__ = ["DPI", "confusion_figure", "figure_pixels", "misclassified_figure", "save_figure"]
