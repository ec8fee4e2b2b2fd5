"""The cnnspec inference service (KServe Open Inference Protocol V2). Never imports torch."""
