"""What every picture of a run shares: a fixed-size Agg figure, the colours, and atomic PNG writing.

Every figure is drawn with matplotlib's object API on an Agg canvas (no pyplot: no display, no
global backend state, safe inside a notebook or a server) at a fixed size in pixels, so a PNG's
width and height are known in advance: ``pixels = inches * DPI`` with whole-pixel sizes below.
Files are rendered to bytes and written atomically (``deploy.files.atomic_write_bytes``).

numpy, torch and matplotlib are imported inside the functions that need them: importing the
plots modules is cheap.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ..errors import UsageError

DPI = 100

# Red for positive, blue for negative, white for zero: weights and pre-activation maps are signed.
DIVERGING_COLORMAP = "RdBu_r"
TRAIN_COLOR = "#1f77b4"
EVAL_COLOR = "#d62728"


def new_figure(pixels: tuple[int, int]) -> Any:
    """A Figure of exactly ``pixels`` (width, height) at DPI, on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(pixels[0] / DPI, pixels[1] / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Any, output: Path) -> Path:
    """Render ``figure`` to PNG bytes (no bbox trimming, so the size stays exact), write atomically."""
    from .. import __version__
    from ..deploy.files import atomic_write_bytes

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": f"cnnspec {__version__}"})
    atomic_write_bytes(output, buffer.getvalue())
    return output


def png_path(output: str | Path | None, default: Path) -> Path:
    """Where a picture goes: ``output`` when given, else ``default``; a name not ending in .png is refused."""
    path = Path(output) if output is not None else default
    if path.suffix.lower() != ".png":
        raise UsageError(f"cannot write {path}: pictures are written as PNG", [f"use a .png name, e.g. {path.with_suffix('.png')}"])
    return path

