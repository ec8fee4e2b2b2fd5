"""The model card: what an exported model.onnx says about itself, in its ONNX ``metadata_props``.

``cnnspec export`` writes one (``ModelCard.to_metadata``); ``cnnspec predict`` and the inference
service read it back (``ModelCard.from_metadata``). This module is the only place that spells a
metadata key. The key names and their encodings are a contract with every model exported so far;
values are strings, JSON where structured:

    cnnspec.spec_name      str           cnnspec.spec_hash    sha256 hex of the spec text
    cnnspec.spec           the spec file text
    cnnspec.labels         JSON [str]    class names, output index order
    cnnspec.input_shape    JSON [C, H, W]
    cnnspec.mean           JSON [float]  one per channel: x = (pixel / 255 - mean[c]) / std[c]
    cnnspec.std            JSON [float]
    cnnspec.color_mode     "L" (1 channel) or "RGB" (3 channels)
    cnnspec.dataset        str           cnnspec.version   the exporting cnnspec's version
    cnnspec.eval_accuracy  float or ""   cnnspec.epoch     int or ""
    cnnspec.input_name     the graph's input ("input")
    cnnspec.output_name    the graph's output ("logits", whatever it holds)
    cnnspec.quantization   "none", "dynamic-int8" or "static-int8"
    cnnspec.outputs        "logits" or "probabilities" (the spec ends in a layer such as softmax)

``outputs`` decides how a consumer turns scores into probabilities: softmax
``p_i = exp(z_i) / sum_j exp(z_j)`` of logits, and probabilities as they are (a second softmax
would flatten a 97% answer towards 1/K).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import Any, Literal, Mapping, get_args

import numpy as np

from . import QuantizeMode
from .images import COLOR_MODES, ImageError, Preprocessing, softmax

Outputs = Literal["logits", "probabilities"]

PREFIX = "cnnspec."
#: card field -> metadata key (the field names are the keys without the prefix, except these)
_RENAMED = {"spec_text": "spec", "cnnspec_version": "version"}


class ModelCardError(ImageError):
    """A model's metadata is not a valid cnnspec model card, so it does not say how to preprocess
    an image or read the output."""


@dataclass(frozen=True)
class ModelCard:
    """Everything a consumer of an exported model needs besides the graph itself."""

    spec_name: str
    spec_hash: str
    spec_text: str
    labels: tuple[str, ...]
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    color_mode: str
    dataset: str
    cnnspec_version: str
    eval_accuracy: float | None
    input_name: str
    output_name: str
    quantization: QuantizeMode
    outputs: Outputs
    epoch: int | None

    @property
    def preprocessing(self) -> Preprocessing:
        """How a raw image becomes this model's input (see cnnspec.deploy.images)."""
        channels, height, width = self.input_shape
        return Preprocessing(self.color_mode, channels, height, width, self.mean, self.std)

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Class probabilities [N, K] from the model's output: softmax of logits, else as they are."""
        scores = np.asarray(scores)
        return softmax(scores) if self.outputs == "logits" else scores.astype(np.float32)

    def to_metadata(self) -> dict[str, str]:
        """The ``metadata_props`` entries, every key of METADATA_KEYS, in the contract's encoding."""
        values = {
            "spec_name": self.spec_name, "spec_hash": self.spec_hash, "spec_text": self.spec_text,
            "labels": json.dumps(list(self.labels)), "input_shape": json.dumps(list(self.input_shape)),
            "mean": json.dumps(list(self.mean)), "std": json.dumps(list(self.std)),
            "color_mode": self.color_mode, "dataset": self.dataset, "cnnspec_version": self.cnnspec_version,
            "eval_accuracy": "" if self.eval_accuracy is None else repr(self.eval_accuracy),
            "input_name": self.input_name, "output_name": self.output_name,
            "quantization": self.quantization, "outputs": self.outputs,
            "epoch": "" if self.epoch is None else str(self.epoch),
        }
        return {key_of(name): value for name, value in values.items()}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> "ModelCard":
        """Read and check a card; raises ModelCardError naming the first missing or malformed key."""
        missing = [key for key in METADATA_KEYS if key not in metadata]
        if missing:
            raise ModelCardError(
                f"model metadata has no {', '.join(repr(k) for k in missing)}; was the model exported by "
                "cnnspec export?")
        preprocessing = read_preprocessing(metadata)
        return cls(
            spec_name=metadata[key_of("spec_name")], spec_hash=metadata[key_of("spec_hash")],
            spec_text=metadata[key_of("spec_text")], labels=_labels(metadata),
            input_shape=preprocessing.input_shape, mean=preprocessing.mean, std=preprocessing.std,
            color_mode=preprocessing.color_mode, dataset=metadata[key_of("dataset")],
            cnnspec_version=metadata[key_of("cnnspec_version")],
            eval_accuracy=_optional_number(metadata, "eval_accuracy", float),
            input_name=_name(metadata, "input_name"), output_name=_name(metadata, "output_name"),
            quantization=_choice(metadata, "quantization", QuantizeMode),
            outputs=_choice(metadata, "outputs", Outputs),
            epoch=_optional_number(metadata, "epoch", int))


def key_of(field_name: str) -> str:
    """The metadata key of a card field: ``cnnspec.`` + its name (``spec_text`` is ``cnnspec.spec``,
    ``cnnspec_version`` is ``cnnspec.version``)."""
    return PREFIX + _RENAMED.get(field_name, field_name)


#: every metadata_props key a card has (and export writes), in field order
METADATA_KEYS = tuple(key_of(f.name) for f in fields(ModelCard))


def read_preprocessing(metadata: Mapping[str, str]) -> Preprocessing:
    """Only the preprocessing part of a card: input_shape, color_mode (implied by the channel count
    when absent), mean and std."""
    shape = _json(metadata, "input_shape")
    mean = _json(metadata, "mean")
    std = _json(metadata, "std")
    if not (isinstance(shape, list) and len(shape) == 3 and all(type(v) is int and v > 0 for v in shape)):
        raise ModelCardError(f"model metadata {key_of('input_shape')} must be [C, H, W] of positive integers; "
                             f"got {shape!r}")
    channels, height, width = shape
    mode = metadata.get(key_of("color_mode")) or COLOR_MODES.get(channels, "")
    if COLOR_MODES.get(channels) != mode:
        raise ModelCardError(
            f"model metadata {key_of('color_mode')}={mode!r} does not fit {channels} input channel(s); "
            "expected 'L' for 1 channel or 'RGB' for 3")
    for name, values in (("mean", mean), ("std", std)):
        if not (isinstance(values, list) and len(values) == channels
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)):
            raise ModelCardError(f"model metadata {key_of(name)} must list {channels} number(s); got {values!r}")
    if any(v <= 0 for v in std):
        raise ModelCardError(f"model metadata {key_of('std')} must be positive; got {std!r}")
    return Preprocessing(mode, channels, height, width, tuple(map(float, mean)), tuple(map(float, std)))


def _json(metadata: Mapping[str, str], name: str) -> Any:
    key = key_of(name)
    if key not in metadata:
        raise ModelCardError(f"model metadata has no '{key}'; was the model exported by cnnspec export?")
    try:
        return json.loads(metadata[key])
    except (TypeError, ValueError):
        raise ModelCardError(f"model metadata '{key}' is not valid JSON: {metadata[key]!r}") from None


def _labels(metadata: Mapping[str, str]) -> tuple[str, ...]:
    labels = _json(metadata, "labels")
    if not (isinstance(labels, list) and all(isinstance(label, str) for label in labels)):
        raise ModelCardError(f"model metadata {key_of('labels')} must be a JSON list of strings; got {labels!r}")
    return tuple(labels)


def _name(metadata: Mapping[str, str], name: str) -> str:
    value = metadata[key_of(name)]
    if not value:
        raise ModelCardError(f"model metadata {key_of(name)} is empty; it names the graph's tensor")
    return value


def _choice(metadata: Mapping[str, str], name: str, allowed: Any) -> Any:
    value, choices = metadata[key_of(name)], get_args(allowed)
    if value not in choices:
        raise ModelCardError(f"model metadata {key_of(name)} must be one of {', '.join(map(repr, choices))}; "
                             f"got {value!r}")
    return value


def _optional_number(metadata: Mapping[str, str], name: str, kind: type) -> Any:
    """"" means unknown; otherwise a finite number of ``kind``."""
    text = metadata[key_of(name)]
    if text == "":
        return None
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value):
        raise ModelCardError(f"model metadata {key_of(name)} must be {'an integer' if kind is int else 'a number'} "
                             f"or empty; got {text!r}")
    return value
