"""cnnspec: describe a CNN in YAML or JSON, analyse it statically, compile, train, export and serve it.

The public API is small and cheap to import (torch is imported only by ``build_model``):

    spec = cnnspec.load_spec("specs/simple_cnn.yaml")
    report = cnnspec.analyze(spec)            # shapes, params, MACs, receptive fields
    model = cnnspec.build_model(spec)         # a torch.nn.Module with the same numbers
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from .errors import CnnspecError, SpecError

__all__ = ["CnnspecError", "SpecError", "__version__", "analyze", "build_model", "load_spec", "parse_spec"]


def load_spec(path: Any) -> Any:
    """Load and validate a spec file (YAML or JSON); raises cnnspec.errors.SpecError."""
    from .spec.model import load_spec as _load

    return _load(path)


def parse_spec(text: str, file: str = "<string>", *, json_syntax: bool = False) -> Any:
    """Load and validate spec text."""
    from .spec.model import parse_spec as _parse

    return _parse(text, file, json_syntax=json_syntax)


def analyze(spec: Any) -> Any:
    """Static analysis of a Spec (or a path to one): shapes, counts and receptive fields."""
    from .analysis import analyze as _analyze

    if not hasattr(spec, "nodes"):
        spec = load_spec(spec)
    return _analyze(spec)


def build_model(spec_or_path: Any) -> Any:
    """Compile a Spec (or a path to one) to a torch.nn.Module."""
    from .compile import build_model as _build

    return _build(spec_or_path)
