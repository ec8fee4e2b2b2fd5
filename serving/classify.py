"""``POST /v2/models/{m}/classify``: an uploaded PNG/JPEG in, the top-k labels with probabilities out.

For people, not programs: ``curl -F file=@digit.png http://127.0.0.1:8000/v2/models/simple_cnn/classify?k=3``
or ``curl --data-binary @digit.png -H 'Content-Type: image/png' ...``. Preprocessing comes from the
model card in its ONNX metadata (``cnnspec.deploy.model_card``, read exactly as ``cnnspec predict``
reads it), the image then goes through the model's batcher like any other request, and the output
becomes probabilities as the card's ``outputs`` says: softmax of logits, or as they are when the
spec already ends in softmax.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.requests import Request

from cnnspec.deploy.images import ImageError, Preprocessing, pillow_reason, to_array, top_k
from cnnspec.deploy.model_card import ModelCard, ModelCardError

from .errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from .model import ModelVersion
from .repository import LoadedVersion, ModelEntry
from .settings import ServeSettings
from .statistics import Timing

IMAGE_FORMATS = ("PNG", "JPEG")


@dataclass
class Classified:
    """What classify_upload answered, and with which version and timing (for the statistics)."""

    result: dict[str, Any]
    loaded: LoadedVersion
    timing: Timing


async def classify_upload(request: Request, body: bytes, entry: ModelEntry, version: int | None,
                          settings: ServeSettings) -> Classified:
    """Decode, preprocess, run through the batcher, and rank the classes."""
    k = _top_k_parameter(request.query_params.get("k", "5"))
    image = await _image_bytes(request, body, settings.max_body_bytes)
    model = entry.resolve(version).model
    card = _card(model)
    array = await asyncio.to_thread(decode, image, card.preprocessing, settings.max_image_pixels)
    loaded = entry.resolve(version)  # again after the await: a reload may have swapped versions
    model = loaded.model
    card = _card(model)
    spec = model.inputs[0]
    feed = array if len(spec.shape) == array.ndim else array[0]
    outputs = await loaded.batcher.submit({spec.name: feed}, 1)
    index = next((i for i, o in enumerate(model.outputs) if o.name == card.output_name), 0)
    probabilities = card.probabilities(np.asarray(outputs[index]).reshape(1, -1))
    labels = list(model.labels) or list(card.labels)
    return Classified({"model_name": model.name, "model_version": str(model.version),
                       "predictions": top_k(probabilities, labels, k)[0]}, loaded, outputs.timing)


def _card(model: ModelVersion) -> ModelCard:
    """The model card in the version's ONNX metadata; a model without one cannot take images."""
    try:
        return ModelCard.from_metadata(model.metadata)
    except ModelCardError as error:
        raise BadRequest(f"model '{model.name}' cannot classify images: {error}; use /infer with tensors") from None


def _top_k_parameter(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 9 or int(text) < 1:
        raise BadRequest(f"query parameter k must be a positive integer, got {text!r}")
    return int(text)


async def _image_bytes(request: Request, body: bytes, limit: int) -> bytes:
    """The upload: the single file of a multipart form, or the raw body."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        sent = False

        async def replay() -> dict[str, Any]:  # the body was already read (and size-checked) by the caller
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        form = await Request(request.scope, replay).form(max_files=1, max_fields=10, max_part_size=limit)
        files = [value for _, value in form.multi_items() if hasattr(value, "read")]
        if not files:
            raise BadRequest("the multipart form has no file; upload one image, e.g. curl -F file=@digit.png")
        data = await files[0].read()
    elif content_type.startswith("application/x-www-form-urlencoded"):
        raise UnsupportedMediaType(_form_encoded_message(body))
    else:
        data = body
    if not data:
        raise BadRequest("no image in the request: upload a PNG or JPEG file")
    return data


_SIGNATURES = {b"\x89PNG\r\n\x1a\n": ("PNG", "image/png"), b"\xff\xd8\xff": ("JPEG", "image/jpeg")}


def _form_encoded_message(body: bytes) -> str:
    """A form-encoded body is what ``curl --data-binary @x.png`` sends without -H: when it is an
    image, say which header to set rather than that no image came."""
    for signature, (name, media_type) in _SIGNATURES.items():
        if body.startswith(signature):
            return (f"the body is a {name} image but its Content-Type is application/x-www-form-urlencoded "
                    f"(curl's default for --data-binary); set the header 'Content-Type: {media_type}' "
                    f"(curl -H 'Content-Type: {media_type}' --data-binary @image ...) or upload it as a form "
                    "file (curl -F file=@image ...)")
    return ("a form-encoded body holds no file: upload the image as multipart/form-data (curl -F file=@x.png) "
            "or send it as the raw body with its type (curl -H 'Content-Type: image/png' --data-binary @x.png)")


def decode(data: bytes, preprocessing: Preprocessing, max_pixels: int) -> np.ndarray:
    """PNG/JPEG bytes -> float32 [1, C, H, W]; the pixel count is checked before anything is decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as probe:
            image_format, (width, height) = probe.format, probe.size
    except UnidentifiedImageError:  # its text names a Python BytesIO object
        raise BadRequest(f"the uploaded body is not a readable image; classify accepts "
                         f"{' or '.join(IMAGE_FORMATS)}") from None
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise BadRequest(f"the uploaded body is not a readable image ({pillow_reason(error)})") from None
    if image_format not in IMAGE_FORMATS:
        raise UnsupportedMediaType(f"the upload is {image_format}; classify accepts {' or '.join(IMAGE_FORMATS)}")
    if width * height > max_pixels:
        raise PayloadTooLarge(f"the image is {width}x{height} = {width * height} pixels, over the limit of "
                              f"{max_pixels} (setting max_image_pixels)")
    try:
        return to_array(data, preprocessing, name="the uploaded body")[None]
    except ImageError as error:
        raise BadRequest(str(error)) from None
