"""Every registered layer type, checked from its own examples: nothing here names a layer type.

Each class in cnnspec/layers/ declares ``examples`` (field sets with input shapes). For every
example this module builds a one-layer spec (the model input, plus adapter layers where the
example's inputs differ from it), then checks, against the compiled torch module:

- static analysis == module: output shape, params, trainable params (also with trainable: false),
  buffers and MACs (FlopCounterMode FLOPs / 2), via tests/fidelity.py;
- receptive field == the gradient measurement (fields that follow the input size: unit by unit);
- the traits the class declares (produces_probabilities, is_convolution) hold for the module;
- hypothesis: the same fidelity for the example on larger inputs and other batch sizes;
- ONNX: cnnspec's own export (to_onnx, finish_graph's checks) run by onnxruntime == torch.

A new layer type is enrolled in all of them by its registry line and its examples.
"""

from __future__ import annotations

import functools
import importlib
import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnspec.analysis import Analysis, analyze
from cnnspec.compile import build_model
from cnnspec.layers import LAYER_TYPES, Example, layer_type
from cnnspec.spec.model import parse_spec

from fidelity import (assert_envelope, assert_fidelity, field_measurement, measurable_layer, measured_extent,
                      positive_weights)

# torch's note that an even kernel with 'same' pads a copy: that asymmetric case is what conv2d's
# examples are there to check
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")

LAYER = "layer"  # the name of the layer under test in every example spec
CASES = [(kind, index, example) for kind, cls in LAYER_TYPES.items() for index, example in enumerate(cls.examples)]
CASE_IDS = [f"{kind}-{index}" for kind, index, _ in CASES]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- an example as a spec ---------------------------------------------------------------------

def grown(shape: tuple[int, ...], first: tuple[int, ...], growth: tuple[int, int]) -> tuple[int, ...]:
    """A map the size of the first input grows; others (a [C, 1, 1] gate, vectors) keep their shape."""
    if len(shape) != 3 or len(first) != 3 or shape[1:] != first[1:]:
        return shape
    return (shape[0], shape[1] + growth[0], shape[2] + growth[1])


def example_spec(kind: str, example: Example, trainable: bool = True, growth: tuple[int, int] = (0, 0)) -> str:
    """A spec whose layer ``layer`` is the example. The model input is the first input's shape
    ([F] becomes the image [F, 1, 1] and a flatten); other inputs come from small adapters of
    the model input (adaptive_avgpool2d for another H, W; a 1x1 conv2d for other channels;
    flatten and linear for another vector length)."""
    shapes = [grown(shape, example.inputs[0], growth) for shape in example.inputs]
    image = shapes[0] if len(shapes[0]) == 3 else (shapes[0][0], 1, 1)
    layers: list[dict] = []
    sources = [_adapter(index, shape, image, layers) for index, shape in enumerate(shapes)]
    layer = {"type": kind, "name": LAYER, **example.fields, "inputs": sources}
    if not trainable:
        layer["trainable"] = False
    layers.append(layer)
    channels, height, width = image
    return json.dumps({"name": f"example_{kind}", "input": {"channels": channels, "height": height, "width": width},
                       "layers": layers})


def _adapter(index: int, shape: tuple[int, ...], image: tuple[int, int, int], layers: list[dict]) -> str:
    """Append the layers that turn the model input into ``shape``; return the last one's name."""
    if shape == image:
        return "input"
    if len(shape) == 1:
        layers.append({"type": "flatten", "name": f"flat{index}", "inputs": ["input"]})
        if shape[0] == math.prod(image):
            return f"flat{index}"
        layers.append({"type": "linear", "name": f"vector{index}", "out_features": shape[0], "inputs": [f"flat{index}"]})
        return f"vector{index}"
    source = "input"
    if shape[1:] != image[1:]:
        layers.append({"type": "adaptive_avgpool2d", "name": f"resize{index}", "output_size": list(shape[1:]),
                       "inputs": [source]})
        source = f"resize{index}"
    if shape[0] != image[0]:
        layers.append({"type": "conv2d", "name": f"channels{index}", "out_channels": shape[0], "kernel_size": 1,
                       "inputs": [source]})
        source = f"channels{index}"
    return source


@functools.lru_cache(maxsize=None)
def example_analysis(kind: str, index: int, trainable: bool = True) -> Analysis:
    return analyze(parse_spec(example_spec(kind, LAYER_TYPES[kind].examples[index], trainable)))


def test_every_registered_type_has_examples():
    missing = [kind for kind, cls in LAYER_TYPES.items() if not cls.examples]
    assert not missing, f"give these layer classes an `examples` tuple: {missing}"
    assert len(CASES) >= 2 * len(LAYER_TYPES) - 2  # most types show more than one field set


def test_every_layer_class_in_the_folder_is_registered():
    """A class with a type name in cnnspec/layers/*.py that lacks its registry line fails here."""
    folder = Path(__file__).resolve().parents[1] / "cnnspec" / "layers"
    defined = {}
    for path in sorted(folder.glob("*.py")):
        if path.stem in ("__init__", "modules"):  # modules.py: the torch modules
            continue
        module = importlib.import_module(f"cnnspec.layers.{path.stem}")
        defined.update({layer_type(value): value for value in vars(module).values()
                        if layer_type(value) and value.__module__ == module.__name__})
    assert defined == LAYER_TYPES


def test_examples_spell_only_their_own_fields():
    """An example is the layer's config: no type, name or inputs (the test wires those)."""
    for kind, _, example in CASES:
        assert not {"type", "name", "inputs"} & set(example.fields), kind
        assert set(example.fields) <= set(LAYER_TYPES[kind].model_fields), kind


# --- static analysis against the module ------------------------------------------------------

@pytest.mark.parametrize("kind,index,example", CASES, ids=CASE_IDS)
def test_static_counts_match_the_module(kind: str, index: int, example: Example):
    for trainable in (True, False):
        analysis = example_analysis(kind, index, trainable)
        report = analysis.layer(LAYER)
        assert [tuple(shape) for shape in report.input_shapes] == list(example.inputs)
        assert_fidelity(analysis, 2)
        if not trainable:
            assert report.trainable_params == 0


@pytest.mark.parametrize("kind,index,example", CASES, ids=CASE_IDS)
def test_receptive_field_matches_the_gradient(kind: str, index: int, example: Example):
    analysis = example_analysis(kind, index)
    report = analysis.layer(LAYER)
    if report.receptive_field is None:  # the contract: null exactly when the output is a vector
        assert len(report.output_shape) == 1
        return
    assert len(report.output_shape) == 3
    if not report.receptive_field.exact:  # a resampling layer: an envelope of units that differ
        assert_envelope(analysis, len(analysis.layers) - 1)
        return
    if type(report.node.layer).field_depends_on_input_size:
        assert_unit_fields(analysis)
        return
    assert analysis.layers[measurable_layer(analysis)].name == LAYER
    expected, measured = field_measurement(analysis)
    assert measured == expected


def assert_unit_fields(analysis: Analysis) -> None:
    """A field that follows the input size (adaptive pooling) is measured at the example's size for
    every output unit: the reported size is the largest unit's (an upper bound for the others),
    the reported start is unit 0's centre."""
    field = analysis.layer(LAYER).receptive_field
    model = build_model(analysis)
    positive_weights(model)
    _, height, width = analysis.layer(LAYER).output_shape
    sizes_h, sizes_w = [], []
    for unit_h in range(height):
        for unit_w in range(width):
            x = (torch.rand(1, *analysis.input_shape) + 0.5).requires_grad_(True)
            model(x)[0, :, unit_h, unit_w].sum().backward()
            (low_h, high_h), (low_w, high_w) = measured_extent(x.grad)
            sizes_h.append(high_h - low_h + 1)
            sizes_w.append(high_w - low_w + 1)
            if unit_h == unit_w == 0:
                assert ((low_h + high_h) / 2, (low_w + high_w) / 2) == (field.height.start, field.width.start)
    assert (max(sizes_h), max(sizes_w)) == (field.height.size, field.width.size)


@pytest.mark.parametrize("kind,index,example", CASES, ids=CASE_IDS)
def test_declared_traits_hold_for_the_module(kind: str, index: int, example: Example):
    """produces_probabilities: the output is non-negative and sums to 1 over dim 1 (and only then);
    is_convolution: the module has the 4-D filter weight the plots draw."""
    analysis = example_analysis(kind, index)
    layer = analysis.layer(LAYER).node.layer
    torch.manual_seed(0)
    model = build_model(analysis).eval()
    with torch.no_grad():
        output = model(torch.randn(3, *analysis.input_shape))
    sums_to_one = bool((output >= 0).all()) and torch.allclose(output.sum(dim=1), torch.ones(()), atol=1e-5)
    assert type(layer).produces_probabilities == sums_to_one
    if type(layer).is_convolution:
        weight = model.get_submodule(LAYER).weight
        assert weight.ndim == 4 and weight.shape[0] == analysis.layer(LAYER).output_shape[0]


@pytest.mark.parametrize("kind,index,example", CASES, ids=CASE_IDS)
def test_explain_renders_the_layer(kind: str, index: int, example: Example):
    """``analyze --explain`` for the example: the layer's section with its shapes and a receptive-
    field line (the arithmetic, 'unchanged', the field, or null for a vector)."""
    from cnnspec.report import render_explain

    analysis = example_analysis(kind, index)
    report = analysis.layer(LAYER)
    text = render_explain(analysis)
    section = text[text.index(f"{LAYER} ({kind}): "):].split("\n\n")[0]
    assert section.splitlines()[0].endswith(f"-> [{', '.join(map(str, report.output_shape))}]")
    assert "receptive field" in section or "RF_H" in section


@st.composite
def grown_examples(draw) -> tuple[str, int]:
    kind, index, example = draw(st.sampled_from(CASES))
    growth = (draw(st.integers(0, 6)), draw(st.integers(0, 6)))
    return example_spec(kind, example, draw(st.booleans()), growth), draw(st.integers(1, 3))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grown_examples())
def test_examples_on_larger_inputs_still_match_torch(case: tuple[str, int]):
    """Property: an example stays valid on a larger map, and then the analysis still equals the
    module at any batch size, and a fixed receptive field still equals the measurement."""
    text, batch = case
    analysis = analyze(parse_spec(text))
    assert_fidelity(analysis, batch)
    report = analysis.layer(LAYER)
    if report.receptive_field is not None and not report.receptive_field.exact:
        assert_envelope(analysis, len(analysis.layers) - 1)
    elif report.receptive_field is not None and not type(report.node.layer).field_depends_on_input_size:
        expected, measured = field_measurement(analysis)
        assert measured == expected


# --- ONNX: cnnspec's export, run by onnxruntime --------------------------------------------------

@pytest.fixture(scope="module")
def fast_onnx_registry():
    """torch.onnx.export(dynamo=True) rebuilds its torchlib op registry on every call (~2 s of the
    ~2.5 s per tiny model). The registry is only read when no custom translation table is given
    (cnnspec gives none), so one per opset serves every export here. Without that private hook
    (another torch) the exports just take longer."""
    try:
        from torch.onnx._internal.exporter import _registration
    except ImportError:
        yield
        return
    original = _registration.ONNXRegistry.__dict__.get("from_torchlib")
    if not isinstance(original, classmethod):
        yield
        return
    cached = functools.lru_cache(maxsize=None)(original.__func__)
    _registration.ONNXRegistry.from_torchlib = classmethod(lambda cls, *args, **kwargs: cached(cls, *args, **kwargs))
    try:
        yield
    finally:
        _registration.ONNXRegistry.from_torchlib = original


@pytest.mark.parametrize("kind,index,example", CASES, ids=CASE_IDS)
def test_onnx_export_runs_in_onnxruntime_like_torch(kind: str, index: int, example: Example, fast_onnx_registry):
    from cnnspec.deploy.sessions import new_session
    from cnnspec.export.convert import finish_graph, to_onnx
    from cnnspec.export.verify import verify

    analysis = example_analysis(kind, index)
    torch.manual_seed(0)
    model = build_model(analysis).eval()
    with torch.no_grad():  # running statistics away from (0, 1), so that they matter
        for buffer in model.buffers():
            if buffer.is_floating_point():
                buffer.uniform_(0.5, 1.5)
    input_shape, output_shape = analysis.input_shape, analysis.output_shape
    data = finish_graph(to_onnx(model, input_shape), {}, output_shape)  # onnx checker + strict shape inference
    checks = verify(new_session(data), model, input_shape, output_shape, None)
    assert checks and all(check.passed for check in checks), [vars(check) for check in checks]
