"""ONNX conversion: torch module -> checked onnx graph with the cnnspec metadata, weights embedded."""

from __future__ import annotations

import contextlib
import io
from typing import Any, Sequence

from .. import __version__
from ..deploy.images import COLOR_MODES
from ..deploy.model_card import ModelCard
from . import ExportError
from ..train.run import TrainedRun

OPSET = 18
MIN_OPSET = 18  # the dynamo exporter's own; its down-conversion to 17 fails for BatchNorm/ReduceMean graphs
MAX_PROTO_BYTES = 2**31 - 1  # protobuf's limit for a single serialised model


def card_for(run: TrainedRun, quantization: str = "none") -> ModelCard:
    """The model card of an exported run: preprocessing from the checkpoint's dataset (one mean/std
    per input channel), labels, and ``outputs`` "probabilities" when the spec's last layer produces
    them (softmax), else "logits"."""
    shape = [int(v) for v in run.spec.input.shape]
    return ModelCard(
        spec_name=run.spec.name, spec_hash=run.spec.hash, spec_text=run.spec.text, labels=tuple(run.labels),
        input_shape=tuple(shape), mean=run.mean, std=run.std, color_mode=COLOR_MODES.get(shape[0], ""),
        dataset=run.dataset_name or "", cnnspec_version=__version__, eval_accuracy=run.eval_accuracy,
        input_name="input", output_name="logits", quantization=quantization,
        outputs="probabilities" if run.spec.nodes[-1].layer.produces_probabilities else "logits",
        epoch=run.epoch)


def metadata_for(run: TrainedRun, quantization: str = "none") -> dict[str, str]:
    """The cnnspec ``metadata_props`` of an exported model: its card (cnnspec.deploy.model_card)."""
    return card_for(run, quantization).to_metadata()


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
