"""Everything an ONNX consumer needs and nothing that imports torch: images, the model repository, predict.

`serving/` builds on this package; the container image copies it whole.
"""
