"""``cnnspec import``: an existing model (torchvision, timm, your own nn.Module, an ONNX file) as a
readable spec plus the weights for it.

torch side: capture.py (torch.fx + the layer registry), folding.py (blocks), writing.py (YAML),
onnx_capture.py (ONNX graphs), sources.py (what SOURCE names). The spec is checked before it is
written: it must parse, and its compiled module with the imported weights must give the source's
output.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CnnspecError
from .capture import ImportError_, Op


@dataclass
class Imported:
    """What an import produced: the spec text, its weights (a state_dict of build_model(spec)),
    and what was checked."""

    source: str
    text: str
    state_dict: dict[str, Any]
    layers: int
    blocks: int
    params: int
    macs: int
    max_abs_diff: float | None
    notes: list[str] = field(default_factory=list)


def spec_name(source: str) -> str:
    base = source.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
    base = base[:-5] if base.endswith(".onnx") else base
    name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in base)
    return name if name and (name[0].isalpha() or name[0] == "_") else f"model_{name}"


def import_source(source: str, *, input_shape: tuple[int, int, int] | None = None,
                  state_dict: Path | None = None, check: bool = True) -> Imported:
    """Import SOURCE (``torchvision:NAME``, ``timm:NAME``, ``package.module:callable`` or a path to
    an .onnx file); see the README's "Bring your own model"."""
    from .sources import load_source

    loaded = load_source(source, input_shape, state_dict)
    if loaded.onnx is not None:
        from .onnx_capture import capture_onnx

        ops, notes = capture_onnx(loaded.onnx, loaded.input_shape)
        card = _model_card(loaded.onnx)
        if card is not None:
            return _from_card(source, loaded, ops, card, check=check)
        return _finish(source, loaded, ops, notes, fold_blocks=False, check=check)
    from .capture import capture

    ops, notes = capture(loaded.module, loaded.input_shape)
    return _finish(source, loaded, ops, notes, fold_blocks=True, check=check)


def _finish(source: str, loaded: Any, ops: list[Op], notes: list[str], *, fold_blocks: bool, check: bool) -> Imported:
    import torch

    from ..analysis import analyze
    from ..compile import build_model
    from ..spec.model import parse_spec
    from .folding import fold
    from .writing import render

    if fold_blocks:
        blocks, layers = fold(ops)
    else:
        blocks, layers = {}, [_flat(op, previous) for op, previous in zip(ops, ["input"] + [o.name for o in ops])]
    name = spec_name(source)
    header = [f"Imported with `cnnspec import {source}` ({loaded.description}).",
              "Layer names follow the source's module paths (layer1.0.conv1 -> layer1_0_conv1);",
              "repeated modules are folded into blocks. Edit freely: `cnnspec analyze` checks it."]
    header += [f"Note: {note}" for note in notes]
    text = render(name, f"{loaded.description}, imported by cnnspec", header, loaded.input_shape, blocks, layers)
    spec = parse_spec(text, f"{name}.yaml")
    analysis = analyze(spec)
    expanded = [(node.name, list(node.inputs)) for node in spec.nodes]
    captured = [(op.name, op.inputs) for op in ops]
    if expanded != captured:
        first = next((a, b) for a, b in zip(expanded + [None] * len(captured), captured) if a != b)
        raise CnnspecError(f"internal error: the folded spec does not expand to the captured layers: {first}")
    model = build_model(analysis)
    weights = map_weights(ops, model)
    model.load_state_dict(weights)
    diff = None
    if check:
        diff = _compare(loaded, model)
    totals = analysis.totals()
    return Imported(source, text, weights, len(ops), len(blocks), totals["params"], totals["macs"], diff, notes)


def _model_card(onnx_model: Any) -> Any:
    from ..deploy.model_card import ModelCard, ModelCardError

    metadata = {p.key: p.value for p in onnx_model.metadata_props}
    try:
        return ModelCard.from_metadata(metadata)
    except ModelCardError:
        return None


def _from_card(source: str, loaded: Any, ops: list[Op], card: Any, *, check: bool) -> Imported:
    """A model exported by cnnspec carries its spec in the model card: the import gives that spec
    back (blocks, names and comments as written), with the weights read from the graph. The exporter
    folds each batchnorm2d into the conv2d before it (W' = W * gamma / sigma, b' = beta + (b - mean) *
    gamma / sigma); the spec keeps both layers, so the conv gets W' and the batchnorm becomes the
    identity plus b' (gamma 1, mean 0, variance 1 - eps, beta b'), which computes the same function.
    The graph must then reproduce onnxruntime's output like any import."""
    import torch

    from ..analysis import analyze
    from ..compile import build_model
    from ..spec.model import parse_spec

    spec = parse_spec(card.spec_text, f"{card.spec_name}.yaml")
    analysis = analyze(spec)
    model = build_model(analysis)
    graph = {op.name: op for op in ops}
    weights: dict[str, Any] = {}
    folded_bias: dict[str, Any] = {}
    for node in spec.nodes:
        target = model.get_submodule(node.name).state_dict()
        if not target:
            continue
        op = graph.get(node.name)
        if op is not None and len(op.weights) >= len(target) - 1:
            sources = [tensor for _, tensor in op.weights]
            for (key, tensor), value in zip(target.items(), sources):
                weights[f"{node.name}.{key}"] = value.reshape(tensor.shape).clone()
            if len(sources) > len(target):
                folded_bias[node.name] = sources[len(target)]
            missing = [key for key in list(target)[len(sources):]]
            for key in missing:
                weights[f"{node.name}.{key}"] = torch.zeros_like(target[key])
            continue
        folded_into = node.inputs[0] if op is None and len(node.inputs) == 1 else None
        if (folded_into not in graph or
                set(target) != {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}):
            raise ImportError_(f"{source}: the graph has no weights for the spec's layer '{node.name}'")
        # the conv's own bias (when it has one) already holds b'; otherwise the batchnorm's beta does
        bias = folded_bias.get(folded_into, torch.zeros_like(target["bias"]))
        eps = node.layer.eps
        weights.update({f"{node.name}.weight": torch.ones_like(target["weight"]), f"{node.name}.bias": bias.clone(),
                        f"{node.name}.running_mean": torch.zeros_like(target["running_mean"]),
                        f"{node.name}.running_var": torch.full_like(target["running_var"], 1.0 - eps),
                        f"{node.name}.num_batches_tracked": torch.zeros_like(target["num_batches_tracked"])})
    model.load_state_dict(weights)
    diff = _compare(loaded, model) if check else None
    totals = analysis.totals()
    note = f"the spec comes from the file's model card ({card.spec_name}, exported by cnnspec {card.cnnspec_version})"
    blocks = spec.document.data.get("blocks") or {}
    return Imported(source, card.spec_text, weights, len(spec.nodes), len(blocks), totals["params"], totals["macs"],
                    diff, [note])


def _flat(op: Op, previous: str) -> dict[str, Any]:
    layer: dict[str, Any] = {"type": op.type, "name": op.name}
    if op.inputs != [previous]:
        layer["inputs"] = op.inputs
    layer.update(op.fields)
    return layer


def map_weights(ops: list[Op], model: Any) -> dict[str, Any]:
    """The compiled spec's state_dict filled from the source's tensors: each layer's tensors in the
    order its module declares them (weight, bias, running statistics), reshaped where the spec
    stores the same numbers in another shape (a Linear over channels is a 1x1 conv)."""
    import torch

    result = {}
    for op in ops:
        target = model.get_submodule(op.name).state_dict()
        sources = list(op.weights)
        if len(target) == len(sources) + 1 and list(target)[-1].endswith("num_batches_tracked"):
            sources.append(("(a batch counter ONNX does not keep)", torch.zeros((), dtype=torch.long)))
        if len(target) != len(sources):
            raise ImportError_(
                f"layer '{op.name}' ({op.where}) has {len(op.weights)} tensors in the source "
                f"({', '.join(k for k, _ in op.weights) or 'none'}) but {len(target)} in the spec "
                f"({', '.join(target) or 'none'})")
        for (key, tensor), (source_key, value) in zip(target.items(), sources):
            if tensor.numel() != value.numel():
                raise ImportError_(f"source tensor '{source_key}' {list(value.shape)} does not fit the spec's "
                                   f"'{op.name}.{key}' {list(tensor.shape)}")
            result[f"{op.name}.{key}"] = value.detach().reshape(tensor.shape).clone()
    return result


def _compare(loaded: Any, model: Any) -> float:
    import numpy as np
    import torch

    generator = torch.Generator().manual_seed(0)
    batch = 1 if loaded.onnx is not None else 2  # an exported graph may fix the batch to 1
    example = torch.randn((batch, *loaded.input_shape), generator=generator)
    model.eval()
    with torch.no_grad():
        ours = model(example)
        if loaded.onnx is not None:
            import onnxruntime as ort

            session = ort.InferenceSession(loaded.onnx.SerializeToString(), providers=["CPUExecutionProvider"])
            theirs = session.run(None, {session.get_inputs()[0].name: example.numpy()})[0]
            return float(np.abs(ours.numpy() - theirs).max())
        theirs = loaded.module.eval()(example)
    return float((ours - theirs).abs().max())


def save_weights(state_dict: dict[str, Any], path: Path) -> None:
    """``torch.save`` of a plain state_dict, written atomically (loadable with weights_only=True)."""
    import torch

    from ..deploy.files import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    atomic_write_bytes(path, buffer.getvalue())


__all__ = ["Imported", "ImportError_", "import_source", "map_weights", "save_weights"]
