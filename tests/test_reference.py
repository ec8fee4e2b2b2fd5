"""Every number in REFERENCE.md's chapter section, torchvision's published parameter and MAC
counts, and the published receptive fields, reproduced by static analysis of the shipped specs.

No torch here: these numbers must come from the spec files alone. (The compile tests check that the
torch modules built from the same specs agree.)
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
from cnnspec.spec.source import load_file

import cnnspec

SPECS = Path(__file__).resolve().parents[1] / "specs"


@functools.cache
def shipped(name: str) -> Any:
    """The analysis of specs/<name>.yaml (cached: several tests read the same spec)."""
    return cnnspec.analyze(cnnspec.load_spec(SPECS / f"{name}.yaml"))


def inline(input_shape: tuple[int, int, int], *layers: str) -> Any:
    """The analysis of a small spec written inline: one YAML flow mapping per layer."""
    channels, height, width = input_shape
    text = "\n".join([
        "name: inline",
        f"input: {{channels: {channels}, height: {height}, width: {width}}}",
        "layers:",
        *(f"  - {layer}" for layer in layers),
    ])
    return cnnspec.analyze(cnnspec.parse_spec(text))


def field(analysis: Any, layer: str) -> dict[str, list[float]]:
    return analysis.layer(layer).receptive_field.to_dict()


# --- output sizes: H_out = floor((H + 2p - k)/s) + 1 -------------------------------------------

OUTPUT_SIZES = [
    pytest.param((1, 28, 28), 3, 1, 0, 8, (8, 26, 26), id="28_k3_s1_p0_is_26"),
    pytest.param((1, 28, 28), 3, 1, 1, 8, (8, 28, 28), id="28_k3_s1_p1_is_28"),
    pytest.param((1, 28, 28), 5, 2, 2, 8, (8, 14, 14), id="28_k5_s2_p2_is_14"),
    pytest.param((3, 32, 32), 3, 1, 1, 32, (32, 32, 32), id="32_k3_s1_p1_is_32"),
    pytest.param((3, 64, 64), 5, 2, 2, 128, (128, 32, 32), id="64x64x3_k5_s2_p2_128_filters_is_32x32x128"),
]


@pytest.mark.parametrize(("input_shape", "kernel", "stride", "padding", "filters", "expected"), OUTPUT_SIZES)
def test_conv_output_size(input_shape, kernel, stride, padding, filters, expected) -> None:
    analysis = inline(input_shape, f"{{type: conv2d, name: conv, out_channels: {filters}, "
                                   f"kernel_size: {kernel}, stride: {stride}, padding: {padding}}}")
    assert analysis.layer("conv").output_shape == expected


SHIPPED_OUTPUT_SIZES = [
    pytest.param("exercise1_output_size", "conv", (128, 32, 32), id="exercise1_64x64x3_to_32x32x128"),
    pytest.param("exercise1_output_sizes_28", "valid_k3_s1_p0", (8, 26, 26), id="exercise1_28_valid_26"),
    pytest.param("exercise1_output_sizes_28", "same_k3_s1_p1", (8, 28, 28), id="exercise1_28_same_28"),
    pytest.param("exercise1_output_sizes_28", "strided_k5_s2_p2", (8, 14, 14), id="exercise1_28_strided_14"),
    pytest.param("cifar10_cnn", "conv1", (32, 32, 32), id="cifar10_32_k3_s1_p1_32"),
    pytest.param("simple_cnn", "flatten", (3136,), id="simple_cnn_flatten_64x7x7"),
]


@pytest.mark.parametrize(("spec", "layer", "expected"), SHIPPED_OUTPUT_SIZES)
def test_shipped_output_size(spec: str, layer: str, expected: tuple[int, ...]) -> None:
    assert shipped(spec).layer(layer).output_shape == expected


# --- conv parameters: (k_h * k_w * C_in + 1) * C_out -------------------------------------------

CONV_PARAMS = [
    pytest.param(3, 32, 3, 896, id="3_to_32_k3_is_896"),
    pytest.param(32, 64, 3, 18_496, id="32_to_64_k3_is_18496"),
    pytest.param(64, 128, 3, 73_856, id="64_to_128_k3_is_73856"),
    pytest.param(128, 256, 3, 295_168, id="128_to_256_k3_is_295168"),
    pytest.param(3, 64, 7, 9_472, id="3_to_64_k7_is_9472"),
    pytest.param(512, 512, 3, 2_359_808, id="512_to_512_k3_is_2359808"),
    pytest.param(3, 64, 3, 1_792, id="3_to_64_k3_is_1792"),
    pytest.param(3, 16, 3, 448, id="3_to_16_k3_is_448"),
]


@pytest.mark.parametrize(("in_channels", "out_channels", "kernel", "expected"), CONV_PARAMS)
def test_conv_params(in_channels: int, out_channels: int, kernel: int, expected: int) -> None:
    analysis = inline((in_channels, 8, 8), f"{{type: conv2d, name: conv, out_channels: {out_channels}, "
                                           f"kernel_size: {kernel}, padding: {kernel // 2}}}")
    assert analysis.layer("conv").params == expected
    assert analysis.totals()["params"] == expected


SHIPPED_CONV_PARAMS = [
    pytest.param("cifar10_cnn", "conv1", 896, id="cifar10_conv1_896"),
    pytest.param("cifar10_cnn", "conv2", 18_496, id="cifar10_conv2_18496"),
    pytest.param("cifar10_cnn", "conv3", 73_856, id="cifar10_conv3_73856"),
    pytest.param("exercise2_params", "conv1", 9_472, id="exercise2_conv1_9472"),
    pytest.param("exercise2_params", "conv2", 73_856, id="exercise2_conv2_73856"),
    pytest.param("exercise2_params", "conv3", 295_168, id="exercise2_conv3_295168"),
    pytest.param("exercise5_conv_vs_dense", "conv1", 1_792, id="exercise5_conv1_1792"),
    pytest.param("vgg16", "conv5_1", 2_359_808, id="vgg16_conv5_1_2359808"),
]


@pytest.mark.parametrize(("spec", "layer", "expected"), SHIPPED_CONV_PARAMS)
def test_shipped_conv_params(spec: str, layer: str, expected: int) -> None:
    assert shipped(spec).layer(layer).params == expected


EXERCISE_TOTALS = [
    pytest.param("exercise2_params", 378_496, id="exercise2_three_convs_378496"),
    pytest.param("exercise5_conv_vs_dense", 75_648, id="exercise5_three_convs_75648"),
    pytest.param("exercise5_dense", 150_529_000, id="exercise5_one_dense_layer_150529000"),
]


@pytest.mark.parametrize(("spec", "expected"), EXERCISE_TOTALS)
def test_exercise_total_params(spec: str, expected: int) -> None:
    assert shipped(spec).totals()["params"] == expected


def test_exercise5_dense_is_about_2000_times_the_convs() -> None:
    ratio = shipped("exercise5_dense").totals()["params"] / shipped("exercise5_conv_vs_dense").totals()["params"]
    assert 1_989 < ratio < 1_990  # 150,529,000 / 75,648 = 1989.86


# --- receptive fields: the chapter's exercises and the simplified rule --------------------------

def test_exercise3_four_3x3_convs_see_9x9() -> None:
    analysis = shipped("exercise3_receptive_field")
    sizes = [field(analysis, name)["size"] for name in ("conv1", "conv2", "conv3", "conv4")]
    assert sizes == [[3, 3], [5, 5], [7, 7], [9, 9]]


def simplified_rule(analysis: Any) -> list[int]:
    """The chapter's R_l = R_(l-1) + (K_l - 1), per windowed layer: it ignores stride (the jump)."""
    size, sizes = 1, []
    for report in analysis.layers:
        kernel = getattr(report.node.layer, "kernel_size", None)
        if kernel is not None:
            size += kernel - 1
            sizes.append(size)
    return sizes


def test_vgg_example_simplified_rule_prints_11() -> None:
    assert simplified_rule(shipped("vgg_receptive_field")) == [3, 5, 6, 8, 10, 11]


def test_vgg_example_true_field_is_16() -> None:
    analysis = shipped("vgg_receptive_field")
    layers = ["conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "pool2"]
    assert [field(analysis, name)["size"][0] for name in layers] == [3, 5, 6, 10, 14, 16]
    assert [field(analysis, name)["jump"][0] for name in layers] == [1, 1, 2, 2, 2, 4]
    assert field(analysis, "pool2")["size"] == [16, 16]


def test_simplified_rule_is_exact_without_stride() -> None:
    analysis = shipped("exercise3_receptive_field")
    assert simplified_rule(analysis) == [field(analysis, f"conv{i}")["size"][0] for i in range(1, 5)]


# --- the chapter's SimpleCNN --------------------------------------------------------------------

SIMPLE_CNN_LAYERS = [
    pytest.param("conv1", 288, 32, id="conv1_288_plus_32"),
    pytest.param("conv2", 18_432, 64, id="conv2_18432_plus_64"),
    pytest.param("fc1", 401_408, 128, id="fc1_401408_plus_128"),
    pytest.param("fc2", 1_280, 10, id="fc2_1280_plus_10"),
]


@functools.cache
def simple_cnn_without_bias() -> Any:
    """SimpleCNN with ``bias: false`` on every conv and linear layer: its params are the weights."""
    data = load_file(SPECS / "simple_cnn.yaml").data  # cnnspec reads YAML 1.2 numbers (1e-3)
    for layer in data["layers"]:
        if layer["type"] in ("conv2d", "linear"):
            layer["bias"] = False
    return cnnspec.analyze(cnnspec.parse_spec(json.dumps(data), "simple_cnn.json", json_syntax=True))


@pytest.mark.parametrize(("layer", "weights", "biases"), SIMPLE_CNN_LAYERS)
def test_simple_cnn_layer_params(layer: str, weights: int, biases: int) -> None:
    assert simple_cnn_without_bias().layer(layer).params == weights
    assert shipped("simple_cnn").layer(layer).params == weights + biases


def test_simple_cnn_total_is_421642_not_the_printed_421066() -> None:
    total = shipped("simple_cnn").totals()["params"]
    assert total == 288 + 32 + 18_432 + 64 + 401_408 + 128 + 1_280 + 10 == 421_642
    assert total != 421_066


def test_simple_cnn_macs() -> None:
    # conv1 28*28*32*9 + conv2 14*14*64*32*9 + fc1 3136*128 + fc2 128*10
    assert shipped("simple_cnn").totals()["macs"] == 225_792 + 3_612_672 + 401_408 + 1_280 == 4_241_152


def test_simple_cnn_last_map_sees_10x10() -> None:
    analysis = shipped("simple_cnn")
    assert analysis.layer("pool2").output_shape == (64, 7, 7)
    assert field(analysis, "pool2") == {"size": [10, 10], "jump": [4, 4], "start": [1.5, 1.5]}
    assert analysis.layer("fc1").receptive_field is None


# --- torchvision's models: params and MACs (its published "GFLOPS" metadata) --------------------

TORCHVISION = [
    pytest.param("vgg16", 138_357_544, 15_470_264_320, id="vgg16"),
    pytest.param("resnet18", 11_689_512, 1_814_073_344, id="resnet18"),
    pytest.param("resnet50", 25_557_032, 4_089_184_256, id="resnet50"),
    pytest.param("mobilenet_v2", 3_504_872, 300_774_272, id="mobilenet_v2"),
    pytest.param("alexnet", 61_100_840, 714_188_480, id="alexnet"),
]


@pytest.mark.parametrize(("spec", "params", "macs"), TORCHVISION)
def test_torchvision_params_and_macs(spec: str, params: int, macs: int) -> None:
    totals = shipped(spec).totals()
    assert (totals["params"], totals["macs"]) == (params, macs)


def test_batchnorm_statistics_are_buffers_not_params() -> None:
    # resnet50 has 53 BatchNorm layers over 26,560 channels: 2 buffers each plus a batch counter.
    analysis = shipped("resnet50")
    norms = [r for r in analysis.layers if r.type == "batchnorm2d"]
    channels = sum(r.output_shape[0] for r in norms)
    assert (len(norms), channels) == (53, 26_560)
    assert analysis.totals()["buffers"] == 2 * channels + len(norms)


# --- published receptive fields -----------------------------------------------------------------

VGG16_FIELDS = [
    pytest.param(layer, size, jump, id=f"vgg16_{layer}_{size}")
    for layer, size, jump in [
        ("conv1_1", 3, 1), ("pool1", 6, 2), ("conv2_1", 10, 2), ("pool2", 16, 4), ("conv3_1", 24, 4),
        ("conv3_2", 32, 4), ("pool3", 44, 8), ("conv4_1", 60, 8), ("conv4_2", 76, 8), ("pool4", 100, 16),
        ("conv5_1", 132, 16), ("conv5_2", 164, 16), ("pool5", 212, 32),
    ]
]


@pytest.mark.parametrize(("layer", "size", "jump"), VGG16_FIELDS)
def test_vgg16_receptive_fields(layer: str, size: int, jump: int) -> None:
    rf = field(shipped("vgg16"), layer)
    assert (rf["size"], rf["jump"]) == ([size, size], [jump, jump])


FINAL_FIELDS = [
    pytest.param("resnet18", "layer4_1_relu2", 435, id="resnet18_final_map_435"),
    pytest.param("resnet50", "layer4_2_relu3", 427, id="resnet50_final_map_427"),
    pytest.param("alexnet", "pool5", 195, id="alexnet_pool5_195"),
]


@pytest.mark.parametrize(("spec", "layer", "size"), FINAL_FIELDS)
def test_final_map_receptive_field(spec: str, layer: str, size: int) -> None:
    rf = field(shipped(spec), layer)
    assert (rf["size"], rf["jump"]) == ([size, size], [32, 32])


# --- adaptive average pooling ------------------------------------------------------------------

ADAPTIVE = [
    # 6 -> 3 divides: the same as a window k = s = 2 (size 2, jump 2, centre of cell 0 at 0.5).
    pytest.param((1, 6, 6), [], {"size": [2, 2], "jump": [2, 2], "start": [0.5, 0.5]}, id="6_to_3_divisible"),
    # 5 -> 3 does not divide: cells [0, 1], [1, 3], [3, 4] (2, 3 and 2 pixels). The field size is the
    # largest window's (an upper bound), the jump the mean step 5/3, the start cell 0's centre 0.5.
    pytest.param((1, 5, 5), [], {"size": [3, 3], "jump": [5 / 3, 5 / 3], "start": [0.5, 0.5]}, id="5_to_3_not_divisible"),
    # after a 3x3 conv (size 3, jump 1, start 0): 3 + (3 - 1)*1 = 5, jump 5/3, start 0 + (2 - 1)/2 = 0.5
    pytest.param((1, 5, 5), ["{type: conv2d, out_channels: 2, kernel_size: 3, padding: 1}"],
                 {"size": [5, 5], "jump": [5 / 3, 5 / 3], "start": [0.5, 0.5]}, id="5_to_3_after_conv3"),
]


@pytest.mark.parametrize(("input_shape", "before", "expected"), ADAPTIVE)
def test_adaptive_avgpool_receptive_field(input_shape, before: list[str], expected) -> None:
    analysis = inline(input_shape, *before, "{type: adaptive_avgpool2d, name: pool, output_size: 3}")
    assert analysis.layer("pool").output_shape[1:] == (3, 3)
    rf = field(analysis, "pool")
    assert rf["size"] == expected["size"] and rf["start"] == expected["start"]
    assert rf["jump"] == pytest.approx(expected["jump"])


def test_adaptive_avgpool_divisible_equals_avgpool() -> None:
    adaptive = inline((4, 12, 12), "{type: adaptive_avgpool2d, name: pool, output_size: 4}")
    window = inline((4, 12, 12), "{type: avgpool2d, name: pool, kernel_size: 3}")
    assert field(adaptive, "pool") == field(window, "pool")
    assert adaptive.layer("pool").output_shape == window.layer("pool").output_shape


def test_resnet18_avgpool_7_to_1() -> None:
    # k = s = 7 on the 435 / 32 map: size 435 + 6*32 = 627, jump 7*32 = 224, start 3*32 = 96
    assert field(shipped("resnet18"), "avgpool") == {"size": [627, 627], "jump": [224, 224], "start": [96, 96]}


# --- union where paths merge --------------------------------------------------------------------

def test_union_of_offset_branches_is_wider_than_either() -> None:
    # branch a: two 2x2 'same' convs (padding 0 left, 1 right) cover pixels 0..2 (size 3, centre 1);
    # branch b: one 3x3 conv, padding 1, covers -1..1 (size 3, centre 0);
    # their sum sees -1..2: size 4, centre 0.5. Neither branch alone gives that.
    analysis = inline(
        (1, 8, 8),
        "{type: conv2d, name: a1, out_channels: 2, kernel_size: 2, padding: same}",
        "{type: conv2d, name: a2, out_channels: 2, kernel_size: 2, padding: same}",
        "{type: conv2d, name: b, inputs: [input], out_channels: 2, kernel_size: 3, padding: 1}",
        "{type: add, name: sum, inputs: [a2, b]}",
    )
    assert field(analysis, "a2") == {"size": [3, 3], "jump": [1, 1], "start": [1, 1]}
    assert field(analysis, "b") == {"size": [3, 3], "jump": [1, 1], "start": [0, 0]}
    assert field(analysis, "sum") == {"size": [4, 4], "jump": [1, 1], "start": [0.5, 0.5]}


INCEPTION1_BRANCHES = [
    # after stem 3x3 conv and 2x2 pool: size 4, jump 2, start 0.5; each k x k conv adds (k-1)*2
    pytest.param("inception1_branch1x1_relu", 4, id="1x1_4"),
    pytest.param("inception1_branch3x3_relu", 8, id="3x3_8"),
    pytest.param("inception1_branch5x5_relu", 12, id="5x5_12"),
    pytest.param("inception1_branch_pool_relu", 8, id="pool3x3_then_1x1_8"),
    pytest.param("inception1_concat", 12, id="concat_union_12"),
]


@pytest.mark.parametrize(("layer", "size"), INCEPTION1_BRANCHES)
def test_inception_concat_is_union_of_branches(layer: str, size: int) -> None:
    assert field(shipped("inception_block"), layer) == {"size": [size, size], "jump": [2, 2], "start": [0.5, 0.5]}


def test_inception_concat_channels() -> None:
    analysis = shipped("inception_block")
    assert analysis.layer("inception1_concat").output_shape == (16 + 32 + 8 + 8, 14, 14)
    assert analysis.layer("inception2_concat").output_shape == (32 + 64 + 16 + 16, 7, 7)


RESNET18_LAYER2_0 = [
    # layer1's output: conv1 7 (jump 2) -> maxpool 11 (jump 4) -> four 3x3 convs: 11 + 4*2*4 = 43
    pytest.param("layer1_1_relu2", 43, 4, id="layer1_out_43"),
    pytest.param("layer2_0_conv1", 51, 8, id="main_conv1_51"),  # 43 + 2*4, stride 2
    pytest.param("layer2_0_bn2", 67, 8, id="main_path_67"),  # 51 + 2*8
    pytest.param("layer2_0_downsample_bn", 43, 8, id="shortcut_43"),  # 1x1, stride 2
    pytest.param("layer2_0_add", 67, 8, id="add_union_67"),
]


@pytest.mark.parametrize(("layer", "size", "jump"), RESNET18_LAYER2_0)
def test_resnet_add_is_union_of_main_path_and_shortcut(layer: str, size: int, jump: int) -> None:
    rf = field(shipped("resnet18"), layer)
    assert rf == {"size": [size, size], "jump": [jump, jump], "start": [0, 0]}
