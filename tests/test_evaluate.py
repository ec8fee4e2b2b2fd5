"""`cnnspec evaluate`: its figures equal a direct computation on the same predictions; its PNGs
are real pictures of the stated size; the per-class arithmetic matches numbers worked by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from cnnspec.train.evaluate import classification_report, most_confident_mistakes
from tests.cli_helpers import run_cli

SPEC = """\
name: eval_cnn
input: {channels: 1, height: 28, width: 28}
layers:
  - {type: conv2d, out_channels: 8, kernel_size: 3, stride: 2}
  - {type: relu}
  - {type: flatten}
  - {type: linear, out_features: 10}
train: {dataset: mnist_sample, epochs: 1, batch_size: 64}
"""


def test_per_class_figures_worked_by_hand() -> None:
    """3 classes; true  0 0 0 1 1 2, predicted 0 0 1 1 2 2.
    class 0: precision 2/2, recall 2/3; class 1: 1/2, 1/2; class 2: 1/2, 1/1."""
    report = classification_report([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["a", "b", "c"])
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert report["accuracy"] == pytest.approx(4 / 6)
    rows = {row["label"]: row for row in report["classes"]}
    assert (rows["a"]["precision"], rows["a"]["recall"], rows["a"]["f1"]) == pytest.approx((1.0, 2 / 3, 0.8))
    assert (rows["b"]["precision"], rows["b"]["recall"], rows["b"]["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert (rows["c"]["precision"], rows["c"]["recall"], rows["c"]["f1"]) == pytest.approx((0.5, 1.0, 2 / 3))
    assert [rows[k]["support"] for k in "abc"] == [3, 2, 1]
    assert report["macro_avg"]["recall"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    assert report["weighted_avg"]["f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    # A class never predicted has precision 0 (not NaN), as scikit-learn's zero_division=0.
    never = classification_report([0, 1], [0, 0], ["a", "b"])
    assert never["classes"][1]["precision"] == 0.0 and never["classes"][1]["f1"] == 0.0


def test_the_most_confident_mistakes_come_first() -> None:
    assert most_confident_mistakes([0, 1, 2, 0, 1], [0, 2, 0, 1, 1], [0.9, 0.6, 0.8, 0.6, 0.99], 2) == [2, 1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cnnspec.train.loop import train

    folder = tmp_path_factory.mktemp("evaluate")
    (folder / "spec.yaml").write_text(SPEC)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(folder / "spec.yaml", folder / "run", reporter_out=open("/dev/null", "w"))
    finally:
        torch.set_num_threads(threads)
    return folder / "run"


def test_evaluate_figures_equal_a_direct_computation(run_dir: Path, capsys) -> None:
    import cnnspec
    from cnnspec.spec.model import parse_spec
    from cnnspec.train.checkpoint import load_checkpoint
    from cnnspec.train.data import load_split

    code, out, err = run_cli(["evaluate", run_dir], capsys)
    assert code == 0, err
    folder = run_dir / "evaluation"
    report = json.loads((folder / "report.json").read_text())

    payload = load_checkpoint(run_dir / "best.pt")
    model = cnnspec.build_model(parse_spec(payload["spec_text"]))
    model.load_state_dict(payload["model"])
    model.eval()
    images, labels = load_split("mnist_sample", None, train=False)
    with torch.no_grad():
        probabilities = model((images.float() / 255 - 0.1307) / 0.3081).softmax(1)
    confidence, predicted = probabilities.max(1)
    true, guess = labels.tolist(), predicted.tolist()

    assert report["images"] == 1000 and report["dataset"] == "mnist_sample" and report["split"] == "test"
    assert report["accuracy"] == sum(t == p for t, p in zip(true, guess)) / 1000
    for digit, row in enumerate(report["classes"]):
        hits = sum(t == p == digit for t, p in zip(true, guess))
        chosen, support = guess.count(digit), true.count(digit)
        assert row["label"] == str(digit) and row["support"] == support
        assert row["precision"] == pytest.approx(hits / chosen if chosen else 0.0)
        assert row["recall"] == pytest.approx(hits / support)
    matrix = [[sum(t == r and p == c for t, p in zip(true, guess)) for c in range(10)] for r in range(10)]
    assert report["confusion_matrix"] == matrix
    rows = list(csv.DictReader((folder / "predictions.csv").open()))
    assert [int(r["predicted"]) for r in rows] == guess and [int(r["true"]) for r in rows] == true
    assert [float(r["confidence"]) for r in rows] == pytest.approx(confidence.tolist(), abs=1e-6)
    wrong = sorted((i for i in range(1000) if true[i] != guess[i]), key=lambda i: (-confidence[i].item(), i))
    assert [m["index"] for m in report["misclassified"]] == wrong[:32]
    assert f"accuracy {report['accuracy']:.2%}" in out and "weighted avg" in out
    assert f"wrote {folder / 'misclassified.png'}" in out


def test_evaluate_writes_real_pictures(run_dir: Path, capsys) -> None:
    from PIL import Image

    code, _, err = run_cli(["evaluate", run_dir, "--misclassified", "12", "--out", run_dir / "twelve"], capsys)
    assert code == 0, err
    with Image.open(run_dir / "twelve" / "confusion_matrix.png") as picture:
        assert picture.format == "PNG" and picture.size == (600, 600)
    with Image.open(run_dir / "twelve" / "misclassified.png") as picture:
        assert picture.size == (8 * 150, 2 * (150 + 18) + 40)  # 12 images: 8 columns, 2 rows
    assert len(json.loads((run_dir / "twelve" / "report.json").read_text())["misclassified"]) == 12


def test_evaluate_refuses_a_dataset_the_model_does_not_fit(run_dir: Path, capsys) -> None:
    code, _, err = run_cli(["evaluate", run_dir, "--dataset", "cifar10"], capsys)
    assert code == 1 and "does not match the images of dataset 'cifar10'" in err and "Traceback" not in err
