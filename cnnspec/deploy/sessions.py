"""onnxruntime sessions for cnnspec's consumers (predict, export's verification, benchmarks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..export import ExportError


def new_session(model: bytes | str | Path, threads: int = 1, optimize: bool = True) -> Any:
    """A CPU onnxruntime session with all graph optimisations (``optimize=False``: none, for
    comparison), ``threads`` intra-op threads and no spinning (spinning threads burn a core between
    calls and distort a neighbour's timing)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    source = str(model) if isinstance(model, Path) else model
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for invalid models
        raise ExportError(f"onnxruntime cannot load the model: {str(exc).strip().splitlines()[0]}") from None
