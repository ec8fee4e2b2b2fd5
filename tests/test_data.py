"""Datasets: the built-in sample is real MNIST, real MNIST loads, mismatches and missing data are
reported clearly, batching is a function of (seed, epoch) sharded like DistributedSampler."""

from __future__ import annotations

import typing

import re
from pathlib import Path

import pytest
import torch

from cnnspec.train.options import DatasetName
from cnnspec.train.data import (DATASETS, DatasetError, check_spec_matches, dataset_for_spec, dataset_info, epoch_order,
                          eval_shard, load_split, normalize)
from cnnspec.errors import SpecError
from cnnspec.spec.model import load_spec

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="module")
def real_mnist_train() -> tuple[torch.Tensor, torch.Tensor]:
    return load_split("mnist", SHARED_DATA, train=True)


def test_registry_names_and_normalisation() -> None:
    assert list(DATASETS) == ["mnist", "fashion_mnist", "cifar10", "imagefolder", "mnist_sample"]
    assert tuple(DATASETS) == typing.get_args(DatasetName)  # the table describes exactly the names options.py defines
    assert dataset_info("mnist").mean == (0.1307,) and dataset_info("mnist").std == (0.3081,)
    assert dataset_info("fashion_mnist").mean == (0.2860,) and dataset_info("fashion_mnist").std == (0.3530,)
    assert dataset_info("cifar10").input_shape == (3, 32, 32)
    assert dataset_info("cifar10").std == (0.2470, 0.2435, 0.2616)
    assert dataset_info("mnist_sample").labels == [str(d) for d in range(10)]
    with pytest.raises(DatasetError, match="unknown dataset 'mnsit'.*did you mean 'mnist'"):
        dataset_info("mnsit")


def test_mnist_sample_is_a_balanced_stratified_split() -> None:
    train_images, train_labels = load_split("mnist_sample", None, train=True)
    test_images, test_labels = load_split("mnist_sample", None, train=False)
    assert train_images.shape == (4000, 1, 28, 28) and train_images.dtype == torch.uint8
    assert test_images.shape == (1000, 1, 28, 28) and test_labels.dtype == torch.int64
    assert train_labels.bincount().tolist() == [400] * 10
    assert test_labels.bincount().tolist() == [100] * 10
    # Handwritten digits: about 19% of MNIST's pixels carry ink; the mean pixel is about 33 of 255.
    ink = (train_images > 0).float().mean().item()
    assert 0.15 < ink < 0.25
    assert 25 < train_images.float().mean().item() < 45
    # No image is in both splits.
    train_rows = {bytes(row) for row in train_images.reshape(4000, -1).numpy()}
    assert not any(bytes(row) in train_rows for row in test_images.reshape(1000, -1).numpy())


def test_mnist_sample_images_are_the_first_mnist_training_digits(real_mnist_train) -> None:
    """Per digit, sample train = MNIST's first 400 training images of that digit, test = the next 100."""
    mnist_images, mnist_labels = real_mnist_train
    train_images, train_labels = load_split("mnist_sample", None, train=True)
    test_images, _ = load_split("mnist_sample", None, train=False)
    for digit in (0, 5, 9):
        rows = torch.nonzero(mnist_labels == digit).flatten()
        assert torch.equal(train_images[train_labels == digit], mnist_images[rows[:400]])
        assert torch.equal(test_images[100 * digit:100 * (digit + 1)], mnist_images[rows[400:500]])
    # The very first MNIST training image is a 5: the sample's first 5.
    assert torch.equal(train_images[train_labels == 5][0], mnist_images[0])


def test_real_mnist_from_shared_data(real_mnist_train) -> None:
    images, labels = real_mnist_train
    test_images, test_labels = load_split("mnist", SHARED_DATA, train=False)
    assert images.shape == (60000, 1, 28, 28) and test_images.shape == (10000, 1, 28, 28)
    assert labels[0].item() == 5 and test_labels[0].item() == 7
    assert labels.bincount().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_missing_data_dir_names_the_folder_and_what_it_must_hold(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as caught:
        load_split("mnist", missing, train=True)
    message = str(caught.value)
    assert str(missing / "MNIST" / "raw") in message
    assert f"the data folder ({missing}) must hold MNIST/raw" in message
    assert caught.value.downloadable
    # Flags are the commands' to offer (train: --data-dir, --download; export has no --download):
    # tests/test_train.py checks both commands' messages.
    assert "--" not in message
    assert not missing.exists()  # nothing was created


def test_download_into_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(DatasetError, match="read-only"):
            load_split("fashion_mnist", locked, train=True, download=True)
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_normalize_maps_0_and_255_to_the_standardised_ends() -> None:
    info = dataset_info("mnist")
    images = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1)
    values = normalize(images, info).flatten()
    assert values.dtype == torch.float32
    assert values[0].item() == pytest.approx(-0.1307 / 0.3081, abs=1e-6)
    assert values[1].item() == pytest.approx((1 - 0.1307) / 0.3081, abs=1e-6)
    rgb = normalize(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8), dataset_info("cifar10")).flatten()
    expected = [(1 - m) / s for m, s in zip(dataset_info("cifar10").mean, dataset_info("cifar10").std)]
    assert rgb.tolist() == pytest.approx(expected, abs=1e-6)


def _spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "model.yaml"
    path.write_text(text)
    return path


RGB_SPEC = """\
name: rgb_model
input: {channels: 3, height: 32, width: 32}
layers:
  - {type: conv2d, out_channels: 4, kernel_size: 3}
  - {type: flatten}
  - {type: linear, out_features: 10}
"""


def test_spec_input_that_disagrees_with_the_dataset_is_a_located_error(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path, RGB_SPEC))
    with pytest.raises(SpecError) as caught:
        check_spec_matches(spec, dataset_info("mnist_sample"))
    text = caught.value.render()
    first = text.splitlines()[0]
    assert first == f"{spec.file}:2:19: error: the spec's input does not match the images of dataset 'mnist_sample'"
    assert "expected: input: {channels: 1, height: 28, width: 28}" in text
    assert "received: channels=3, height=32, width=32" in text


def test_output_that_disagrees_with_the_classes_points_at_the_last_layer(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path, RGB_SPEC.replace("channels: 3, height: 32, width: 32", "channels: 1, height: 28, width: 28")
                           .replace("out_features: 10", "out_features: 7")))
    with pytest.raises(SpecError) as caught:
        check_spec_matches(spec, dataset_info("mnist"), (7,))
    assert re.match(rf"{re.escape(spec.file)}:6:5: error: the model's output does not match dataset 'mnist' \(10 classes\)",
                    caught.value.render())
    both = load_spec(_spec(tmp_path, RGB_SPEC.replace("out_features: 10", "out_features: 7")))
    with pytest.raises(SpecError) as caught:
        check_spec_matches(both, dataset_info("mnist"), (7,))
    assert [d.location.line for d in caught.value.diagnostics] == [2, 6]
    assert caught.value.render().endswith("2 errors")


def test_train_command_reports_the_mismatch_with_its_location(tmp_path: Path, capsys) -> None:
    from cnnspec.cli import main

    spec = _spec(tmp_path, RGB_SPEC)
    with pytest.raises(SystemExit) as exited:
        main(["train", str(spec), "--dataset", "mnist_sample", "--out", str(tmp_path / "run")])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert f"{spec}:2:19: error: the spec's input does not match" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


def _write_image(path: Path, value: int, size: tuple[int, int]) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)


def test_imagefolder_resizes_to_the_spec_and_labels_by_folder(tmp_path: Path) -> None:
    root = tmp_path / "pictures"
    for split, count in (("train", 3), ("test", 1)):
        for value, name in ((40, "cat"), (200, "dog")):
            for i in range(count):
                _write_image(root / split / name / f"{i}.png", value, (13 + i, 9))
    spec = load_spec(_spec(tmp_path, RGB_SPEC.replace("channels: 3, height: 32, width: 32", "channels: 1, height: 8, width: 6")
                           .replace("out_features: 10", "out_features: 2")))
    info = dataset_for_spec("imagefolder", spec, root)
    assert info.labels == ["cat", "dog"] and info.input_shape == (1, 8, 6)
    assert info.mean == (0.5,) and info.std == (0.5,)
    images, labels = load_split("imagefolder", root, train=True, input_shape=info.input_shape)
    assert images.shape == (6, 1, 8, 6) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert images[0].unique().tolist() == [40] and images[5].unique().tolist() == [200]
    test_images, test_labels = load_split("imagefolder", root, train=False, input_shape=(3, 4, 4), workers=1)
    assert test_images.shape == (2, 3, 4, 4) and test_labels.tolist() == [0, 1]


def test_imagefolder_without_a_test_split_says_what_layout_it_expects(tmp_path: Path) -> None:
    root = tmp_path / "pictures"
    _write_image(root / "train" / "cat" / "a.png", 10, (4, 4))
    with pytest.raises(DatasetError, match=r"has no test/ \(or val/\) sub-folder; expected .*/train/<class>/\*\.png"):
        load_split("imagefolder", root, train=False, input_shape=(1, 4, 4))
    with pytest.raises(DatasetError, match="no folder .*elsewhere"):
        load_split("imagefolder", tmp_path / "elsewhere", train=True, input_shape=(1, 4, 4))


def test_epoch_order_is_a_function_of_seed_and_epoch_sharded_like_distributed_sampler() -> None:
    from torch.utils.data import DistributedSampler

    first = epoch_order(10, seed=3, epoch=1)
    assert torch.equal(first, epoch_order(10, seed=3, epoch=1))
    assert sorted(first.tolist()) == list(range(10))
    assert not torch.equal(first, epoch_order(10, seed=3, epoch=2))
    shards = [epoch_order(11, seed=3, epoch=1, rank=r, world_size=2) for r in (0, 1)]
    sampler = DistributedSampler(range(11), num_replicas=2, rank=1, shuffle=True, seed=3)
    sampler.set_epoch(1)
    assert shards[1].tolist() == list(sampler)
    assert len(shards[0]) == len(shards[1]) == 6  # padded to equal shards
    assert set(shards[0].tolist()) | set(shards[1].tolist()) == set(range(11))
    # Evaluation shards are exact: every image once.
    assert sorted(eval_shard(11, 0, 2).tolist() + eval_shard(11, 1, 2).tolist()) == list(range(11))


def test_imagefolder_follows_the_order_of_the_spec_labels_and_refuses_labels_that_name_other_folders(
        tmp_path: Path) -> None:
    root = tmp_path / "pictures"
    for split in ("train", "test"):
        for value, name in ((40, "cat"), (200, "dog")):
            _write_image(root / split / name / "0.png", value, (6, 6))
    text = (RGB_SPEC.replace("channels: 3, height: 32, width: 32", "channels: 1, height: 4, width: 4")
            .replace("out_features: 10", "out_features: 2"))
    spec = load_spec(_spec(tmp_path, text.replace("layers:", "labels: [dog, cat]\nlayers:")))
    info = dataset_for_spec("imagefolder", spec, root)
    assert info.labels == ["dog", "cat"]  # the spec's order wins: output 0 is the folder dog/
    images, labels = load_split("imagefolder", root, train=True, input_shape=info.input_shape, classes=info.labels)
    by_class = {int(label): images[i].unique().tolist() for i, label in enumerate(labels)}
    assert by_class == {0: [200], 1: [40]}  # dog's grey 200 is class 0, cat's grey 40 class 1
    wrong = _spec(tmp_path, text.replace("layers:", "labels: [kitten, dog]\nlayers:"))
    with pytest.raises(SpecError) as caught:
        dataset_for_spec("imagefolder", load_spec(wrong), root)
    assert caught.value.render() == (
        f"{wrong}:3:9: error: the spec's labels do not name the class folders of {root / 'train'}\n"
        "    3 | labels: [kitten, dog]\n"
        "      |         ^\n"
        "  expected: the 2 folder names in any order (output i is the folder named labels[i]): cat, dog\n"
        "  received: labels without a folder: kitten; folders without a label: cat\n"
        "  hint: rename the folders or the labels to match, or remove labels: to use the folder names in sorted order")


def test_built_in_datasets_follow_the_order_of_the_spec_labels_and_refuse_other_names(tmp_path: Path) -> None:
    """Labels on a built-in dataset are never silently replaced: a permutation of its class names
    orders the outputs (targets renumbered), other names are a located error."""
    text = RGB_SPEC.replace("channels: 3, height: 32, width: 32", "channels: 1, height: 28, width: 28")
    reverse = [str(d) for d in range(9, -1, -1)]
    spec = load_spec(_spec(tmp_path, text.replace("layers:", f"labels: {reverse}\nlayers:".replace("'", '"'))))
    info = dataset_for_spec("mnist_sample", spec)
    assert info.labels == reverse
    _, native = load_split("mnist_sample", None, train=True)
    images, labels = load_split("mnist_sample", None, train=True, classes=info.labels)
    assert torch.equal(labels, 9 - native)  # digit d is output 9 - d, named "d"
    assert [info.labels[k] for k in labels[:5].tolist()] == [str(d) for d in native[:5].tolist()]
    assert dataset_for_spec("mnist", load_spec(_spec(tmp_path, text))).labels == [str(d) for d in range(10)]
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    wrong = _spec(tmp_path, text.replace("layers:", f"labels: [{', '.join(words[:9])}, '9']\nlayers:"))
    with pytest.raises(SpecError) as caught:
        dataset_for_spec("mnist", load_spec(wrong))
    assert caught.value.render() == (
        f"{wrong}:3:9: error: the spec's labels do not name dataset 'mnist'\n"
        f"    3 | labels: [{', '.join(words[:9])}, '9']\n"
        "      |         ^\n"
        "  expected: the 10 class names in any order (output i is the class named labels[i]): "
        "0, 1, 2, 3, 4, 5, 6, 7, 8, 9\n"
        f"  received: labels without a class: {', '.join(words[:9])}; classes without a label: "
        "0, 1, 2, 3, 4, 5, 6, 7, 8\n"
        "  hint: use the dataset's class names, in any order, or remove labels: to use them as they are")


def test_a_run_trained_with_reordered_labels_keeps_them_through_export_samples(tmp_path: Path) -> None:
    from cnnspec.export.samples import load_samples
    from cnnspec.train.loop import train
    from cnnspec.train.run import load_run
    import io

    reverse = [str(d) for d in range(9, -1, -1)]
    text = (RGB_SPEC.replace("channels: 3, height: 32, width: 32", "channels: 1, height: 28, width: 28")
            .replace("layers:", "labels: " + str(reverse).replace("'", '"') + "\nlayers:"))
    spec = _spec(tmp_path, text)
    result = train(spec, tmp_path / "run", reporter_out=io.StringIO(), dataset="mnist_sample", epochs=1)
    assert result.best_eval_accuracy > 0.5  # learnt with the renumbered targets
    run = load_run(tmp_path / "run" / "best.pt")
    assert run.labels == reverse
    samples = load_samples(run, None, count=10, calibration=0)
    _, native = load_split("mnist_sample", None, train=False)
    assert (samples.test_labels == (9 - native).numpy()).all()  # export checks accuracy against the same numbering
