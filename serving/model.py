"""One loaded model version: an onnxruntime session plus what config.pbtxt and the ONNX metadata say.

Sessions take cnnspec.deploy.sessions' options, which leave a core to the HTTP side: spinning
intra-/inter-op threads are off (a spinning pool burns a core after every call and starves the
event loop on small machines); intra-op threads come from the settings (default 2).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from cnnspec.deploy.model_config import ModelConfig, TensorConfig
from cnnspec.deploy.sessions import session_options

from .errors import ModelLoadError, StartupError
from .settings import ServeSettings

log = logging.getLogger("serving")

# V2 protocol datatype -> numpy dtype (little-endian, as the binary extension requires).
NUMPY_TYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"), "UINT8": np.dtype("u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"), "INT8": np.dtype("i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"), "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
ONNX_TYPES = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16",
              "tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(int16)": "INT16",
              "tensor(int8)": "INT8", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16",
              "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64", "tensor(bool)": "BOOL"}


@dataclass(frozen=True)
class TensorSpec:
    """An input or output as the protocol sees it: ``shape`` includes the batch dim (-1) if batching."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    labels: tuple[str, ...] = ()

    @property
    def dtype(self) -> np.dtype:
        return NUMPY_TYPES[self.datatype]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass
class ModelVersion:
    """A ready-to-run version of a model. ``run`` is thread-safe (onnxruntime sessions are)."""

    name: str
    version: int
    config: ModelConfig
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    metadata: dict[str, str]
    session: Any = field(repr=False)
    output_names: list[str] = field(default_factory=list)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the session on whole-batch inputs; outputs in ``self.outputs`` order."""
        return self.session.run(self.output_names, feeds)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.outputs[0].labels if self.outputs else ()


def providers_for(device: str) -> list[str]:
    """The execution providers for ``--device``; asking for CUDA without onnxruntime-gpu is an error."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if hasattr(ort, "preload_dlls"):  # onnxruntime-gpu >= 1.21: load CUDA/cuDNN from NVIDIA's pip wheels
        ort.preload_dlls()
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise StartupError(
            "--device cuda was requested but onnxruntime has no CUDAExecutionProvider "
            f"(available: {', '.join(available)}). Install onnxruntime-gpu instead of onnxruntime "
            "(pip uninstall onnxruntime && pip install onnxruntime-gpu) on a machine with an NVIDIA GPU, "
            "or run with --device cpu.")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def load_version(model_dir: Path, version: int, config: ModelConfig, settings: ServeSettings) -> ModelVersion:
    """Open ``model_dir/version/<default_model_filename>`` and check it against config.pbtxt."""
    path = model_dir / str(version) / config.default_model_filename
    name = model_dir.name
    try:
        session = ort.InferenceSession(str(path), sess_options=session_options(settings.intra_op_threads),
                                       providers=providers_for(settings.device))
    except StartupError:
        raise
    except Exception as error:  # onnxruntime raises its own exception types for bad files
        raise ModelLoadError(f"model '{name}' version {version}: cannot load {path.name}: {error}") from error
    if settings.device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise StartupError(f"model '{name}' version {version}: onnxruntime did not place the session on "
                           f"CUDA (providers: {session.get_providers()}); check the CUDA/cuDNN libraries")
    max_batch = settings.max_batch_size or config.max_batch_size
    if settings.max_batch_size and config.max_batch_size == 0:
        raise ModelLoadError(f"model '{name}': config.pbtxt has max_batch_size 0 (no batch dimension), "
                             "so --max-batch-size cannot apply")
    labels = _read_labels(model_dir, config)
    inputs = _tensor_specs(name, "input", config.inputs, session.get_inputs(), max_batch, ())
    outputs = _tensor_specs(name, "output", config.outputs, session.get_outputs(), max_batch, labels)
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    return ModelVersion(name, version, config, max_batch, inputs, outputs, metadata, session,
                        [o.name for o in outputs])


def _read_labels(model_dir: Path, config: ModelConfig) -> tuple[str, ...]:
    filename = next((o.label_filename for o in config.outputs if o.label_filename), None)
    if filename is None:
        return ()
    path = (model_dir / filename).resolve()
    if path.parent != model_dir.resolve():
        raise ModelLoadError(f"model '{model_dir.name}': label_filename {filename!r} must name a file "
                             "in the model's folder")
    try:
        return tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except OSError as error:
        raise ModelLoadError(f"model '{model_dir.name}': cannot read labels {filename}: {error}") from error


def _tensor_specs(model: str, kind: str, declared: tuple[TensorConfig, ...], actual: list[Any],
                  max_batch: int, labels: tuple[str, ...]) -> tuple[TensorSpec, ...]:
    """Check config.pbtxt's tensors against the ONNX graph's (names, types, ranks, fixed dims)."""
    by_name = {t.name: t for t in actual}
    if not declared:  # config.pbtxt may omit tensors; take them from the graph
        declared = tuple(TensorConfig(t.name, "TYPE_" + ONNX_TYPES.get(t.type, "INVALID"),
                                      tuple(d if isinstance(d, int) else -1 for d in t.shape[1 if max_batch else 0:]))
                         for t in actual)
    specs = []
    for tensor in declared:
        graph = by_name.get(tensor.name)
        if graph is None:
            raise ModelLoadError(f"model '{model}': config.pbtxt declares {kind} '{tensor.name}' but the ONNX "
                                 f"graph's {kind}s are {sorted(by_name)}")
        if ONNX_TYPES.get(graph.type) != tensor.datatype:
            raise ModelLoadError(f"model '{model}': {kind} '{tensor.name}' is {tensor.data_type} in config.pbtxt "
                                 f"but {graph.type} in the ONNX graph")
        graph_dims = list(graph.shape[1:] if max_batch else graph.shape)
        if len(graph_dims) != len(tensor.dims) or any(
                isinstance(g, int) and d != -1 and g != d for g, d in zip(graph_dims, tensor.dims)):
            raise ModelLoadError(f"model '{model}': {kind} '{tensor.name}' has dims {list(tensor.dims)} in "
                                 f"config.pbtxt but {graph.shape} in the ONNX graph (max_batch_size={max_batch})")
        shape = ((-1,) if max_batch else ()) + tuple(tensor.dims)
        specs.append(TensorSpec(tensor.name, tensor.datatype, shape, labels if tensor.label_filename else ()))
    return tuple(specs)

