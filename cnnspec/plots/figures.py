"""Pictures of a run: training curves, a conv layer's filters, and an image's feature maps.

Every figure is drawn with matplotlib's object API on an Agg canvas (no pyplot: no display, no
global backend state, safe inside a notebook or a server) at a fixed size in pixels, so a PNG's
width and height are known in advance: ``pixels = inches * DPI`` with whole-pixel sizes below.
Files are rendered to bytes and written atomically (``deploy.files.atomic_write_bytes``).

numpy, torch and matplotlib are imported inside the functions that need them: importing this
module is cheap.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError, did_you_mean

DPI = 100
CURVES_PIXELS = (1100, 440)
"""Training-curve figure, width x height in pixels (two panels side by side)."""

FILTER_CELL_MAX_PIXELS = 80
"""Largest on-screen size of one kernel in the filter grid; wide grids shrink it to fit 1,400 px."""

FILTER_GAP = 0.15
"""Gap between kernels in the filter grid, as a fraction of one kernel's width."""

FEATURE_CELL_PIXELS = 110
"""Size of one feature-map panel."""

MAX_BARS = 20
"""Class-probability bars drawn in label order up to this many classes; beyond, the top 10."""

REQUIRED_METRICS = ("epoch", "train_loss", "train_accuracy")
OPTIONAL_METRICS = ("eval_loss", "eval_accuracy")

# Red for positive, blue for negative, white for zero: weights and pre-activation maps are signed.
DIVERGING_COLORMAP = "RdBu_r"
TRAIN_COLOR = "#1f77b4"
EVAL_COLOR = "#d62728"


# --- shared ----------------------------------------------------------------------------------------

def _new_figure(pixels: tuple[int, int]) -> Any:
    """A Figure of exactly ``pixels`` (width, height) at DPI, on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(pixels[0] / DPI, pixels[1] / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, output: Path) -> Path:
    """Render ``figure`` to PNG bytes (no bbox trimming, so the size stays exact), write atomically."""
    from .. import __version__
    from ..deploy.files import atomic_write_bytes

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": f"cnnspec {__version__}"})
    atomic_write_bytes(output, buffer.getvalue())
    return output


def _png_path(output: str | Path | None, default: Path) -> Path:
    path = Path(output) if output is not None else default
    if path.suffix.lower() != ".png":
        raise UsageError(f"cannot write {path}: pictures are written as PNG", [f"use a .png name, e.g. {path.with_suffix('.png')}"])
    return path


# --- training curves -------------------------------------------------------------------------------

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
    output = _png_path(output, run_dir / "curves.png")
    figure = _new_figure(CURVES_PIXELS)
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
    return _save(figure, output)


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


# --- checkpoints -----------------------------------------------------------------------------------

@dataclass
class TrainedModel:
    """A model rebuilt from a checkpoint: the spec it was trained from and its weights, in eval mode."""

    path: Path
    spec: Any
    model: Any
    payload: dict[str, Any]

    @property
    def dataset(self) -> dict[str, Any]:
        return self.payload.get("dataset") or {}

    def caption(self) -> str:
        """'best.pt, epoch 3, eval accuracy 98.9%' (what is known of it)."""
        parts = [self.path.name]
        if isinstance(self.payload.get("epoch"), int):
            parts.append(f"epoch {self.payload['epoch']}")
        metrics = self.payload.get("metrics") or []
        accuracy = metrics[-1].get("eval_accuracy") if metrics and isinstance(metrics[-1], dict) else None
        if isinstance(accuracy, (int, float)):
            parts.append(f"eval accuracy {100 * accuracy:.2f}%")
        if self.dataset.get("name"):
            parts.append(f"dataset {self.dataset['name']}")
        return ", ".join(parts)


def load_trained_model(path: str | Path) -> TrainedModel:
    """Load a checkpoint safely, rebuild its model from the stored spec text and load the weights."""
    from ..train.checkpoint import CheckpointError, check_spec, load_checkpoint, resolve_checkpoint
    from ..compile import build_model
    from ..spec.model import parse_spec

    file = resolve_checkpoint(path)
    payload = load_checkpoint(file)
    text = payload.get("spec_text")
    if not isinstance(text, str):
        raise CheckpointError(f"no spec text in {file}; the model cannot be rebuilt")
    spec = parse_spec(text, f"{file}[spec]")
    check_spec(payload, spec, file)
    model = build_model(spec)
    try:
        model.load_state_dict(payload["model"])
    except (KeyError, RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"the weights in {file} do not fit the spec stored with them ({first})") from None
    model.eval()
    return TrainedModel(file, spec, model, payload)


def conv_layer_names(spec: Any) -> list[str]:
    """Names of the spec's convolution layers, in order."""
    return [node.name for node in spec.nodes if node.layer.is_convolution]


def check_conv_layer(spec: Any, layer: str) -> None:
    """Raise a UsageError unless ``layer`` names a conv layer of ``spec`` (with a suggestion)."""
    convs = conv_layer_names(spec)
    listing = "conv layers in this spec: " + (", ".join(convs) if convs else "none")
    kinds = {node.name: node.layer.type for node in spec.nodes}
    if layer not in kinds:
        hints = [h for h in (did_you_mean(layer, convs or list(kinds)),) if h] + [listing]
        raise UsageError(f"spec '{spec.name}' has no layer named '{layer}'", hints)
    if layer not in convs:
        raise UsageError(f"layer '{layer}' is a {kinds[layer]} layer; only conv2d layers have filters to draw", [listing])


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


def layer_kernels(trained: TrainedModel, layer: str, input_channel: int | None) -> Any:
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


def plot_filters(checkpoint: str | Path, layer: str, output: str | Path | None = None,
                 input_channel: int | None = None, max_filters: int = 256) -> Path:
    """Draw a conv layer's kernels as a grid (see ``filters_figure``); return the PNG path.

    Default output: filters_<layer>.png next to the checkpoint.
    """
    trained = load_trained_model(checkpoint)
    check_conv_layer(trained.spec, layer)
    output = _png_path(output, trained.path.parent / f"filters_{layer}.png")
    return _save(filters_figure(trained, layer, input_channel, max_filters), output)


def filters_figure(trained: TrainedModel, layer: str, input_channel: int | None = None, max_filters: int = 256) -> Any:
    """One small image per output channel of ``layer`` (its first ``max_filters``), laid out by
    ``filter_grid_layout``; colours shared by all kernels and centred at 0 (red positive, blue
    negative) so kernels can be compared."""
    kernels = layer_kernels(trained, layer, input_channel)
    total = kernels.shape[0]
    kernels = kernels[:max_filters]
    layout = filter_grid_layout(kernels.shape[0])
    figure = _new_figure(filters_figure_pixels(layout))
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


# --- feature maps ----------------------------------------------------------------------------------

def load_image(path: str | Path, shape: tuple[int, int, int], mean: list[float] | None,
               std: list[float] | None, invert: bool = False) -> tuple[Any, Any]:
    """Read a PNG/JPEG of any size and mode exactly as the served model would (cnnspec.images):
    converted to grey or RGB, resized to the spec's height x width, x = pixel / 255, optionally
    inverted (x = 1 - x, for dark digits on light paper), then x' = (x - mean_c) / std_c.

    Returns (1 x C x H x W float tensor, the 0..1 picture the model sees, for display).
    """
    import numpy as np
    import torch

    from ..deploy.images import COLOR_MODES, Preprocessing, to_array

    channels, height, width = shape
    if channels not in COLOR_MODES:
        raise UsageError(f"the model takes {channels}-channel input; only 1 (grey) and 3 (RGB) channel images can be loaded")
    mean_c = _per_channel(mean or [0.0], channels)
    std_c = _per_channel(std or [1.0], channels)
    preprocessing = Preprocessing(COLOR_MODES[channels], channels, height, width, mean_c, std_c)
    normalised = to_array(path, preprocessing)
    scale, shift = np.asarray(std_c, np.float32)[:, None, None], np.asarray(mean_c, np.float32)[:, None, None]
    pixels = normalised * scale + shift
    if invert:
        pixels = 1.0 - pixels
        normalised = (pixels - shift) / scale
    picture = pixels[0] if channels == 1 else pixels.transpose(1, 2, 0)
    return torch.from_numpy(np.ascontiguousarray(normalised, dtype=np.float32)).unsqueeze(0), np.clip(picture, 0.0, 1.0)


def _per_channel(values: list[float], channels: int) -> tuple[float, ...]:
    """One value per channel: a single value is repeated (e.g. a grey mean for an RGB model)."""
    if len(values) == channels:
        return tuple(float(v) for v in values)
    if len(values) == 1:
        return (float(values[0]),) * channels
    raise UsageError(f"the checkpoint's dataset statistics have {len(values)} values for {channels} channel(s)")


def conv_feature_maps(trained: TrainedModel, tensor: Any) -> tuple[dict[str, Any], Any]:
    """Run the model once; return each conv layer's output (before any activation) as a numpy
    array C x H x W, and the model's output for the image."""
    import torch

    maps: dict[str, Any] = {}
    handles = []
    for name in conv_layer_names(trained.spec):
        def keep(_module: Any, _inputs: Any, result: Any, name: str = name) -> None:
            maps[name] = result[0].detach().float().cpu().numpy()
        handles.append(trained.model.get_submodule(name).register_forward_hook(keep))
    try:
        with torch.no_grad():
            output = trained.model(tensor)
    finally:
        for handle in handles:
            handle.remove()
    return maps, output[0]


def feature_maps_figure_pixels(conv_layers: int, columns: int) -> tuple[int, int]:
    """(width, height): one row for the input and prediction, one per conv layer, ``columns``
    panels of FEATURE_CELL_PIXELS each (at least 3), plus room for row labels and the two-line
    title; at least 800 pixels wide so the title fits."""
    return max(max(columns, 3) * FEATURE_CELL_PIXELS + 150, 800), (conv_layers + 1) * (FEATURE_CELL_PIXELS + 22) + 90


def strongest_channels(feature_map: Any, count: int) -> list[int]:
    """The ``count`` channels with the largest mean absolute response, strongest first."""
    import numpy as np

    strength = np.abs(feature_map).reshape(feature_map.shape[0], -1).mean(axis=1)
    return [int(i) for i in np.argsort(-strength, kind="stable")[:count]]


def plot_feature_maps(checkpoint: str | Path, image: str | Path, output: str | Path | None = None,
                      max_channels: int = 8, invert: bool = False) -> Path:
    """Draw what each conv layer computes for one image (see ``feature_maps_figure``); return the
    PNG path. Default output: feature_maps_<image name>.png next to the checkpoint."""
    trained = load_trained_model(checkpoint)
    output = _png_path(output, trained.path.parent / f"feature_maps_{Path(image).stem}.png")
    return _save(feature_maps_figure(trained, image, max_channels, invert), output)


def feature_maps_figure(trained: TrainedModel, image: str | Path, max_channels: int = 8, invert: bool = False) -> Any:
    """Top row: the image as the model sees it and the predicted class probabilities. Then one row
    per conv layer with its ``max_channels`` strongest channels (conv output before activation,
    one colour scale per row, symmetric about 0)."""
    if max_channels < 1:
        raise UsageError(f"--max-channels must be at least 1, got {max_channels}")
    dataset = trained.dataset
    tensor, picture = load_image(image, tuple(trained.spec.input.shape), dataset.get("mean"), dataset.get("std"), invert)
    maps, output_vector = conv_feature_maps(trained, tensor)
    if not maps:
        raise UsageError(f"spec '{trained.spec.name}' has no conv2d layer, so there are no feature maps to draw")
    columns = min(max_channels, max(m.shape[0] for m in maps.values()))
    figure = _new_figure(feature_maps_figure_pixels(len(maps), columns))
    rows = figure.subfigures(len(maps) + 1, 1)
    _draw_input_row(rows[0], picture, trained, output_vector, max(columns, 3))
    for row, (name, feature_map) in zip(rows[1:], maps.items()):
        _draw_feature_row(row, name, feature_map, columns, max(columns, 3))
    figure.suptitle(f"{trained.spec.name}: feature maps of {Path(image).name}\n"
                    "conv outputs before activation (red > 0 passes a ReLU, blue < 0 is cut); "
                    "strongest channels first", fontsize=10)
    return figure


def _draw_input_row(row: Any, picture: Any, trained: TrainedModel, output_vector: Any, columns: int) -> None:
    """The resized input image, then a bar chart of class probabilities when the output is a class vector."""
    import torch

    grid = row.add_gridspec(1, columns)
    axes = row.add_subplot(grid[0, 0])
    axes.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0.0, vmax=1.0)
    axes.set_xticks([]), axes.set_yticks([])
    channels, height, width = trained.spec.input.shape
    axes.set_title(f"input {height}x{width}", fontsize=9)
    row.supylabel("image", fontsize=9)
    labels = trained.spec.labels or trained.dataset.get("labels")
    if output_vector.ndim != 1 or not labels or len(labels) != output_vector.shape[0]:
        return
    final = trained.spec.nodes[-1].layer
    probabilities = output_vector if final.produces_probabilities else torch.softmax(output_vector, dim=0)
    probabilities = probabilities.float().cpu().numpy()
    best = int(probabilities.argmax())
    # Up to MAX_BARS classes in label order; with more (ImageNet's 1,000) the most probable ones.
    shown = list(range(len(labels))) if len(labels) <= MAX_BARS else [int(i) for i in (-probabilities).argsort()[:10]]
    bars = row.add_subplot(grid[0, 1:])
    bars.bar(range(len(shown)), probabilities[shown], color=[EVAL_COLOR if i == best else "0.6" for i in shown])
    bars.set_xticks(range(len(shown)), [str(labels[i]) for i in shown])
    bars.set_ylim(0, 1)
    bars.set_ylabel("probability", fontsize=9)
    top = "" if len(shown) == len(labels) else f", top {len(shown)} of {len(labels)} classes"
    bars.set_title(f"prediction: {labels[best]} ({100 * probabilities[best]:.1f}%{top})", fontsize=10)
    bars.tick_params(labelsize=8)
    bars.spines[["top", "right"]].set_visible(False)


def _draw_feature_row(row: Any, name: str, feature_map: Any, shown: int, columns: int) -> None:
    """Up to ``shown`` channels of one layer, sharing a colour scale centred at 0."""
    import numpy as np

    chosen = strongest_channels(feature_map, shown)
    limit = float(np.abs(feature_map[chosen]).max()) or 1.0
    panels = row.subplots(1, columns, squeeze=False)[0]
    for axes in panels[len(chosen):]:
        axes.set_axis_off()
    for axes, channel in zip(panels, chosen):
        axes.set_xticks([]), axes.set_yticks([])
        axes.imshow(feature_map[channel], cmap=DIVERGING_COLORMAP, vmin=-limit, vmax=limit, interpolation="nearest")
        axes.set_title(f"ch {channel}", fontsize=8)
    channels, height, width = feature_map.shape
    row.supylabel(f"{name}\n{channels}x{height}x{width}\n±{limit:.2g}", fontsize=9)
