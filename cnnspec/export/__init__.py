"""Export a trained run to ONNX: conversion (convert), verification (verify, samples), int8
quantization (quantize), the report (report), and the orchestration of all of them (pipeline)."""

from ..deploy import QuantizeMode  # noqa: F401  (the one definition; the command line imports it from here)
from ..errors import CnnspecError


class ExportError(CnnspecError):
    """An export cannot be made, or it does not compute what the PyTorch model computes."""
