"""Feature maps: what each conv layer of a trained model computes for one real image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .canvas import DIVERGING_COLORMAP, EVAL_COLOR, new_figure, png_path, save_png
from .filters import conv_layer_names
from ..errors import UsageError
from ..train.run import TrainedRun, load_run

FEATURE_CELL_PIXELS = 110
"""Size of one feature-map panel."""

MAX_BARS = 20
"""Class-probability bars drawn in label order up to this many classes; beyond, the top 10."""


def load_image(path: str | Path, shape: tuple[int, int, int], mean: list[float] | None,
               std: list[float] | None, invert: bool = False) -> tuple[Any, Any]:
    """Read a PNG/JPEG of any size and mode exactly as the served model would (cnnspec.deploy.images):
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


def conv_feature_maps(trained: TrainedRun, tensor: Any) -> tuple[dict[str, Any], Any]:
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
    trained = load_run(checkpoint, command="visualize")
    output = png_path(output, trained.checkpoint.parent / f"feature_maps_{Path(image).stem}.png")
    return save_png(feature_maps_figure(trained, image, max_channels, invert), output)


def feature_maps_figure(trained: TrainedRun, image: str | Path, max_channels: int = 8, invert: bool = False) -> Any:
    """Top row: the image as the model sees it and the predicted class probabilities. Then one row
    per conv layer with its ``max_channels`` strongest channels (conv output before activation,
    one colour scale per row, symmetric about 0)."""
    if max_channels < 1:
        raise UsageError(f"--max-channels must be at least 1, got {max_channels}")
    tensor, picture = load_image(image, tuple(trained.spec.input.shape), list(trained.mean), list(trained.std), invert)
    maps, output_vector = conv_feature_maps(trained, tensor)
    if not maps:
        raise UsageError(f"spec '{trained.spec.name}' has no conv2d layer, so there are no feature maps to draw")
    columns = min(max_channels, max(m.shape[0] for m in maps.values()))
    figure = new_figure(feature_maps_figure_pixels(len(maps), columns))
    rows = figure.subfigures(len(maps) + 1, 1)
    _draw_input_row(rows[0], picture, trained, output_vector, max(columns, 3))
    for row, (name, feature_map) in zip(rows[1:], maps.items()):
        _draw_feature_row(row, name, feature_map, columns, max(columns, 3))
    figure.suptitle(f"{trained.spec.name}: feature maps of {Path(image).name}\n"
                    "conv outputs before activation (red > 0 passes a ReLU, blue < 0 is cut); "
                    "strongest channels first", fontsize=10)
    return figure


def _draw_input_row(row: Any, picture: Any, trained: TrainedRun, output_vector: Any, columns: int) -> None:
    """The resized input image, then a bar chart of class probabilities when the output is a class vector."""
    import torch

    grid = row.add_gridspec(1, columns)
    axes = row.add_subplot(grid[0, 0])
    axes.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0.0, vmax=1.0)
    axes.set_xticks([]), axes.set_yticks([])
    channels, height, width = trained.spec.input.shape
    axes.set_title(f"input {height}x{width}", fontsize=9)
    row.supylabel("image", fontsize=9)
    labels = trained.labels
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
