"""The compiler's fidelity: what the analyzer predicts is what the built torch module has and does.

Every file in specs/ (not specs/invalid/) enrols itself. For each one, a real forward pass with
forward hooks gives every layer's output shape, FlopCounterMode gives every layer's MACs (it counts
2 FLOPs per multiply-accumulate of conv and linear), and the submodules' tensors give the
parameter, trainable and buffer counts; all must equal the analysis. Hypothesis does the same for
random valid sequential specs. The receptive field is measured by back-propagating one output unit
through the network with positive weights and max-pooling replaced by average pooling: the
non-zero extent of the input gradient is the field. The measuring code is in fidelity.py, shared
with test_layers.py (every registered layer type).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from torch import nn

import cnnspec
import cnnspec.errors
from cnnspec.analysis import Analysis, analyze
from cnnspec.compile import CompiledModel, build_model, make_plan
from cnnspec.errors import SpecError
from cnnspec.spec.graph import MODEL_INPUT
from cnnspec.spec.model import load_spec, parse_spec

from fidelity import assert_envelope, assert_fidelity, field_measurement, measurable_layer, measured_extent

ROOT = Path(__file__).resolve().parents[1]
SPEC_FILES = sorted(
    path for pattern in ("*.yaml", "*.yml", "*.json") for path in (ROOT / "specs").glob(pattern)
)  # glob is not recursive: specs/invalid/ stays out
BIG_MACS = 500_000_000  # above this a spec runs at batch 1 (2 CPU cores in CI)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: the machine's two cores are shared, and the timings stay predictable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@lru_cache(maxsize=None)
def analysis_of(path: Path) -> Analysis:
    return analyze(load_spec(path))


def analysis_of_text(text: str) -> Analysis:
    return analyze(parse_spec(text))



def test_spec_files_were_found():
    assert ROOT / "specs" / "simple_cnn.yaml" in SPEC_FILES
    assert not [path for path in SPEC_FILES if "invalid" in path.parts]


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda path: path.name)
def test_module_matches_analysis(path: Path):
    analysis = analysis_of(path)
    assert_fidelity(analysis, 1 if analysis.totals()["macs"] > BIG_MACS else 2)


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda path: path.name)
def test_plan_releases_every_intermediate_once_after_its_last_use(path: Path):
    analysis = analysis_of(path)
    plan = make_plan(analysis)  # the plan alone: no weights needed
    released = [name for step in plan for name in step.release]
    output = analysis.layers[-1].name
    assert sorted(released) == sorted([MODEL_INPUT, *(r.name for r in analysis.layers if r.name != output)])
    position = {step.name: index for index, step in enumerate(plan)}
    for index, step in enumerate(plan):
        for name in step.release:
            readers = [i for i, later in enumerate(plan) if name in later.inputs]
            assert index == max(readers, default=position.get(name)), name


def test_simple_cnn_state_dict_reads_like_the_spec():
    model = cnnspec.build_model(ROOT / "specs" / "simple_cnn.yaml")  # the public API takes a path
    assert list(model.state_dict()) == [
        "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
    ]
    assert tuple(model(torch.rand(3, 1, 28, 28)).shape) == (3, 10)


# --- layer semantics that are easy to get wrong -----------------------------------------------

def one_conv(padding: str, kernel: int, dilation: int = 1, size: int = 7) -> tuple[CompiledModel, Analysis]:
    analysis = analysis_of_text(f"""
name: one_conv
input: {{channels: 1, height: {size}, width: {size + 2}}}
layers:
  - {{type: conv2d, name: conv, out_channels: 2, kernel_size: {kernel}, padding: {padding}, dilation: {dilation}}}
""")
    return build_model(analysis), analysis


@pytest.mark.parametrize("kernel,dilation", [(2, 1), (4, 1), (4, 3), (3, 2)])
def test_padding_same_pads_the_extra_pixel_at_the_bottom_and_right(kernel: int, dilation: int):
    model, analysis = one_conv("same", kernel, dilation)
    x = torch.rand(2, 1, 7, 9)
    total = dilation * (kernel - 1)
    padded = F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2))
    expected = F.conv2d(padded, model.conv.weight, model.conv.bias, dilation=dilation)
    assert analysis.output_shape == (2, 7, 9)
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("kernel,dilation", [(3, 1), (2, 1), (3, 2)])
def test_padding_full_pads_dilation_times_kernel_minus_one(kernel: int, dilation: int):
    model, analysis = one_conv("full", kernel, dilation)
    x = torch.rand(1, 1, 7, 9)
    total = dilation * (kernel - 1)
    expected = F.conv2d(x, model.conv.weight, model.conv.bias, padding=total, dilation=dilation)
    assert analysis.output_shape == (2, 7 + total, 9 + total)
    torch.testing.assert_close(model(x), expected)


def test_trainable_false_freezes_exactly_what_the_analysis_calls_non_trainable():
    analysis = analysis_of_text("""
name: frozen
input: {channels: 3, height: 8, width: 8}
layers:
  - {type: conv2d, name: stem, out_channels: 4, kernel_size: 3, trainable: false}
  - {type: batchnorm2d, name: stem_bn, trainable: false}
  - {type: relu, name: relu}
  - {type: conv2d, name: head, out_channels: 2, kernel_size: 1}
  - {type: global_avgpool, name: pool}
""")
    model = build_model(analysis)
    model(torch.rand(2, 3, 8, 8)).sum().backward()
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"stem.weight", "stem.bias", "stem_bn.weight", "stem_bn.bias"}
    assert all(p.grad is None for name, p in model.named_parameters() if name in frozen)
    assert model.head.weight.grad is not None
    totals = analysis.totals()
    assert totals["non_trainable_params"] == 4 * 3 * 9 + 4 + 2 * 4
    assert totals["trainable_params"] == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_a_layer_named_like_a_module_attribute_is_refused_with_its_location():
    spec = parse_spec("""name: clash
input: {channels: 1, height: 4, width: 4}
layers:
  - {type: relu, name: training}
""", "clash.yaml")
    with pytest.raises(SpecError) as caught:
        build_model(spec)
    text = caught.value.render()
    assert text.startswith("clash.yaml:4:")
    assert "layer name 'training' is also the name of an attribute of torch.nn.Module" in text


def test_building_changes_no_global_state():
    """No reseeding, no default-dtype or grad-mode change; weights come from the caller's generator
    state, so a seeded build is reproducible."""
    dtype, grad = torch.get_default_dtype(), torch.is_grad_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        first = build_model(ROOT / "specs" / "simple_cnn.yaml").state_dict()
        assert torch.initial_seed() == 1234  # nobody called manual_seed in between
        torch.manual_seed(1234)
        second = build_model(ROOT / "specs" / "simple_cnn.yaml").state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert (torch.get_default_dtype(), torch.is_grad_enabled()) == (dtype, grad)


# --- graphs, tracing, memory formats, DDP ----------------------------------------------------

GRAPH_SPEC = """
name: graph
input: {channels: 3, height: 15, width: 15}
layers:
  - {type: conv2d, name: stem, out_channels: 8, kernel_size: 3, padding: 1}
  - {type: batchnorm2d, name: stem_bn}
  - {type: relu, name: stem_relu}
  - {type: conv2d, name: left, out_channels: 8, kernel_size: 2, padding: same}
  - {type: maxpool2d, name: right, inputs: [stem_relu], kernel_size: 3, stride: 1, padding: 1}
  - {type: add, name: sum, inputs: [left, right, stem_relu]}
  - {type: conv2d, name: squeeze, out_channels: 4, kernel_size: 1}
  - {type: concat, name: cat, inputs: [squeeze, sum]}
  - {type: avgpool2d, name: pool, kernel_size: 3, stride: 2, ceil_mode: true, count_include_pad: false, padding: 1}
  - {type: adaptive_avgpool2d, name: cells, output_size: [3, 5]}
  - {type: flatten, name: flatten}
  - {type: dropout, name: drop, p: 0.2}
  - {type: linear, name: fc, out_features: 6}
  - {type: softmax, name: probabilities}
"""


def graph_model() -> CompiledModel:
    torch.manual_seed(0)
    return build_model(parse_spec(GRAPH_SPEC)).eval()


def test_graph_model_runs_and_matches_a_hand_written_forward():
    model = graph_model()
    x = torch.rand(2, 3, 15, 15)
    stem = torch.relu(model.stem_bn(model.stem(x)))
    total = model.left(stem) + model.right(stem) + stem
    cat = torch.cat([model.squeeze(total), total], dim=1)
    hand = torch.softmax(model.fc(model.cells(model.pool(cat)).flatten(1)), dim=1)
    torch.testing.assert_close(model(x), hand)
    assert_fidelity(analysis_of_text(GRAPH_SPEC), 2)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")  # still what the legacy ONNX exporter uses
def test_forward_traces_without_data_dependent_python():
    model = graph_model()
    x = torch.rand(2, 3, 15, 15)
    traced = torch.jit.trace(model, x)
    other = torch.rand(2, 3, 15, 15)
    torch.testing.assert_close(traced(other), model(other))
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(other), model(other))


def test_channels_last_gives_the_same_output():
    model = graph_model()
    x = torch.rand(2, 3, 15, 15)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    torch.testing.assert_close(model(x.to(memory_format=torch.channels_last)), expected)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_distributed_data_parallel_runs_the_graph_and_reduces_every_gradient():
    import torch.distributed as dist

    model = graph_model().train()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(model)  # find_unused_parameters=False: all must be used
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
        for _ in range(2):  # a parameter without gradient fails the second iteration
            optimizer.zero_grad()
            torch.log(ddp(torch.rand(4, 3, 15, 15))[:, 0]).mean().neg().backward()
            optimizer.step()
        assert all(p.grad is not None for p in model.parameters())
    finally:
        dist.destroy_process_group()


# --- hypothesis: random valid sequential specs -------------------------------------------------

def pairs(values: st.SearchStrategy) -> st.SearchStrategy:
    """A number or an [h, w] pair."""
    return st.one_of(values, st.lists(values, min_size=2, max_size=2))


def conv_layer(channels: int) -> st.SearchStrategy:
    divisors = [g for g in range(1, channels + 1) if channels % g == 0]
    return st.builds(
        lambda groups, multiple, **rest: {"type": "conv2d", "groups": groups, "out_channels": groups * multiple, **rest},
        groups=st.sampled_from(divisors), multiple=st.integers(1, 3),
        kernel_size=pairs(st.integers(1, 5)), stride=pairs(st.integers(1, 3)), dilation=pairs(st.integers(1, 3)),
        padding=st.one_of(pairs(st.integers(0, 3)), st.sampled_from(["valid", "same", "full"])),
        bias=st.booleans(), trainable=st.booleans(),
        padding_mode=st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]),
    )


def pool_layer() -> st.SearchStrategy:
    common = dict(kernel_size=pairs(st.integers(1, 4)), stride=st.one_of(st.none(), pairs(st.integers(1, 3))),
                  padding=pairs(st.integers(0, 2)), ceil_mode=st.booleans())
    return st.one_of(
        st.builds(lambda **kw: {"type": "maxpool2d", **kw}, dilation=pairs(st.integers(1, 2)), **common),
        st.builds(lambda **kw: {"type": "avgpool2d", **kw}, count_include_pad=st.booleans(), **common),
        st.builds(lambda size: {"type": "adaptive_avgpool2d", "output_size": size}, pairs(st.integers(1, 6))),
    )


def pointwise_layer() -> st.SearchStrategy:
    return st.one_of(
        st.builds(lambda affine, trainable: {"type": "batchnorm2d", "affine": affine, "trainable": trainable},
                  st.booleans(), st.booleans()),
        st.sampled_from(["relu", "relu6", "leaky_relu", "sigmoid", "tanh", "gelu", "silu", "softmax", "identity"])
        .map(lambda kind: {"type": kind}),
        st.builds(lambda kind, p: {"type": kind, "p": p}, st.sampled_from(["dropout", "dropout2d"]),
                  st.floats(0, 0.9)),
    )


def spec_text(input_: dict, layers: list[dict]) -> str:
    return json.dumps({"name": "random", "input": input_, "layers": layers})


@st.composite
def sequential_specs(draw) -> str:
    """A valid sequential spec: each drawn layer is kept only if the analyzer accepts it (so the
    shapes stay legal), then an optional head (flatten or global_avgpool, then linear)."""
    input_ = {"channels": draw(st.integers(1, 4)), "height": draw(st.integers(4, 20)), "width": draw(st.integers(4, 20))}
    layers: list[dict] = []
    shape = (input_["channels"], input_["height"], input_["width"])
    for _ in range(draw(st.integers(1, 6))):
        layer = draw(st.one_of(conv_layer(shape[0]), pool_layer(), pointwise_layer()))
        try:
            shape = analysis_of_text(spec_text(input_, [*layers, layer])).output_shape
        except SpecError:
            continue
        layers.append(layer)
    head = draw(st.sampled_from(["none", "flatten", "global_avgpool"]))
    if head != "none" or not layers:
        layers.append({"type": "flatten" if head == "none" else head})
        layers.append({"type": "linear", "out_features": draw(st.integers(1, 7)), "bias": draw(st.booleans())})
    return spec_text(input_, layers)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequential_specs())
def test_random_sequential_specs_match_torch(text: str):
    assert_fidelity(analysis_of_text(text), 2)


# --- receptive field against a gradient measurement -------------------------------------------


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda path: path.name)
def test_receptive_field_equals_the_gradient_measurement(path: Path):
    """The last layer with a fixed field (resnets: the last block's output, before the adaptive pool;
    vgg16: pool5). The deep ImageNet models are measured on a 448-544 pixel image at batch 1 with
    only the input's gradient computed (a few seconds on one core)."""
    analysis = analysis_of(path)
    target = measurable_layer(analysis)
    if target is not None and not analysis.layers[target].receptive_field.exact:
        assert_envelope(analysis, target)  # after a transposed conv: units that differ by phase
        return
    result = field_measurement(analysis)
    if result is None:  # no feature map with a fixed field: then no layer may claim a field
        assert all(report.receptive_field is None for report in analysis.layers)
        return
    expected, measured = result
    assert measured == expected


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequential_specs())
def test_random_sequential_receptive_fields_equal_the_gradient_measurement(text: str):
    """Dilation, even kernels with 'same', 'full', ceil_mode, dilated max-pools: none of them in the
    shipped specs. Fields that need an image over 160 pixels are left to the shipped specs."""
    result = field_measurement(analysis_of_text(text), max_pixels=160)
    event("measured" if result else "not measured (no fixed field, or image > 160 px)")
    if result is not None:
        expected, measured = result
        assert measured == expected


@pytest.mark.parametrize("size,cells", [(12, 3), (10, 4), (7, 3), (5, 7)])
def test_adaptive_pooling_field_is_exact_when_divisible_and_bounded_otherwise(size: int, cells: int):
    """n divisible by m: every cell is a k = s = n/m window. Otherwise the cells differ; the analysis
    reports the largest cell's field, the mean step n/m as jump, and cell 0's centre as start."""
    analysis = analysis_of_text(f"""
name: adaptive
input: {{channels: 1, height: {size}, width: {size}}}
layers:
  - {{type: adaptive_avgpool2d, name: cells, output_size: {cells}}}
""")
    model = build_model(analysis)
    field = analysis.layers[-1].receptive_field.height
    sizes = []
    for unit in range(cells):
        x = torch.ones(1, 1, size, size, requires_grad=True)
        model(x)[0, 0, unit, unit].backward()
        (low, high), _ = measured_extent(x.grad)
        sizes.append(high - low + 1)
        if unit == 0:
            assert (low + high) / 2 == field.start
    assert max(sizes) == field.size
    assert field.jump == size / cells
    if size % cells == 0:
        assert set(sizes) == {field.size}


@pytest.mark.parametrize("count_include_pad,corner", [(True, 4 / 9), (False, 1.0)])
def test_count_include_pad_decides_the_divisor_at_the_border(count_include_pad: bool, corner: float):
    model = build_model(parse_spec(f"""
name: average
input: {{channels: 1, height: 4, width: 4}}
layers:
  - {{type: avgpool2d, kernel_size: 3, stride: 1, padding: 1, count_include_pad: {str(count_include_pad).lower()}}}
"""))
    output = model(torch.ones(1, 1, 4, 4))
    assert output[0, 0, 0, 0].item() == pytest.approx(corner)
    assert output[0, 0, 1, 1].item() == pytest.approx(1.0)


def test_dead_branches_are_named_for_ddp_and_released_at_once():
    with pytest.warns(cnnspec.errors.SpecWarning, match="layer 'probe' is never read"):
        model = build_model(parse_spec("""
name: dead
input: {channels: 1, height: 6, width: 6}
layers:
  - {type: conv2d, name: conv, out_channels: 2, kernel_size: 3}
  - {type: conv2d, name: probe, out_channels: 2, kernel_size: 1}
  - {type: relu, name: relu, inputs: [conv]}
"""))
    assert model.unused_layers == ["probe"]
    assert model.plan[1].release == ("probe",)
    assert tuple(model(torch.rand(2, 1, 6, 6)).shape) == (2, 2, 4, 4)


# --- cnnspec summary -------------------------------------------------------------------------

def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real command in a fresh process (exit code and stderr as a user sees them)."""
    return subprocess.run([sys.executable, "-m", "cnnspec", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def invoke(*args: str):
    """The command in this process (torch is already imported here: a subprocess would pay for it again)."""
    from click.testing import CliRunner

    from cnnspec.cli import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_summary_command_agrees_for_a_graph_spec():
    done = invoke("summary", str(ROOT / "specs" / "inception_block.yaml"), "--format", "json")
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert data["match"] is True and data["batch_size"] == 1
    assert [row["name"] for row in data["layers"]] == [r.name for r in analysis_of(ROOT / "specs" / "inception_block.yaml").layers]
    fc = data["layers"][-1]
    assert fc["analysis"] == fc["module"] == {
        "output_shape": [10], "params": 1290, "trainable_params": 1290, "buffers": 0, "macs": 1280}


def test_summary_table_for_the_chapter_model():
    done = invoke("summary", str(ROOT / "specs" / "simple_cnn.yaml"))
    assert done.exit_code == 0, done.output
    assert "every layer matches" in done.output
    assert "│ fc1 " in done.output and "401,536" in done.output and "4,241,152" in done.output


def test_summary_of_a_missing_file_is_a_one_line_error():
    done = run_cli("summary", "specs/no_such_spec.yaml")
    assert done.returncode == 1
    assert "no such file: specs/no_such_spec.yaml" in done.stderr and "Traceback" not in done.stderr


def test_summary_reports_each_disagreement():
    """A module that is not what the analysis describes (built from an edited spec) is caught."""
    from cnnspec.summary import render, summarize

    text = (ROOT / "specs" / "simple_cnn.yaml").read_text()
    edited = text.replace("name: conv2, out_channels: 64", "name: conv2, out_channels: 32")
    assert edited != text
    result = summarize(analysis_of(ROOT / "specs" / "simple_cnn.yaml"), build_model(parse_spec(edited)))
    assert not result.match
    wrong = {row.name: row.mismatches() for row in result.rows if not row.match}
    assert wrong["conv2"] == ["output_shape", "params", "trainable_params", "macs"]
    assert wrong["fc1"] == ["params", "trainable_params", "macs"]  # 32*7*7 inputs instead of 64*7*7
    assert "conv2" in render(result, "table") and "18,496 != 9,248" in render(result, "table")
    assert json.loads(render(result, "json"))["match"] is False


# --- the layers of modern CNN families against torchvision's own code ----------------------------

def one_layer_model(layer: str, channels: int = 6, size: int = 5) -> CompiledModel:
    torch.manual_seed(0)
    return build_model(parse_spec(f"""
name: one
input: {{channels: {channels}, height: {size}, width: {size}}}
layers:
  - {layer}
""")).eval()


def test_hardswish_and_hardsigmoid_are_pytorchs_definitions():
    x = torch.linspace(-5, 5, 6 * 5 * 5).reshape(1, 6, 5, 5)
    relu6 = (x + 3).clamp(0, 6)
    torch.testing.assert_close(one_layer_model("{type: hardswish, name: layer}")(x), x * relu6 / 6)
    torch.testing.assert_close(one_layer_model("{type: hardsigmoid, name: layer}")(x), relu6 / 6)


def test_layernorm2d_is_convnexts_and_loads_its_state_dict():
    from torchvision.models.convnext import LayerNorm2d

    model = one_layer_model("{type: layernorm2d, name: layer}")
    reference = LayerNorm2d(6, eps=1e-6)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        reference.bias.uniform_(-1, 1)
    model.layer.load_state_dict(reference.state_dict())  # same keys and shapes: weight, bias [6]
    x = torch.randn(2, 6, 5, 5) * 3 + 1
    torch.testing.assert_close(model(x), reference(x))
    normalised = one_layer_model("{type: layernorm2d, name: layer, elementwise_affine: false}")(x)
    torch.testing.assert_close(normalised.mean(dim=1), torch.zeros(2, 5, 5), atol=1e-5, rtol=0)
    assert not list(one_layer_model("{type: layernorm2d, elementwise_affine: false}").parameters())


def test_layer_scale_key_and_shape_take_convnexts_parameter():
    from torchvision.models.convnext import CNBlock

    model = one_layer_model("{type: layer_scale, name: layer}")
    assert {key: tuple(value.shape) for key, value in model.state_dict().items()} == {"layer.layer_scale": (6, 1, 1)}
    assert torch.equal(model.layer.layer_scale, torch.full((6, 1, 1), 1e-6))
    block = CNBlock(6, layer_scale=0.25, stochastic_depth_prob=0.0)
    model.load_state_dict({"layer.layer_scale": block.state_dict()["layer_scale"]})
    x = torch.randn(2, 6, 5, 5)
    torch.testing.assert_close(model(x), x * 0.25)


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_stochastic_depth_is_the_identity_in_eval_and_drops_whole_inputs_in_training(mode: str):
    model = one_layer_model(f"{{type: stochastic_depth, name: layer, p: 0.5, mode: {mode}}}")
    x = torch.rand(64, 6, 5, 5) + 0.1
    assert torch.equal(model(x), x)
    model.train()
    torch.manual_seed(3)
    y = model(x)
    kept = (y != 0).flatten(1).all(dim=1)
    dropped = (y == 0).flatten(1).all(dim=1)
    assert bool((kept | dropped).all())  # every sample kept whole or dropped whole
    torch.testing.assert_close(y[kept], x[kept] * 2)  # survivors scaled by 1/(1 - p)
    if mode == "row":
        assert 0 < int(kept.sum()) < 64
    else:
        assert int(kept.sum()) in (0, 64)


def test_channel_shuffle_and_two_slices_are_shufflenet_v2s():
    from torchvision.models.shufflenetv2 import channel_shuffle

    x = torch.randn(2, 6, 5, 5)
    torch.testing.assert_close(one_layer_model("{type: channel_shuffle, name: layer, groups: 3}")(x), channel_shuffle(x, 3))
    first, second = x.chunk(2, dim=1)
    assert torch.equal(one_layer_model("{type: channel_slice, name: layer, end: 3}")(x), first)
    assert torch.equal(one_layer_model("{type: channel_slice, name: layer, start: 3}")(x), second)
    assert torch.equal(one_layer_model("{type: channel_slice, name: layer, start: -4, end: -1}")(x), x[:, -4:-1])


def test_mul_gates_a_map_like_torchvisions_squeeze_excitation():
    from torchvision.ops import SqueezeExcitation

    reference = SqueezeExcitation(8, 2, scale_activation=nn.Hardsigmoid).eval()
    analysis = analysis_of_text("""
name: se
input: {channels: 8, height: 5, width: 5}
layers:
  - {type: adaptive_avgpool2d, name: avgpool, output_size: 1}
  - {type: conv2d, name: fc1, out_channels: 2, kernel_size: 1}
  - {type: relu, name: activation}
  - {type: conv2d, name: fc2, out_channels: 8, kernel_size: 1}
  - {type: hardsigmoid, name: scale_activation}
  - {type: mul, name: scale, inputs: [input, scale_activation]}
""")
    model = build_model(analysis).eval()
    model.load_state_dict(reference.state_dict())  # the same names: fc1.weight, fc2.bias, ...
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(model(x), reference(x))
    assert analysis.totals()["params"] == sum(p.numel() for p in reference.parameters())
    assert_fidelity(analysis, 2)


def test_conv_transpose2d_is_the_adjoint_of_the_conv_it_transposes():
    """<conv(x), y> = <x, conv_transpose(y)> with the same weights, stride, padding, dilation:
    what makes a transposed conv the gradient of a conv (and the textbook output size its inverse)."""
    model = one_layer_model("{type: conv_transpose2d, name: layer, out_channels: 4, kernel_size: 3, stride: 2, "
                            "padding: 1, output_padding: 1, dilation: 1, bias: false}", channels=6, size=5)
    weight = model.layer.weight  # [C_in of the transpose = C_out of the conv, C_out, k, k]
    y = torch.randn(2, 6, 5, 5, dtype=torch.float64)
    x = torch.randn(2, 4, 10, 10, dtype=torch.float64)  # (5 - 1)*2 - 2 + 2 + 1 + 1 = 10
    transposed = model.double()(y)
    assert transposed.shape == x.shape
    conv = F.conv2d(x, weight.double(), stride=2, padding=1)
    torch.testing.assert_close((conv * y).sum(), (x * transposed).sum())


def test_upsample_nearest_copies_and_bilinear_with_align_corners_keeps_the_corners():
    x = torch.randn(2, 3, 4, 4)
    nearest = one_layer_model("{type: upsample, name: layer, scale_factor: [2, 3]}", channels=3, size=4)
    assert torch.equal(nearest(x), x.repeat_interleave(2, dim=2).repeat_interleave(3, dim=3))
    corners = one_layer_model("{type: upsample, name: layer, size: [7, 9], mode: bilinear, align_corners: true}",
                              channels=3, size=4)(x)
    for row, col in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        torch.testing.assert_close(corners[:, :, row, col], x[:, :, row, col])


def resampling_layer() -> st.SearchStrategy:
    kernels = st.integers(1, 4)
    return st.one_of(
        st.builds(lambda k, s, p, d: {"type": "conv_transpose2d", "out_channels": 2, "kernel_size": k, "stride": s,
                                      "padding": min(p, k - 1), "dilation": d},
                  kernels, st.integers(1, 3), st.integers(0, 1), st.integers(1, 2)),
        st.builds(lambda s, mode: {"type": "upsample", "scale_factor": s, "mode": mode},
                  st.integers(1, 3), st.sampled_from(["nearest", "bilinear"])),
        st.builds(lambda k, s, p: {"type": "conv2d", "out_channels": 2, "kernel_size": k, "stride": s, "padding": p},
                  kernels, st.integers(1, 3), st.integers(0, 1)),
        st.just({"type": "maxpool2d", "kernel_size": 2}),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(resampling_layer(), min_size=2, max_size=4))
@example([{"type": "conv_transpose2d", "out_channels": 2, "kernel_size": 1, "stride": 2},  # odd units: bias only
          {"type": "conv2d", "out_channels": 2, "kernel_size": 1, "stride": 2, "padding": 1}])  # reads only those
@example([{"type": "maxpool2d", "kernel_size": 2},  # jump 6 before a stride-2 transposed conv: jump 3 but
          {"type": "conv2d", "out_channels": 2, "kernel_size": 3, "stride": 3, "padding": 1},  # two phases; only
          {"type": "conv2d", "out_channels": 2, "kernel_size": 2, "stride": 1, "padding": 0},  # an odd unit fits
          {"type": "conv_transpose2d", "out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 0,  # in the
           "dilation": 1}])  # image, and odd units reach neither edge of the envelope (even units do)
@example([{"type": "conv2d", "out_channels": 2, "kernel_size": 1, "stride": 1, "padding": 1},  # unit 1 reads
          {"type": "upsample", "scale_factor": 3, "mode": "bilinear"}])  # padding only, with a 1e-8 residue beside
@example([{"type": "conv_transpose2d", "out_channels": 2, "kernel_size": 2, "stride": 2, "padding": 1},  # trims
          {"type": "conv2d", "out_channels": 2, "kernel_size": 1, "stride": 2, "padding": 1},  # unit -1, which reads
          {"type": "maxpool2d", "kernel_size": 2}])  # pixel 0: the conv's zero padding is not at pixel -1 there
def test_fields_through_resampling_chains_equal_the_gradient_unit_by_unit(layers: list[dict]):
    """Transposed convs, upsamplings, convs and pools in any order, on a 20x20 image: the field
    is computed phase by phase, so an envelope holds every unit's measured field with both edges
    reached, and a chain whose phases line up again (nearest x2 then a 2x2 pool) is exact."""
    try:
        analysis = analysis_of_text(spec_text({"channels": 1, "height": 20, "width": 20}, layers))
    except SpecError:
        return  # a map that shrinks to nothing
    field = analysis.layers[-1].receptive_field
    if max(analysis.output_shape[1:]) > 120:
        return
    if not field.exact:
        event("envelope")
        assert_envelope(analysis, len(analysis.layers) - 1)
    elif measurable_layer(analysis) == len(analysis.layers) - 1 and (result := field_measurement(analysis, 200)):
        event("exact")
        expected, measured = result
        assert measured == expected
