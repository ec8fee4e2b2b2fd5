"""A trained conv layer's filters drawn as a grid, one small image per output channel."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .canvas import DIVERGING_COLORMAP, new_figure, png_path, save_png
from ..errors import UsageError, did_you_mean
from ..layers import LAYER_TYPES
from ..train.run import TrainedRun, load_run

FILTER_CELL_MAX_PIXELS = 80
"""Largest on-screen size of one kernel in the filter grid; wide grids shrink it to fit 1,400 px."""

FILTER_GAP = 0.15
"""Gap between kernels in the filter grid, as a fraction of one kernel's width."""


def conv_layer_names(spec: Any) -> list[str]:
    """Names of the spec's convolution layers, in order."""
    return [node.name for node in spec.nodes if node.layer.is_convolution]


def first_conv_layer(spec: Any) -> str:
    """The spec's first convolution layer, the one ``visualize filters`` draws without --layer."""
    convs = conv_layer_names(spec)
    if not convs:
        drawable = " and ".join(name for name, cls in LAYER_TYPES.items() if cls.is_convolution)
        raise UsageError(f"spec '{spec.name}' has no {drawable} layer, so no filters to draw")
    return convs[0]


def check_conv_layer(spec: Any, layer: str) -> None:
    """Raise a UsageError unless ``layer`` names a conv layer of ``spec`` (with a suggestion)."""
    convs = conv_layer_names(spec)
    listing = "conv layers in this spec: " + (", ".join(convs) if convs else "none")
    kinds = {node.name: node.layer.type for node in spec.nodes}
    if layer not in kinds:
        hints = [h for h in (did_you_mean(layer, convs or list(kinds)),) if h] + [listing]
        raise UsageError(f"spec '{spec.name}' has no layer named '{layer}'", hints)
    if layer not in convs:
        drawable = " and ".join(name for name, cls in LAYER_TYPES.items() if cls.is_convolution)
        raise UsageError(f"layer '{layer}' is a {kinds[layer]} layer; only {drawable} layers have filters to draw", [listing])


# --- filters ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GridLayout:
    """rows x cols panels holding ``count`` pictures, filled row by row."""

    rows: int
    cols: int
    count: int


def filter_grid_layout(count: int) -> GridLayout:
    """A grid at most about twice as wide as tall, full when possible.

    cols = the largest divisor of count in [ceil(sqrt(count)), ceil(sqrt(2 * count))], else
    ceil(sqrt(2 * count)); rows = ceil(count / cols). 32 filters give the chapter's 4 x 8 grid,
    64 give 8 x 8, 7 give 2 x 4.
    """
    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    widest = math.ceil(math.sqrt(2 * count))
    divisors = [cols for cols in range(math.ceil(math.sqrt(count)), widest + 1) if count % cols == 0]
    cols = min(count, divisors[-1] if divisors else widest)
    return GridLayout(math.ceil(count / cols), cols, count)


def filter_cell_pixels(layout: GridLayout) -> int:
    """Pixels per kernel: FILTER_CELL_MAX_PIXELS, shrunk so the grid stays within 1,400 px."""
    return max(12, min(FILTER_CELL_MAX_PIXELS, 1400 // layout.cols))


def filters_figure_pixels(layout: GridLayout) -> tuple[int, int]:
    """(width, height) of the filter figure: the grid plus room for titles, ticks and a colour bar."""
    cell = filter_cell_pixels(layout)
    return layout.cols * cell + 190, layout.rows * cell + 110


def filter_panel_extents(layout: GridLayout) -> list[tuple[float, float, float, float]]:
    """Where kernel i is drawn, as an imshow extent (left, right, bottom, top) in data units where
    one kernel is 1 x 1: row i // cols, column i % cols, row 0 at the top, FILTER_GAP apart."""
    step = 1.0 + FILTER_GAP
    extents = []
    for index in range(layout.count):
        row, col = divmod(index, layout.cols)
        extents.append((col * step, col * step + 1.0, -row * step - 1.0, -row * step))
    return extents


def layer_kernels(trained: TrainedRun, layer: str, input_channel: int | None) -> Any:
    """The layer's kernels as a numpy array (out_channels x k_h x k_w): one input channel, or the
    mean over the input channels when ``input_channel`` is None."""
    check_conv_layer(trained.spec, layer)
    weight = trained.model.get_submodule(layer).weight.detach().float().cpu().numpy()
    if input_channel is None:
        return weight.mean(axis=1)
    if not 0 <= input_channel < weight.shape[1]:
        raise UsageError(f"layer '{layer}' has {weight.shape[1]} input channel(s) per filter; "
                         f"--input-channel must be 0..{weight.shape[1] - 1} or 'mean', got {input_channel}")
    return weight[:, input_channel]


def plot_filters(checkpoint: str | Path, layer: str | None = None, output: str | Path | None = None,
                 input_channel: int | None = None, max_filters: int = 256) -> Path:
    """Draw a conv layer's kernels as a grid (see ``filters_figure``); return the PNG path.

    Default layer: the spec's first convolution (a layer class with ``is_convolution``);
    default output: filters_<layer>.png next to the checkpoint.
    """
    trained = load_run(checkpoint, command="visualize")
    if layer is None:
        layer = first_conv_layer(trained.spec)
    check_conv_layer(trained.spec, layer)
    output = png_path(output, trained.checkpoint.parent / f"filters_{layer}.png")
    return save_png(filters_figure(trained, layer, input_channel, max_filters), output)


def filters_figure(trained: TrainedRun, layer: str, input_channel: int | None = None, max_filters: int = 256) -> Any:
    """One small image per output channel of ``layer`` (its first ``max_filters``), laid out by
    ``filter_grid_layout``; colours shared by all kernels and centred at 0 (red positive, blue
    negative) so kernels can be compared."""
    kernels = layer_kernels(trained, layer, input_channel)
    total = kernels.shape[0]
    kernels = kernels[:max_filters]
    layout = filter_grid_layout(kernels.shape[0])
    figure = new_figure(filters_figure_pixels(layout))
    axes = figure.subplots()
    _draw_kernels(figure, axes, kernels, layout)
    in_channels = trained.model.get_submodule(layer).weight.shape[1]
    which = (f"input channel {input_channel} of {in_channels}" if input_channel is not None
             else "the only input channel" if in_channels == 1 else f"mean over {in_channels} input channels")
    shown = f"{total}" if kernels.shape[0] == total else f"first {kernels.shape[0]} of {total}"
    figure.suptitle(f"{trained.spec.name} · {layer}: {shown} filters of "
                    f"{kernels.shape[1]}x{kernels.shape[2]} ({which})", fontsize=12)
    axes.set_title(trained.caption(), fontsize=9, color="0.35")
    return figure


def _draw_kernels(figure: Any, axes: Any, kernels: Any, layout: GridLayout) -> None:
    """Every kernel as its own small image on one axes, a shared colour bar, and ticks that give
    each kernel's index."""
    import numpy as np

    limit = float(np.abs(kernels).max()) or 1.0
    extents = filter_panel_extents(layout)
    for kernel, extent in zip(kernels, extents):
        image = axes.imshow(kernel, cmap=DIVERGING_COLORMAP, vmin=-limit, vmax=limit, extent=extent,
                            interpolation="nearest")
    step = 1.0 + FILTER_GAP
    axes.set_xlim(-FILTER_GAP / 2, layout.cols * step - FILTER_GAP / 2)
    axes.set_ylim(-layout.rows * step + FILTER_GAP / 2, FILTER_GAP / 2)
    axes.set_aspect("equal")
    axes.set_xticks([c * step + 0.5 for c in range(layout.cols)], [str(c) for c in range(layout.cols)])
    axes.set_yticks([-r * step - 0.5 for r in range(layout.rows)], [str(r * layout.cols) for r in range(layout.rows)])
    axes.tick_params(length=0, labelsize=8)
    axes.set_xlabel("filter index = row label + column", fontsize=9)
    for spine in axes.spines.values():
        spine.set_visible(False)
    figure.colorbar(image, ax=axes, shrink=0.9, pad=0.02).set_label("weight (0 = white)", fontsize=9)

