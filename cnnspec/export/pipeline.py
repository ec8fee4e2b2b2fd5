"""Export a trained run to ONNX, prove it computes what PyTorch computes, and write it to a model
repository.

Pipeline (nothing is written until every check has passed); each step has its own module:

1. load (cnnspec.train.run): ``RUN_DIR/best.pt`` (else ``last.pt``) or a checkpoint file; the spec is rebuilt from the
   checkpoint's own ``spec_text`` and must hash to its ``spec_hash``; a spec given with ``--spec``
   or found as ``RUN_DIR/spec.yaml`` must have the same hash, else the export is refused.
2. export (convert.py): ``torch.onnx.export(..., dynamo=True)``, opset 18 (``OPSET``), input ``input`` float32
   [batch, C, H, W], output ``logits`` float32 [batch, K], the batch dimension dynamic and named
   ``batch``. The dynamo exporter is chosen explicitly: it is torch's maintained path (the
   TorchScript exporter, ``dynamo=False``, is deprecated since torch 2.9 and warns that it will be
   removed) and it emits the same plain Conv/Relu/MaxPool/Gemm graph, which onnxruntime still fuses
   (Conv+Relu, NCHWc layouts, Gemm+Relu). Weights are embedded in model.onnx (the dynamo path's
   ``model.onnx.data`` side file would break a repository that copies only model.onnx).
3. metadata: the model card (cnnspec.deploy.model_card) in ``metadata_props``, which lets predict
   and the server preprocess a raw image and read the output from the file alone.
4. checks (convert.py): ``onnx.checker.check_model(full_check=True)``, strict ``onnx.shape_inference``; the
   inferred output shape must be [batch, *static analysis output shape].
5. verification (verify.py, samples.py): onnxruntime vs PyTorch on random inputs and on real test-split images, at batch 1
   and at odd batches: max |ort - torch| <= 1e-4 (fp32) and 100% top-1 agreement on real images.
6. optional int8 quantization (quantize.py, onnxruntime.quantization); the quantized model is what is written,
   under its own model name ``<name>_int8`` unless ``--name`` says otherwise.
7. write: ``MODEL_REPO/<name>/<version>/model.onnx`` + config.pbtxt + labels.txt, atomically
   (cnnspec.deploy.repository, config.pbtxt by cnnspec.deploy.model_config), and/or ``-o FILE``.

The report (tables and JSON) is report.py's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..deploy.files import atomic_write_bytes
from ..deploy.model_config import ConfigError, ServingConfig, classifier_config, parse_model_config, render_model_config
from ..deploy.repository import CONFIG_FILENAME, LABELS_FILENAME, check_target, render_labels, write_model
from ..deploy.sessions import new_session
from ..errors import CnnspecError
from . import ExportError
from .convert import OPSET, finish_graph, metadata_for, to_onnx
from .quantize import QUANTIZE_MODES, ModelFigures, figures, quantize, slower_than_fp32
from ..train.run import TrainedRun, load_run
from .samples import DEFAULT_SAMPLES, Samples, load_samples
from .verify import TOLERANCE, Check, verify

#: the batch the memory check assumes: verification runs up to --samples (63) images at once
EXPORT_BATCH = 64


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
    warnings: list[str] = field(default_factory=list)
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
    run = run or load_run(options.source, options.spec_file, command="export", batch_size=EXPORT_BATCH)
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
    slower = slower_than_fp32(fp32_figures, int8_figures)
    if slower:
        result.warnings.append(slower)
    lost = (fp32_figures.correct or 0) - (int8_figures.correct or 0)
    images = fp32_figures.images or 1
    if lost / images > result.options.max_accuracy_drop:
        result.problems.append(
            f"{mode} classifies {lost:,} fewer of {images:,} test images correctly ({fp32_figures.correct:,} -> "
            f"{int8_figures.correct:,}: {lost / images:.2%} of test accuracy), more than --max-accuracy-drop "
            f"{result.options.max_accuracy_drop:.2%}")


def model_name(options: ExportOptions, run: TrainedRun) -> str:
    """The repository model to add a version to: --name, else the spec's name, with ``_int8`` for a
    quantized export, so that an int8 model never silently becomes the newest version of the fp32
    model (the one ``serve`` and ``predict`` pick by default)."""
    if options.name:
        return options.name
    return run.spec.name + ("_int8" if options.quantize != "none" else "")


def write(result: ExportResult) -> list[Path]:
    """Write a verified result to the repository and/or ``-o``; refuses an unverified one."""
    if not result.passed:
        raise ExportError("verification failed; nothing was written:\n  " + "\n  ".join(result.problems))
    options, run = result.options, result.run
    written: list[Path] = []
    if options.output is not None:
        _check_output(options.output)
    if options.repo is not None:
        name = model_name(options, run)
        _check_compatible(options.repo, name, run)
        config = render_model_config(classifier_config(name, run.spec.input.shape, len(run.labels), options.serving,
                                                       LABELS_FILENAME))
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
    old_dims = _config_input_dims(config) if config.is_file() else None
    new_dims = [int(v) for v in run.spec.input.shape]
    if old_labels != run.labels or (old_dims is not None and old_dims != new_dims):
        raise ExportError(
            f"model '{name}' in {repo} already has versions with input {old_dims} and labels {old_labels}; this "
            f"export has input {new_dims} and labels {run.labels}. Versions of one model share config.pbtxt and "
            "labels.txt: export under another --name")


def _config_input_dims(path: Path) -> list[int] | None:
    """The first input's dims in an existing config.pbtxt (read with deploy's codec)."""
    try:
        config = parse_model_config(path.read_text(encoding="utf-8"), str(path))
    except (ConfigError, OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"cannot add a version next to {path}: {exc}") from None
    return list(config.inputs[0].dims) if config.inputs else None


def preflight(options: ExportOptions, run: TrainedRun) -> None:
    """Refuse an impossible destination before spending time on export and verification."""
    if options.output is not None:
        _check_output(options.output)
    if options.repo is not None:
        check_target(options.repo, model_name(options, run), options.version)
        _check_compatible(options.repo, model_name(options, run), run)


def export(options: ExportOptions, report: Callable[[ExportResult], None] | None = None) -> ExportResult:
    """Build and verify, call ``report`` (e.g. print the tables), then write; raise ExportError if
    verification failed (nothing is written then)."""
    run = load_run(options.source, options.spec_file, command="export", batch_size=EXPORT_BATCH)
    preflight(options, run)
    result = build(options, run)
    if report is not None:
        report(result)
    write(result)
    return result
