"""onnxruntime sessions for every consumer of an exported model: predict, export's verification,
the benchmarks and the inference service all take their options from ``session_options``.

Spinning is off for intra- and inter-op threads: a spinning pool burns a core after every call,
which starves an HTTP event loop on a small machine and distorts a neighbour's timing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..errors import CnnspecError

CPU_PROVIDERS = ("CPUExecutionProvider",)


class SessionError(CnnspecError):
    """onnxruntime cannot load a model."""


def session_options(threads: int = 1, optimize: bool = True) -> Any:
    """Sequential execution, ``threads`` intra-op threads (0 = onnxruntime's default, one per
    physical core), no spinning, all graph optimisations (``optimize=False``: none, for comparison)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def new_session(model: bytes | str | Path, threads: int = 1, optimize: bool = True,
                providers: Sequence[str] = CPU_PROVIDERS) -> Any:
    """An onnxruntime session over a model file or its bytes with ``session_options``; raises
    SessionError naming onnxruntime's first line of complaint for an invalid model."""
    import onnxruntime as ort

    source = str(model) if isinstance(model, Path) else model
    try:
        return ort.InferenceSession(source, session_options(threads, optimize), providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own exception types for invalid models
        raise SessionError(f"onnxruntime cannot load the model: {str(exc).strip().splitlines()[0]}") from None
