"""Turning a raw image into the tensor an exported model expects, from the model's metadata alone.

Torch-free (PIL + numpy) so the inference service can import it. An exported ``model.onnx`` carries
a model card in its ``metadata_props`` (cnnspec.deploy.model_card); its ``preprocessing`` says what
``preprocess`` does:

    1. decode (PNG/JPEG/...), apply the EXIF orientation;
    2. convert to the card's ``color_mode`` ("L" grey or "RGB"; alpha is dropped, palettes expanded);
    3. resize to (W, H) of the card's ``input_shape`` with PIL's bilinear filter (skipped when the size
       already matches, so a 28x28 digit reaches the model byte for byte as in training);
    4. x = pixel / 255 as float32, then x = (x - mean[c]) / std[c] per channel;
    5. lay out as NCHW with N = 1 (``preprocess_batch`` stacks several images).

This is exactly the transform the training data went through (uint8 pixels / 255, normalised with
the dataset's mean and std), so a served image is seen the way the training images were.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np

from ..errors import CnnspecError

COLOR_MODES = {1: "L", 3: "RGB"}

ImageSource = Union[bytes, bytearray, str, Path, "PIL.Image.Image"]  # noqa: F821 (PIL imported lazily)


class ImageError(CnnspecError):
    """An image file cannot be read, or a model's metadata does not say how to preprocess images."""


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects of an image: colour mode, size, and per-channel normalisation."""

    color_mode: str
    channels: int
    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> "Preprocessing":
        """The preprocessing part of a model card (cnnspec.deploy.model_card.read_preprocessing)."""
        from .model_card import read_preprocessing

        return read_preprocessing(metadata)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


def load_image(source: ImageSource, name: str | None = None) -> "PIL.Image.Image":  # noqa: F821
    """Decode an image from a path, raw bytes or a PIL image; raise ImageError if unreadable.
    ``name`` is what messages call it (default: the path, or "the image bytes")."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(source, Image.Image):
        return source
    name = name or (str(source) if isinstance(source, (str, Path)) else "the image bytes")
    try:
        handle = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray)) else open(source, "rb")
        with handle:
            image = Image.open(handle)
            image.load()
    except FileNotFoundError:
        raise ImageError(f"no image file at {name}") from None
    except UnidentifiedImageError:  # its text names the Python file object, not the file
        raise ImageError(f"{name} is not a readable image (not a format Pillow can decode: PNG, JPEG, "
                         "BMP, GIF, TIFF, WebP, ...)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{name} is not a readable image ({pillow_reason(exc)})") from None
    return ImageOps.exif_transpose(image)


def pillow_reason(error: BaseException) -> str:
    """Pillow's text for a decoding error without the Python objects it names
    ("cannot identify image file <_io.BytesIO object at 0x7f...>")."""
    text = re.sub(r"\s*<_io\.\w+ (?:name=[^>]*|object at 0x[0-9a-f]+)>", "", str(error)).strip()
    return re.sub(r"\s*'[^']*'$", "", text) if text.startswith("cannot identify image file") else text or type(error).__name__


def _convert(image: "PIL.Image.Image", mode: str) -> "PIL.Image.Image":  # noqa: F821
    """Convert to "L" or "RGB"; palette and alpha images go through RGBA so transparency does not
    turn into arbitrary palette colours."""
    if image.mode == mode:
        return image
    if image.mode in ("P", "PA", "LA") or "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode.startswith("I"):
        # 16/32-bit grey: scale to 8 bits instead of clipping everything above 255 to white.
        from PIL import Image

        array = np.asarray(image, dtype=np.float64)
        wide = image.mode.startswith("I;16") or float(array.max(initial=0)) > 255
        array = np.clip(np.round(array / 257.0 if wide else array), 0, 255).astype(np.uint8)
        image = Image.fromarray(array, "L")
    return image.convert(mode)


def to_array(image: ImageSource, preprocessing: Preprocessing, name: str | None = None) -> np.ndarray:
    """One image as float32 [C, H, W]: converted, resized (bilinear), x/255, (x - mean) / std.
    ``name`` is what an error calls the image (see load_image)."""
    from PIL import Image

    picture = _convert(load_image(image, name), preprocessing.color_mode)
    size = (preprocessing.width, preprocessing.height)
    if picture.size != size:
        picture = picture.resize(size, Image.BILINEAR)
    pixels = np.asarray(picture, dtype=np.float32) / np.float32(255.0)
    pixels = pixels.reshape(preprocessing.height, preprocessing.width, preprocessing.channels)
    mean = np.asarray(preprocessing.mean, dtype=np.float32)
    std = np.asarray(preprocessing.std, dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1), dtype=np.float32)


def normalize_pixels(pixels: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 (or 0..255 float) images [N, C, H, W] -> float32 (x / 255 - mean[c]) / std[c]."""
    channels = pixels.shape[1]
    mean_c = np.asarray(list(mean) * channels if len(mean) == 1 else mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std_c = np.asarray(list(std) * channels if len(std) == 1 else std, dtype=np.float32).reshape(1, -1, 1, 1)
    return np.ascontiguousarray((pixels.astype(np.float32) / np.float32(255.0) - mean_c) / std_c, dtype=np.float32)


def preprocess(image: ImageSource, metadata: Mapping[str, str] | Preprocessing) -> np.ndarray:
    """One raw image -> float32 [1, C, H, W], ready for the model's ``input``."""
    preprocessing = metadata if isinstance(metadata, Preprocessing) else Preprocessing.from_metadata(metadata)
    return to_array(image, preprocessing)[None]


def preprocess_batch(images: Sequence[ImageSource], metadata: Mapping[str, str] | Preprocessing) -> np.ndarray:
    """Several raw images -> float32 [N, C, H, W]."""
    preprocessing = metadata if isinstance(metadata, Preprocessing) else Preprocessing.from_metadata(metadata)
    return np.stack([to_array(image, preprocessing) for image in images])


def softmax(logits: np.ndarray) -> np.ndarray:
    """p_i = exp(z_i - max z) / sum_j exp(z_j - max z) along the last axis (stable form)."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def top_k(probabilities: np.ndarray, labels: Sequence[str], k: int) -> list[list[dict[str, Any]]]:
    """Per row, the k most probable classes as {index, label, probability}, most probable first."""
    k = max(1, min(k, probabilities.shape[-1]))
    rows = []
    for row in probabilities:
        order = np.argsort(-row, kind="stable")[:k]
        rows.append([{"index": int(i), "label": labels[i] if i < len(labels) else str(int(i)),
                      "probability": float(row[i])} for i in order])
    return rows

