"""Export a trained run to ONNX, prove it computes what PyTorch computes, and write it to a model
repository.

Pipeline (nothing is written until every check has passed):

1. load: ``RUN_DIR/best.pt`` (else ``last.pt``) or a checkpoint file; the spec is rebuilt from the
   checkpoint's own ``spec_text`` and must hash to its ``spec_hash``; a spec given with ``--spec``
   or found as ``RUN_DIR/spec.yaml`` must have the same hash, else the export is refused.
2. export: ``torch.onnx.export(..., dynamo=True)``, opset 18 (``OPSET``), input ``input`` float32
   [batch, C, H, W], output ``logits`` float32 [batch, K], the batch dimension dynamic and named
   ``batch``. The dynamo exporter is chosen explicitly: it is torch's maintained path (the
   TorchScript exporter, ``dynamo=False``, is deprecated since torch 2.9 and warns that it will be
   removed) and it emits the same plain Conv/Relu/MaxPool/Gemm graph, which onnxruntime still fuses
   (Conv+Relu, NCHWc layouts, Gemm+Relu). Weights are embedded in model.onnx (the dynamo path's
   ``model.onnx.data`` side file would break a repository that copies only model.onnx).
3. metadata: the ``cnnspec.*`` ``metadata_props`` (cnnspec.images.METADATA_KEYS) that let a server
   preprocess a raw image from the file alone.
4. checks: ``onnx.checker.check_model(full_check=True)``, strict ``onnx.shape_inference``; the
   inferred output shape must be [batch, *static analysis output shape].
5. verification: onnxruntime vs PyTorch on random inputs and on real test-split images, at batch 1
   and at odd batches: max |ort - torch| <= 1e-4 (fp32) and 100% top-1 agreement on real images.
6. optional int8 quantization (onnxruntime.quantization); the quantized model is what is written.
7. write: ``MODEL_REPO/<name>/<version>/model.onnx`` + config.pbtxt + labels.txt, atomically
   (cnnspec.repository), and/or ``-o FILE``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .. import __version__
from ..train.checkpoint import CheckpointError, atomic_write_bytes, check_spec, load_checkpoint, resolve_checkpoint
from ..errors import CnnspecError
from ..deploy.images import COLOR_MODES, normalize_pixels
from ..deploy.repository import (
    CONFIG_FILENAME, LABELS_FILENAME, ServingConfig, check_target, render_config, render_labels, write_model,
)

OPSET = 18
MIN_OPSET = 18  # the dynamo exporter's own; its down-conversion to 17 fails for BatchNorm/ReduceMean graphs
TOLERANCE = 1e-4
RANDOM_BATCHES = (1, 7)
DEFAULT_SAMPLES = 63  # odd, so a batch-size bug that only shows on odd sizes cannot hide
QUANTIZE_MODES = ("none", "dynamic-int8", "static-int8")
MAX_PROTO_BYTES = 2**31 - 1  # protobuf's limit for a single serialised model


class ExportError(CnnspecError):
    """An export cannot be made, or it does not compute what the PyTorch model computes."""


# --- loading a trained run ---------------------------------------------------------------------

@dataclass
class TrainedRun:
    """A checkpoint with its spec, static analysis and loaded (eval-mode) torch module."""

    checkpoint: Path
    payload: dict[str, Any]
    spec: Any
    analysis: Any
    model: Any

    @property
    def dataset(self) -> dict[str, Any]:
        """The checkpoint's dataset description: name, mean, std, labels, input_shape."""
        return dict(self.payload.get("dataset") or {})

    @property
    def labels(self) -> list[str]:
        """Class names: the dataset's, else the spec's, else "0".."K-1"."""
        classes = int(self.analysis.output_shape[0])
        labels = self.dataset.get("labels") or self.spec.labels or [str(i) for i in range(classes)]
        return [str(label) for label in labels]

    @property
    def eval_accuracy(self) -> float | None:
        """This checkpoint's eval accuracy: its last metrics entry's, else the recorded best."""
        metrics = self.payload.get("metrics") or []
        value = metrics[-1].get("eval_accuracy") if metrics and isinstance(metrics[-1], dict) else None
        if value is None:
            value = self.payload.get("best_eval_accuracy")
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def load_run(path: str | Path, spec_file: str | Path | None = None) -> TrainedRun:
    """Load a checkpoint, rebuild its spec from the stored text, refuse mismatched specs, load weights."""
    from ..analysis import analyze
    from ..spec.model import load_spec, parse_spec

    checkpoint = resolve_checkpoint(path)
    payload = load_checkpoint(checkpoint)
    text = payload.get("spec_text")
    if not isinstance(text, str) or not isinstance(payload.get("model"), dict):
        raise CheckpointError(f"{checkpoint} lacks its spec text or weights; it is not a complete cnnspec checkpoint")
    spec = parse_spec(text, f"{checkpoint}[spec]", json_syntax=text.lstrip().startswith("{"))
    if spec.hash != payload.get("spec_hash"):
        raise CheckpointError(f"{checkpoint} is corrupt: its spec text does not hash to its recorded spec_hash")
    others = [Path(spec_file)] if spec_file else []
    if (checkpoint.parent / "spec.yaml").is_file():  # the run directory's copy of the spec
        others.append(checkpoint.parent / "spec.yaml")
    for other in others:
        check_spec(payload, load_spec(other), checkpoint)
    analysis = analyze(spec)
    return TrainedRun(checkpoint, payload, spec, analysis, _load_model(spec, analysis, payload, checkpoint))


def _load_model(spec: Any, analysis: Any, payload: dict[str, Any], checkpoint: Path) -> Any:
    from ..compile import CompiledModel

    model = CompiledModel(spec, analysis)
    try:
        model.load_state_dict(payload["model"], strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0:2]
        raise CheckpointError(f"the weights in {checkpoint} do not fit spec '{spec.name}': {' '.join(first)}") from None
    return model.eval()


# --- ONNX graph --------------------------------------------------------------------------------

def metadata_for(run: TrainedRun, quantization: str = "none") -> dict[str, str]:
    """The ``metadata_props`` of an exported model: every key of cnnspec.images.METADATA_KEYS plus
    ``cnnspec.quantization``, ``cnnspec.outputs`` ("logits", or "probabilities" when the spec ends
    in softmax) and ``cnnspec.epoch``."""
    shape = [int(v) for v in run.spec.input.shape]
    dataset = run.dataset
    mean = [float(v) for v in dataset.get("mean") or [0.0]]
    std = [float(v) for v in dataset.get("std") or [1.0]]
    if len(mean) == 1 and shape[0] > 1:
        mean, std = mean * shape[0], std * shape[0]
    accuracy = run.eval_accuracy
    return {
        "cnnspec.spec_name": run.spec.name,
        "cnnspec.spec_hash": run.spec.hash,
        "cnnspec.spec": run.spec.text,
        "cnnspec.labels": json.dumps(run.labels),
        "cnnspec.input_shape": json.dumps(shape),
        "cnnspec.mean": json.dumps(mean),
        "cnnspec.std": json.dumps(std),
        "cnnspec.color_mode": COLOR_MODES.get(shape[0], ""),
        "cnnspec.dataset": str(dataset.get("name") or ""),
        "cnnspec.version": __version__,
        "cnnspec.eval_accuracy": "" if accuracy is None else repr(accuracy),
        "cnnspec.input_name": "input",
        "cnnspec.output_name": "logits",
        "cnnspec.quantization": quantization,
        "cnnspec.outputs": "probabilities" if run.spec.nodes[-1].layer.produces_probabilities else "logits",
        "cnnspec.epoch": str(run.payload.get("epoch", "")),
    }


def to_onnx(model: Any, input_shape: Sequence[int], opset: int = OPSET) -> Any:
    """torch module -> onnx.ModelProto with weights inline, ``input``/``logits`` and a dynamic
    ``batch`` dimension. The example batch is 2: torch.export specialises a dimension of size 1."""
    import onnx
    import torch

    highest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= highest:
        raise ExportError(f"--opset {opset} is not supported; use {MIN_OPSET} to {highest} (default {OPSET})")
    example = torch.zeros((2, *input_shape), dtype=torch.float32)
    chatter = io.StringIO()  # the exporter prints progress lines; keep them for an error message only
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter), _quiet_loggers(), \
                torch.inference_mode(False):
            program = torch.onnx.export(
                model, (example,), None, dynamo=True, opset_version=opset, input_names=["input"],
                output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                external_data=False, verbose=False)
    except Exception as exc:  # the exporter raises many types; all mean "this model cannot be exported"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"torch.onnx.export failed: {first}") from None
    proto = program.model_proto
    produced = {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")}
    if produced != {opset}:
        # the exporter falls back to its own opset when the version converter fails; say so
        raise ExportError(f"torch.onnx.export could not produce opset {opset} (it produced "
                          f"{', '.join(map(str, sorted(produced)))}); use --opset {OPSET}")
    return proto


@contextlib.contextmanager
def _quiet_loggers(names: Sequence[str] = ("torch.onnx", "onnxscript", "torch.export")) -> Any:
    """Silence the exporter's loggers (they log tracebacks of fallbacks that are not errors)."""
    import logging

    saved = [(logging.getLogger(name), logging.getLogger(name).level) for name in names]
    for logger, _ in saved:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


def finish_graph(proto: Any, metadata: dict[str, str], output_shape: Sequence[int]) -> bytes:
    """Set metadata, run the ONNX checks, and serialise with every weight embedded."""
    import onnx

    set_metadata(proto, metadata)
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise ExportError(f"initializer {tensor.name} refers to external data; weights must be embedded")
    check_graph(proto, output_shape)
    data = proto.SerializeToString()
    if len(data) > MAX_PROTO_BYTES:
        raise ExportError(f"the model is {len(data):,} bytes, over protobuf's 2 GB limit for one file")
    return data


def set_metadata(proto: Any, metadata: dict[str, str]) -> None:
    """Replace the model's ``cnnspec.*`` metadata_props with ``metadata``; keep other tools' keys."""
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    for key, value in [*kept, *metadata.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def check_graph(proto: Any, output_shape: Sequence[int]) -> list[Any]:
    """Full ONNX check and strict shape inference; returns the inferred output dims, which must be
    [batch, *output_shape] with the input's batch dimension named ``batch``."""
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the ONNX graph fails onnx's checks: {str(exc).strip().splitlines()[0]}") from None
    inputs = [i.name for i in inferred.graph.input]
    outputs = [o.name for o in inferred.graph.output]
    if inputs != ["input"] or outputs != ["logits"]:
        raise ExportError(f"the ONNX graph has inputs {inputs} and outputs {outputs}; expected ['input'] and ['logits']")
    dims = [d.dim_param or d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]
    first_input = inferred.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    if first_input != "batch" or dims != ["batch", *[int(v) for v in output_shape]]:
        raise ExportError(
            f"ONNX shapes disagree with the static analysis: output {dims}, expected ['batch', "
            f"{', '.join(map(str, output_shape))}] (input batch dimension {first_input!r})")
    return dims


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


# --- verification ------------------------------------------------------------------------------

@dataclass
class Check:
    """One onnxruntime-vs-PyTorch comparison."""

    inputs: str
    batch: int
    max_abs_diff: float
    top1_agreement: float
    onnx_shape: list[int]
    expected_shape: list[int]
    tolerance: float
    require_top1: bool

    @property
    def passed(self) -> bool:
        return (self.max_abs_diff <= self.tolerance and self.onnx_shape == self.expected_shape
                and (self.top1_agreement == 1.0 or not self.require_top1))


def compare(session: Any, model: Any, inputs: Any, source: str, output_shape: Sequence[int],
            tolerance: float, require_top1: bool) -> Check:
    """Run both on the same float32 batch: max |ort - torch| and the fraction of equal argmaxes."""
    import numpy as np
    import torch

    batch = np.ascontiguousarray(inputs, dtype=np.float32)
    ort_out = session.run(["logits"], {"input": batch})[0]
    with torch.inference_mode():
        torch_out = model(torch.from_numpy(batch)).numpy()
    same_shape = ort_out.shape == torch_out.shape
    diff = float(np.abs(ort_out - torch_out).max()) if same_shape else math.inf
    agree = float((ort_out.argmax(-1) == torch_out.argmax(-1)).mean()) if same_shape else 0.0
    expected = [len(batch), *map(int, output_shape)]
    return Check(source, len(batch), diff, agree, list(ort_out.shape), expected, tolerance, require_top1)


def verify(session: Any, model: Any, input_shape: Sequence[int], output_shape: Sequence[int],
           real_images: Any | None, tolerance: float = TOLERANCE, seed: int = 0) -> list[Check]:
    """Random N(0, 1) inputs (in normalised units) at batch 1 and 7, then real images at batch 1
    and at the whole odd-sized sample; top-1 agreement must be 100% on the real images."""
    import numpy as np

    generator = np.random.default_rng(seed)
    checks = [compare(session, model, generator.standard_normal((n, *input_shape)).astype(np.float32),
                      "random", output_shape, tolerance, False) for n in RANDOM_BATCHES]
    if real_images is not None and len(real_images):
        for batch in (real_images[:1], real_images):
            checks.append(compare(session, model, batch, "dataset", output_shape, tolerance, True))
    return checks


# --- data --------------------------------------------------------------------------------------

@dataclass
class Samples:
    """Normalised float32 images of the run's dataset: a verification sample, the test split
    (with labels), and calibration images from the training split."""

    dataset: str
    verify: Any
    test_images: Any
    test_labels: Any
    calibration: Any | None


def load_samples(run: TrainedRun, data_dir: str | Path | None, count: int, calibration: int) -> Samples:
    """Load the run's dataset with cnnspec.data and normalise with the checkpoint's mean/std."""
    from ..train.data import load_split

    dataset = run.dataset
    name = dataset.get("name")
    if not name:
        raise ExportError(f"{run.checkpoint} does not say which dataset it was trained on")
    data_dir = data_dir or (run.payload.get("train_config") or {}).get("data_dir")
    shape = tuple(int(v) for v in run.spec.input.shape)
    mean, std = dataset.get("mean") or [0.0], dataset.get("std") or [1.0]
    images, labels = load_split(name, data_dir, train=False, input_shape=shape)
    test = normalize_pixels(images.numpy(), mean, std)
    calib = None
    if calibration > 0:
        train_images, _ = load_split(name, data_dir, train=True, input_shape=shape)
        step = max(1, len(train_images) // calibration)  # spread over classes (files are grouped by class)
        calib = normalize_pixels(train_images[::step][:calibration].numpy(), mean, std)
    spread = max(1, len(test) // max(count, 1))
    return Samples(name, test[::spread][:count], test, labels.numpy(), calib)


# --- quantization ------------------------------------------------------------------------------

@dataclass
class ModelFigures:
    """Size, speed and test accuracy of one model file."""

    label: str
    size_bytes: int
    latency_ms: dict[int, float]
    accuracy: float | None
    agreement_with_fp32: float | None = None


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
    predicted, accuracy, agreement = None, None, None
    if samples is not None:
        predicted = predictions(session, samples.test_images)
        accuracy = float((predicted == samples.test_labels).mean())
        if reference is not None:
            agreement = float((predicted == reference).mean())
    return ModelFigures(label, len(data), latency, accuracy, agreement), predicted


# --- the whole export --------------------------------------------------------------------------

@dataclass
class ExportOptions:
    """Everything ``cnnspec export`` takes (see the CLI for each flag's meaning)."""

    source: Path
    repo: Path | None = None
    name: str | None = None
    version: int | None = None
    opset: int = OPSET
    quantize: str = "none"
    output: Path | None = None
    data_dir: Path | None = None
    spec_file: Path | None = None
    data_check: bool = True
    samples: int = DEFAULT_SAMPLES
    calibration_samples: int = 256
    tolerance: float = TOLERANCE
    max_accuracy_drop: float = 0.01
    serving: ServingConfig = field(default_factory=ServingConfig)


@dataclass
class ExportResult:
    """The verified model bytes and everything the report shows; nothing is written yet."""

    run: TrainedRun
    options: ExportOptions
    model_bytes: bytes
    fp32_bytes: bytes
    checks: list[Check]
    output_dims: list[Any]
    data_note: str
    quantization: list[ModelFigures] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.problems


def build(options: ExportOptions, run: TrainedRun | None = None) -> ExportResult:
    """Load (unless ``run`` is given), export, check, verify and (optionally) quantize, in memory."""
    started = time.perf_counter()
    if options.quantize not in QUANTIZE_MODES:
        raise ExportError(f"unknown --quantize {options.quantize!r}; choose one of {', '.join(QUANTIZE_MODES)}")
    if not options.data_check and options.quantize != "none":
        raise ExportError("--quantize needs the dataset (calibration and the accuracy change on the test "
                          "split); drop --no-data-check")
    run = run or load_run(options.source, options.spec_file)
    output_shape = [int(v) for v in run.analysis.output_shape]
    if len(output_shape) != 1 or len(run.labels) != output_shape[0]:
        raise ExportError(
            f"spec '{run.spec.name}' outputs {output_shape}; export needs a classifier whose last layer gives "
            f"one score per class ({len(run.labels)} labels)")
    input_shape = [int(v) for v in run.spec.input.shape]
    samples, note = _samples(run, options)
    proto = to_onnx(run.model, input_shape, options.opset)
    fp32 = finish_graph(proto, metadata_for(run, "none"), output_shape)
    dims = ["batch", *output_shape]  # what check_graph (inside finish_graph) proved
    checks = verify(new_session(fp32), run.model, input_shape, output_shape,
                    samples.verify if samples else None, options.tolerance)
    result = ExportResult(run, options, fp32, fp32, checks, dims, note)
    result.problems = [_describe(check) for check in checks if not check.passed]
    if options.quantize != "none" and result.passed:
        _quantize_into(result, samples, input_shape, output_shape)
    result.seconds = time.perf_counter() - started
    return result


def _samples(run: TrainedRun, options: ExportOptions) -> tuple[Samples | None, str]:
    if not options.data_check:
        return None, "dataset check skipped (--no-data-check): verified on random inputs only"
    calibration = options.calibration_samples if options.quantize == "static-int8" else 0
    try:
        samples = load_samples(run, options.data_dir, options.samples, calibration)
    except CnnspecError as exc:
        raise ExportError(
            f"cannot load dataset '{run.dataset.get('name')}' to verify the export: {exc}\n"
            "  hint: pass --data-dir DIR, or --no-data-check to verify on random inputs only") from None
    return samples, f"{len(samples.verify)} test-split images of {samples.dataset}"


def _describe(check: Check) -> str:
    if check.onnx_shape != check.expected_shape:
        return f"{check.inputs} batch {check.batch}: ONNX output shape {check.onnx_shape}, expected {check.expected_shape}"
    if check.max_abs_diff > check.tolerance:
        return f"{check.inputs} batch {check.batch}: max |ort - torch| = {check.max_abs_diff:.3g} > {check.tolerance:g}"
    return f"{check.inputs} batch {check.batch}: top-1 agreement {check.top1_agreement:.1%} (100% required)"


def _quantize_into(result: ExportResult, samples: Samples, input_shape: list[int], output_shape: list[int]) -> None:
    """Quantize, re-check the graph, and measure fp32 vs int8; the int8 model becomes the result."""
    import onnx

    mode = result.options.quantize
    quantized = onnx.load_from_string(quantize(result.fp32_bytes, mode, samples.calibration))
    int8 = finish_graph(quantized, metadata_for(result.run, mode), output_shape)
    fp32_figures, reference = figures("fp32", result.fp32_bytes, input_shape, samples)
    int8_figures, _ = figures(mode, int8, input_shape, samples, reference)
    result.quantization = [fp32_figures, int8_figures]
    result.model_bytes = int8
    drop = (fp32_figures.accuracy or 0.0) - (int8_figures.accuracy or 0.0)
    if drop > result.options.max_accuracy_drop:
        result.problems.append(
            f"{mode} loses {drop:.2%} test accuracy ({fp32_figures.accuracy:.2%} -> {int8_figures.accuracy:.2%}), "
            f"more than --max-accuracy-drop {result.options.max_accuracy_drop:.2%}")


def write(result: ExportResult) -> list[Path]:
    """Write a verified result to the repository and/or ``-o``; refuses an unverified one."""
    if not result.passed:
        raise ExportError("verification failed; nothing was written:\n  " + "\n  ".join(result.problems))
    options, run = result.options, result.run
    written: list[Path] = []
    if options.output is not None:
        _check_output(options.output)
    if options.repo is not None:
        name = options.name or run.spec.name
        _check_compatible(options.repo, name, run)
        config = render_config(name, run.spec.input.shape, len(run.labels), options.serving)
        written.append(write_model(options.repo, name, options.version, result.model_bytes,
                                   config_text=config, labels_text=render_labels(run.labels)))
    if options.output is not None:
        atomic_write_bytes(options.output, result.model_bytes)
        written.append(options.output)
    result.written = written
    return written


def _check_output(output: Path) -> None:
    if output.is_dir():
        raise ExportError(f"-o {output} is a folder; give a file name such as {output / 'model.onnx'}")
    parent = output.parent if str(output.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise ExportError(f"cannot write -o {output}: {parent} is not a folder")


def _check_compatible(repo: Path, name: str, run: TrainedRun) -> None:
    """A new version must keep the model's interface: config.pbtxt and labels.txt are shared by
    every version, so a different input shape or label list needs another --name."""
    labels_file = Path(repo) / name / LABELS_FILENAME
    if not labels_file.is_file():
        return
    old_labels = labels_file.read_text(encoding="utf-8").splitlines()
    config = Path(repo) / name / CONFIG_FILENAME
    old_dims = _config_input_dims(config.read_text(encoding="utf-8")) if config.is_file() else None
    new_dims = [int(v) for v in run.spec.input.shape]
    if old_labels != run.labels or (old_dims is not None and old_dims != new_dims):
        raise ExportError(
            f"model '{name}' in {repo} already has versions with input {old_dims} and labels {old_labels}; this "
            f"export has input {new_dims} and labels {run.labels}. Versions of one model share config.pbtxt and "
            "labels.txt: export under another --name")


def _config_input_dims(text: str) -> list[int] | None:
    import re

    match = re.search(r"input\s*\[\s*\{[^}]*?dims:\s*\[([^\]]*)\]", text)
    return [int(v) for v in match.group(1).split(",")] if match else None


def preflight(options: ExportOptions, run: TrainedRun) -> None:
    """Refuse an impossible destination before spending time on export and verification."""
    if options.output is not None:
        _check_output(options.output)
    if options.repo is not None:
        check_target(options.repo, options.name or run.spec.name, options.version)
        _check_compatible(options.repo, options.name or run.spec.name, run)


def export(options: ExportOptions, report: Callable[[ExportResult], None] | None = None) -> ExportResult:
    """Build and verify, call ``report`` (e.g. print the tables), then write; raise ExportError if
    verification failed (nothing is written then)."""
    run = load_run(options.source, options.spec_file)
    preflight(options, run)
    result = build(options, run)
    if report is not None:
        report(result)
    write(result)
    return result


# --- report ------------------------------------------------------------------------------------

def render_report(result: ExportResult) -> list[Any]:
    """rich renderables: a summary, the verification table, and the quantization table if any."""
    from rich.markup import escape
    from rich.table import Table

    run = result.run
    summary = Table(title="cnnspec export", show_header=False, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column()
    accuracy = run.eval_accuracy
    for key, value in (
        ("checkpoint", f"{run.checkpoint} (epoch {run.payload.get('epoch', '?')}, eval accuracy "
                       f"{'unknown' if accuracy is None else f'{accuracy:.2%}'})"),
        ("spec", f"{run.spec.name} (sha256 {run.spec.hash[:12]})"),
        ("exporter", f"torch.onnx.export(dynamo=True), opset {result.options.opset}, weights embedded"),
        ("graph", f"input [batch, {', '.join(map(str, run.spec.input.shape))}] -> logits "
                  f"[{', '.join(map(str, result.output_dims))}]; onnx.checker full check and shape inference passed"),
        ("data", result.data_note),
        ("model", f"{len(result.model_bytes):,} bytes" + (
            f", {result.options.quantize} (the fp32 graph is the one compared with PyTorch below)"
            if result.options.quantize != "none" else ", float32")),
    ):
        summary.add_row(key, escape(value))
    tables = [summary, _checks_table(result.checks)]
    if result.quantization:
        tables.append(_quantization_table(result.quantization))
    return tables


def _checks_table(checks: list[Check]) -> Any:
    from rich.markup import escape
    from rich.table import Table

    tolerance = checks[0].tolerance if checks else TOLERANCE
    table = Table(title="verification: onnxruntime vs PyTorch", title_justify="left",
                  caption=f"pass: max diff <= {tolerance:g}, top-1 100% on dataset images, shapes equal",
                  caption_justify="left")
    for column in ("inputs", "batch", "max |ort-torch|", "top-1 agree", "ONNX output", "static analysis", "result"):
        table.add_column(column, justify="right" if column in ("batch", "max |ort-torch|", "top-1 agree") else "left")
    for check in checks:
        table.add_row(
            check.inputs, str(check.batch), f"{check.max_abs_diff:.2e}",
            f"{check.top1_agreement:.1%}", escape(str(check.onnx_shape)), escape(str(check.expected_shape)),
            "[green]pass[/green]" if check.passed else "[red]FAIL[/red]")
    return table


def _quantization_table(rows: list[ModelFigures]) -> Any:
    from rich.table import Table

    table = Table(title="quantization (test split; onnxruntime CPU, 1 thread)", title_justify="left")
    for column in ("model", "size", "latency b=1", "latency b=32", "test accuracy", "change", "agrees with fp32"):
        table.add_column(column, justify="left" if column == "model" else "right")
    base = rows[0]
    for row in rows:
        change = "" if row is base or row.accuracy is None else f"{(row.accuracy - base.accuracy) * 100:+.2f} pt"
        speed1 = base.latency_ms[1] / row.latency_ms[1]
        speed32 = base.latency_ms[32] / row.latency_ms[32]
        table.add_row(
            row.label, f"{row.size_bytes / 1e6:.2f} MB ({row.size_bytes / base.size_bytes:.0%})",
            f"{row.latency_ms[1]:.3f} ms ({speed1:.2f}x)", f"{row.latency_ms[32]:.3f} ms ({speed32:.2f}x)",
            "n/a" if row.accuracy is None else f"{row.accuracy:.2%}", change,
            "" if row.agreement_with_fp32 is None else f"{row.agreement_with_fp32:.1%}")
    return table


def report_json(result: ExportResult) -> dict[str, Any]:
    """The report as plain data (for tests and ``--format json``)."""
    return {
        "checkpoint": str(result.run.checkpoint),
        "spec_name": result.run.spec.name,
        "spec_hash": result.run.spec.hash,
        "opset": result.options.opset,
        "quantize": result.options.quantize,
        "checks": [{**check.__dict__, "passed": check.passed} for check in result.checks],
        "quantization": [row.__dict__ for row in result.quantization],
        "problems": list(result.problems),
        "written": [str(p) for p in result.written],
        "passed": result.passed,
        "seconds": round(result.seconds, 3),
    }
