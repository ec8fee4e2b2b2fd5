"""Everything an ONNX consumer needs and nothing that imports torch: the model card, images, the
model repository, config.pbtxt, onnxruntime sessions, atomic writes, predict.

`serving/` builds on this package; the container image copies it whole.
"""

from typing import Literal

QuantizeMode = Literal["none", "dynamic-int8", "static-int8"]
"""``cnnspec export --quantize`` and a model card's ``quantization``: float32 as trained, or int8
(export/quantize.py). Defined in this cheap ``__init__`` (no numpy), so the command line takes its
choices from it, and in deploy, so a card can be checked without the export room."""
