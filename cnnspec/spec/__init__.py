"""The spec language: text -> validated Spec (source positions, schema types, blocks, graph, diagnostics).

Pure Python: never imports torch, numpy or onnx.
"""
