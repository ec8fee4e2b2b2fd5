"""The spec language: text -> validated Spec (source positions, schema types, blocks, graph, diagnostics).

Pure Python: never imports torch, numpy or onnx. Imports run one way:
source, validation <- types <- blocks, graph <- model (load_spec) <- this package.
"""

from .model import load_spec, parse_spec, spec_from_document
from .types import BlockDefinition, BlockUse, InputSpec, Node, Spec, SpecHeader, TrainConfig

__all__ = [
    "BlockDefinition", "BlockUse", "InputSpec", "Node", "Spec", "SpecHeader", "TrainConfig",
    "load_spec", "parse_spec", "spec_from_document",
]
