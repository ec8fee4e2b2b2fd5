"""What ``cnnspec import SOURCE`` names, loaded without any download.

- ``torchvision:NAME``: ``torchvision.models.get_model(NAME, weights=None)``; the input size comes
  from the weights' own metadata (224 for most, 299 for inception_v3), nothing is fetched.
  googlenet and inception_v3 are built without their auxiliary heads (eval mode never runs them).
- ``timm:NAME``: ``timm.create_model(NAME, pretrained=False)``, input from its ``default_cfg``.
- ``package.module:callable``: an importable function (or class) returning an ``nn.Module``; give
  ``--input CxHxW``.
- ``path/to/model.onnx``: an ONNX file; the input size is read from the graph.
``--state-dict FILE`` then loads the source's weights from a local file (``weights_only=True``).
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .capture import ImportError_

_AUXILIARY = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}


@dataclass
class Loaded:
    module: Any | None            # torch.nn.Module, or None for ONNX
    onnx: Any | None              # onnx.ModelProto
    input_shape: tuple[int, int, int]
    description: str


def parse_input(text: str) -> tuple[int, int, int]:
    """``3x224x224`` -> (3, 224, 224)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ImportError_(f"--input must be CxHxW with positive sizes, e.g. 3x224x224 (got {text!r})")
    return shape  # type: ignore[return-value]


def load_source(source: str, input_shape: tuple[int, int, int] | None, state_dict: Path | None) -> Loaded:
    if source.lower().endswith(".onnx"):
        return _onnx(Path(source), input_shape, state_dict)
    kind, _, name = source.partition(":")
    if not name:
        raise ImportError_(f"unknown SOURCE {source!r}: use torchvision:NAME, timm:NAME, package.module:callable "
                           "or a path to an .onnx file")
    if kind == "torchvision":
        loaded = _torchvision(name, input_shape)
    elif kind == "timm":
        loaded = _timm(name, input_shape)
    else:
        loaded = _callable(kind, name, input_shape)
    if state_dict is not None:
        _load_state_dict(loaded, state_dict, _AUXILIARY.get(name, ()) if kind == "torchvision" else ())
    return loaded


def _torchvision(name: str, input_shape: tuple[int, int, int] | None) -> Loaded:
    import torchvision

    from ..errors import did_you_mean

    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        hint = did_you_mean(name, names)
        raise ImportError_(f"torchvision has no classification model {name!r}" + (f"; {hint}" if hint else ""))
    extra = {"aux_logits": False, "init_weights": False} if name in _AUXILIARY else {}
    module = torchvision.models.get_model(name, weights=None, **extra)
    if input_shape is None:
        crop = torchvision.models.get_model_weights(name).DEFAULT.transforms().crop_size[0]
        input_shape = (3, crop, crop)
    return Loaded(module, None, input_shape, f"torchvision.models.{name}, torchvision {torchvision.__version__}")


def _timm(name: str, input_shape: tuple[int, int, int] | None) -> Loaded:
    try:
        import timm
    except ModuleNotFoundError:
        raise ImportError_("timm:NAME needs timm: pip install timm") from None
    try:
        module = timm.create_model(name, pretrained=False)
    except RuntimeError as error:
        raise ImportError_(f"timm cannot create {name!r}: {error}") from None
    if input_shape is None:
        input_shape = tuple(module.default_cfg["input_size"])  # type: ignore[assignment]
    return Loaded(module, None, input_shape, f"timm {name}, timm {timm.__version__}")


def _callable(module_name: str, attribute: str, input_shape: tuple[int, int, int] | None) -> Loaded:
    import torch

    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ImportError_(f"cannot import {module_name}:{attribute}: {error}") from None
    module = factory()
    if not isinstance(module, torch.nn.Module):
        raise ImportError_(f"{module_name}:{attribute}() returned {type(module).__name__}, not a torch.nn.Module")
    if input_shape is None:
        raise ImportError_(f"{module_name}:{attribute}: give the input size, e.g. --input 3x224x224")
    return Loaded(module, None, input_shape, f"{module_name}:{attribute}")


def _load_state_dict(loaded: Loaded, path: Path, auxiliary: tuple[str, ...]) -> None:
    import torch

    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ImportError_(f"--state-dict: no such file: {path}") from None
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, ... for a bad file
        raise ImportError_(f"--state-dict: {path} is not a torch state_dict file ({error.__class__.__name__})") from None
    if isinstance(weights, dict) and "model" in weights and isinstance(weights["model"], dict):
        weights = weights["model"]  # a cnnspec or training-script checkpoint
    if not isinstance(weights, dict):
        raise ImportError_(f"--state-dict: {path} holds a {type(weights).__name__}, not a state_dict")
    kept = OrderedDict((k, v) for k, v in weights.items() if not k.startswith(auxiliary))
    kept._metadata = getattr(weights, "_metadata", None)  # type: ignore[attr-defined]  # module versions (MNASNet reads them)
    result = loaded.module.load_state_dict(kept, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ImportError_(f"--state-dict {path} does not fit the source model: missing "
                           f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")


def _onnx(path: Path, input_shape: tuple[int, int, int] | None, state_dict: Path | None) -> Loaded:
    import onnx

    if state_dict is not None:
        raise ImportError_("--state-dict is for torch sources; an ONNX file carries its own weights")
    try:
        model = onnx.load(str(path))
    except FileNotFoundError:
        raise ImportError_(f"no such file: {path}") from None
    except Exception as error:  # protobuf's DecodeError and friends
        raise ImportError_(f"{path} is not an ONNX model ({error.__class__.__name__})") from None
    graph_input = model.graph.input[0]
    dims = [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    if input_shape is None:
        if len(dims) != 4 or min(dims[1:]) < 1:
            raise ImportError_(f"{path}: the input '{graph_input.name}' has no fixed [N, C, H, W] shape; give --input CxHxW")
        input_shape = (dims[1], dims[2], dims[3])
    return Loaded(None, model, input_shape, f"the ONNX file {path.name}")
