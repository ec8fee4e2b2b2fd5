"""int8 quantization with onnxruntime.quantization, and the size/latency/accuracy figures of a model."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, get_args

from ..deploy.sessions import new_session
from . import ExportError, QuantizeMode
from .samples import Samples

QUANTIZE_MODES: tuple[str, ...] = get_args(QuantizeMode)


@dataclass
class ModelFigures:
    """Size, speed and test accuracy of one model file."""

    label: str
    size_bytes: int
    latency_ms: dict[int, float]
    accuracy: float | None
    agreement_with_fp32: float | None = None
    #: exact counts behind the fractions: test images, correctly classified, top-1 differing from fp32
    images: int | None = None
    correct: int | None = None
    disagreements: int | None = None


def quantize(fp32: bytes, mode: str, calibration: Any | None) -> bytes:
    """int8 quantization with onnxruntime.quantization, after ``quant_pre_process``.

    - dynamic-int8: ``quantize_dynamic`` of MatMul/Gemm only (int8 weights, activations quantised
      per call). Conv is left in float32 on purpose: onnxruntime runs the dynamic ConvInteger it
      would produce 2-6x slower than the float Conv (measured here).
    - static-int8: ``quantize_static`` in QDQ format, int8 weights per channel and int8 activations
      (S8S8, onnxruntime's recommended x86 choice), MinMax ranges calibrated on training images.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Calibration(CalibrationDataReader):
        def __init__(self, images: Any, batch: int = 32):
            self._batches = iter([{"input": images[i:i + batch]} for i in range(0, len(images), batch)])

        def get_next(self) -> dict[str, Any] | None:
            return next(self._batches, None)

    with tempfile.TemporaryDirectory(prefix="cnnspec-quantize-") as folder:
        source, prepared, output = (Path(folder) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        source.write_bytes(fp32)
        try:
            quant_pre_process(str(source), str(prepared))
            if mode == "dynamic-int8":
                quantize_dynamic(str(prepared), str(output), weight_type=QuantType.QInt8,
                                 op_types_to_quantize=["MatMul", "Gemm"])
            else:
                if calibration is None or not len(calibration):
                    raise ExportError("static-int8 needs calibration images from the training split")
                quantize_static(str(prepared), str(output), Calibration(calibration), quant_format=QuantFormat.QDQ,
                                per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        except ExportError:
            raise
        except Exception as exc:  # onnxruntime.quantization raises assorted types
            raise ExportError(f"{mode} quantization failed: {str(exc).strip().splitlines()[0]}") from None
        if any(p.name.endswith(".data") for p in Path(folder).iterdir()):
            raise ExportError("quantization wrote external weight data; the model must be one file")
        return output.read_bytes()


def latency_ms(session: Any, input_shape: Sequence[int], batch: int, budget_s: float = 0.25) -> float:
    """Median wall time of one ``session.run`` at ``batch``, over as many runs as fit ``budget_s``
    (at least 5, after 3 warm-up runs)."""
    import numpy as np

    inputs = {"input": np.random.default_rng(1).standard_normal((batch, *input_shape)).astype(np.float32)}
    for _ in range(3):
        session.run(None, inputs)
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < 5 or time.perf_counter() < deadline:
        start = time.perf_counter()
        session.run(None, inputs)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000.0


def predictions(session: Any, images: Any, batch: int = 256) -> Any:
    """argmax of the logits over ``images`` in batches."""
    import numpy as np

    parts = [session.run(["logits"], {"input": images[i:i + batch]})[0].argmax(-1) for i in range(0, len(images), batch)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def figures(label: str, data: bytes, input_shape: Sequence[int], samples: Samples | None,
            reference: Any | None = None) -> tuple[ModelFigures, Any]:
    """Size, latency at batch 1 and 32, and test-split accuracy of one model; also its predictions."""
    session = new_session(data)
    latency = {batch: latency_ms(session, input_shape, batch) for batch in (1, 32)}
    predicted, accuracy, agreement, images, correct, differ = None, None, None, None, None, None
    if samples is not None:
        predicted = predictions(session, samples.test_images)
        images, correct = len(predicted), int((predicted == samples.test_labels).sum())
        accuracy = correct / images if images else None
        if reference is not None:
            differ = int((predicted != reference).sum())
            agreement = (images - differ) / images if images else None
    return ModelFigures(label, len(data), latency, accuracy, agreement, images, correct, differ), predicted


def slower_than_fp32(fp32: ModelFigures, int8: ModelFigures) -> str | None:
    """A warning when the int8 model runs slower than fp32 at batch 1 or 32 on this machine
    (onnxruntime's int8 kernels need VNNI/AVX-512 to pay off; without them int8 can lose)."""
    slower = [batch for batch in (1, 32) if int8.latency_ms[batch] > fp32.latency_ms[batch]]
    if not slower:
        return None
    figures_text = ", ".join(f"{int8.latency_ms[b]:.3f} ms vs {fp32.latency_ms[b]:.3f} ms at batch {b}" for b in slower)
    return (f"the {int8.label} model is slower than fp32 on this machine ({figures_text}); "
            "it saves size, not time here: serve the fp32 model unless size matters")
