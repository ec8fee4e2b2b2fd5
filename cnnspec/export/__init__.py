"""Export a trained run to ONNX: conversion (convert), verification (verify, samples), int8
quantization (quantize), the report (report), and the orchestration of all of them (pipeline)."""

from typing import Literal

from ..errors import CnnspecError

QuantizeMode = Literal["none", "dynamic-int8", "static-int8"]
"""``cnnspec export --quantize``: float32 as trained, or int8 (see quantize.py). Defined here, in the
package's cheap ``__init__``, so the command line takes its choices from it without importing numpy."""


class ExportError(CnnspecError):
    """An export cannot be made, or it does not compute what the PyTorch model computes."""
