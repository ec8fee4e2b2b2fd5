"""Export: ONNX conversion, verification against PyTorch, quantization and the report (torch, onnx)."""
