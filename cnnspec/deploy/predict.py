"""Classify image files locally with an exported model (onnxruntime, no torch).

``MODEL_OR_REPO`` may be a model.onnx file, a model folder (``MODEL_REPO/<name>``, highest version
unless ``--version``) or a repository (``--model NAME``, optional when it holds one model). Each
image is preprocessed as the model's card says (cnnspec.deploy.model_card) and the top-k classes are
reported with probabilities: softmax ``p_i = exp(z_i) / sum_j exp(z_j)`` of logits, or the model's
own output when the card says it already holds probabilities (a spec ending in softmax).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import CnnspecError
from .images import ImageSource, Preprocessing, preprocess_batch, top_k
from .model_card import ModelCard, ModelCardError
from .repository import CONFIG_FILENAME, MODEL_FILENAME, find_model, versions
from .sessions import SessionError, new_session


class PredictError(CnnspecError):
    """A model cannot be found or loaded for prediction."""


def resolve_model(target: str | Path, name: str | None = None, version: int | None = None) -> Path:
    """The model.onnx meant by a file, a model folder or a repository (see the module docstring)."""
    target = Path(target)
    if target.is_file():
        if name is not None or version is not None:
            raise PredictError(f"{target} is a model file; --model and --version apply to a model repository")
        return target
    if not target.is_dir():
        raise PredictError(f"no model file or model repository at {target}")
    if (target / MODEL_FILENAME).is_file() and name is None and version is None:
        return target / MODEL_FILENAME  # a version folder
    if (target / CONFIG_FILENAME).is_file() or versions(target):
        if name is not None and name != target.name:
            raise PredictError(f"{target} is the folder of model '{target.name}', not '{name}'")
        return find_model(target.parent, target.name, version)
    return find_model(target, name, version)


@dataclass
class Predictor:
    """An onnxruntime session plus the model card its metadata holds."""

    path: Path
    session: Any
    card: ModelCard

    @classmethod
    def load(cls, path: str | Path, threads: int = 1) -> "Predictor":
        """Open a model.onnx written by ``cnnspec export``."""
        path = Path(path)
        try:
            session = new_session(path.read_bytes(), threads)
        except SessionError as exc:
            raise PredictError(f"{path}: {exc}") from None
        except OSError as exc:
            raise PredictError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            card = ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map)
        except ModelCardError as exc:
            raise PredictError(f"{path}: {exc}") from None
        return cls(path, session, card)

    @property
    def preprocessing(self) -> Preprocessing:
        return self.card.preprocessing

    @property
    def labels(self) -> list[str]:
        return list(self.card.labels)

    def probabilities(self, images: Sequence[ImageSource]) -> Any:
        """Class probabilities [N, K] for raw images (files, bytes or PIL images), as the card's
        ``outputs`` says: softmax of logits, or the model's own probabilities."""
        batch = preprocess_batch(images, self.preprocessing)
        scores = self.session.run([self.card.output_name], {self.card.input_name: batch})[0]
        return self.card.probabilities(scores)

    def predict(self, images: Sequence[ImageSource], k: int = 3) -> list[list[dict[str, Any]]]:
        """Per image, the top-k {index, label, probability}, most probable first."""
        return top_k(self.probabilities(images), self.labels, k)


def predict_files(model: Path, images: Sequence[Path], k: int) -> list[dict[str, Any]]:
    """The JSON-able result of ``cnnspec predict``: one entry per image file, in order, holding its
    ``predictions`` or, for a file that cannot be read as an image, its ``error``; one bad file
    does not keep the others from being classified."""
    import numpy as np

    from .images import ImageError, to_array

    predictor = Predictor.load(model)
    entries: list[dict[str, Any]] = []
    arrays = []
    for image in images:
        try:
            arrays.append(to_array(image, predictor.preprocessing))
            entries.append({"image": str(image)})
        except ImageError as exc:
            entries.append({"image": str(image), "error": str(exc)})
    if arrays:
        scores = predictor.session.run([predictor.card.output_name], {predictor.card.input_name: np.stack(arrays)})[0]
        rows = iter(top_k(predictor.card.probabilities(scores), predictor.labels, k))
        for entry in entries:
            if "error" not in entry:
                entry["predictions"] = next(rows)
    return entries


def render(results: list[dict[str, Any]], model: Path, format_: str) -> Any:
    """JSON text, or a rich table with one row per image."""
    if format_ == "json":
        return json.dumps({"model": str(model), "results": results}, indent=2)
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    table = Table()
    table.add_column("image")
    table.add_column("top-1")
    table.add_column("probability", justify="right")
    table.add_column("runners-up")
    for entry in results:
        if "error" in entry:
            table.add_row(escape(entry["image"]), "[red]not classified[/red]", "", escape(entry["error"]))
            continue
        best, *rest = entry["predictions"]
        others = ", ".join(f"{escape(p['label'])} {p['probability']:.1%}" for p in rest)
        table.add_row(escape(entry["image"]), escape(best["label"]), f"{best['probability']:.2%}", others)
    # the title on a line of its own: as a table title it would wrap at the table's width
    return Group(Text(f"predictions of {model}"), table)
