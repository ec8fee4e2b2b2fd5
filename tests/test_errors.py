"""Every broken spec in specs/invalid/ gets a located, actionable error, compared as a whole.

The expected texts are written by hand: the numbers in them (1024 features, [16, 16, 16], the
groups that divide 3 and 6) are worked out in the comments, not copied from the program.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnspec.cli import cli
from cnnspec.errors import SpecError, SpecWarning
from cnnspec.spec.model import load_spec, parse_spec
from cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
INVALID = ROOT / "specs" / "invalid"

EXPECTED = {
    "unknown_type.yaml": """\
specs/invalid/unknown_type.yaml:5:12: error: unknown layer type 'conv2'
    5 |   - {type: conv2, out_channels: 32, kernel_size: 3}
      |            ^
  expected: a registered layer type (`cnnspec layers` lists them)
  received: type='conv2'
  hint: did you mean 'conv2d'?""",
    # a near miss of a missing required field is one error, not "missing" plus "unknown"
    "unknown_field.yaml": """\
specs/invalid/unknown_field.yaml:5:38: error: unknown field 'kernal_size' for conv2d layer 'conv2d_1'; did you mean 'kernel_size'?
    5 |   - {type: conv2d, out_channels: 32, kernal_size: 3}
      |                                      ^
  expected: kernel_size: Kernel size k or [k_h, k_w].
  received: kernal_size=3""",
    # 28 -conv p1-> 28 -pool2-> 14 -conv p1-> 14 -pool2-> 7 -pool2 ceil-> 4: 64 * 4 * 4 = 1024
    "wrong_in_features.yaml": """\
specs/invalid/wrong_in_features.yaml:11:43: error: linear layer 'fc': in_features is 3136 but the input has 1024 features
   11 |   - {type: linear, name: fc, in_features: 3136, out_features: 10}
      |                                           ^
  expected: in_features: 1024 (or leave it out: it is inferred)
  received: in_features=3136""",
    # 28 -conv p1-> 28 -pool4-> 7
    "missing_flatten.yaml": """\
specs/invalid/missing_flatten.yaml:7:5: error: linear layer 'fc': needs a vector input but 'pool' gives [64, 7, 7]; add a flatten layer before it
    7 |   - {type: linear, name: fc, out_features: 10}
      |     ^
  expected: an input of shape [F]
  received: pool=[64, 7, 7]
  hint: insert {type: flatten} (or global_avgpool) before this layer""",
    # floor((32 + 2 - 3)/2) + 1 = 16
    "add_mismatch.yaml": """\
specs/invalid/add_mismatch.yaml:6:41: error: add layer 'residual': needs inputs of equal shape
    6 |   - {type: add, name: residual, inputs: [conv, input]}
      |                                         ^
  expected: every input with the same shape
  received: conv=[16, 16, 16], input=[3, 32, 32]
  hint: give the shortcut a 1x1 conv2d with the main path's out_channels and stride (a projection), as ResNet does""",
    "concat_mismatch.yaml": """\
specs/invalid/concat_mismatch.yaml:7:41: error: concat layer 'merge': needs feature maps of equal height and width (or all vectors)
    7 |   - {type: concat, name: merge, inputs: [a, b]}
      |                                         ^
  expected: inputs [C_i, H, W] with the same H and W
  received: a=[8, 32, 32], b=[8, 30, 30]
  hint: pad or pool the branches so that their spatial sizes agree""",
    # gcd(3, 6) = 3, whose divisors are 1 and 3
    "bad_groups.yaml": """\
specs/invalid/bad_groups.yaml:5:73: error: conv2d layer 'conv': groups=2 does not divide in_channels=3
    5 |   - {type: conv2d, name: conv, out_channels: 6, kernel_size: 3, groups: 2}
      |                                                                         ^
  expected: groups dividing both in_channels (3) and out_channels (6)
  received: groups=2, in_channels=3, out_channels=6
  hint: groups that work here: 1, 3""",
    # 28 -pool4-> 7 -pool4-> 1, then a 3x3 window on 1 pixel
    "shrinks_to_zero.yaml": """\
specs/invalid/shrinks_to_zero.yaml:7:62: error: conv2d layer 'conv': the output shrinks to zero along H: the window (3) is larger than the padded input (1 + 0)
    7 |   - {type: conv2d, name: conv, out_channels: 8, kernel_size: 3}
      |                                                              ^
  expected: an effective kernel of at most 1
  received: input H=1, kernel_size=3, stride=1, padding=0+0, dilation=1
  hint: use a smaller kernel, add padding, or remove a downsampling layer before this one""",
    "needs_feature_map.yaml": """\
specs/invalid/needs_feature_map.yaml:6:5: error: conv2d layer 'conv': needs a feature map [C, H, W] but 'flat' gives the vector [784]
    6 |   - {type: conv2d, name: conv, out_channels: 8, kernel_size: 3}
      |     ^
  expected: an input of shape [C, H, W]
  received: flat=[784]
  hint: move this layer before the flatten / global_avgpool that makes a vector""",
    "duplicate_key.yaml": """\
specs/invalid/duplicate_key.yaml:8:5: error: duplicate key 'out_channels'
    8 |     out_channels: 64
      |     ^
  hint: each key may appear once per mapping; remove or rename one of them
  note: first defined at line 6, column 5""",
    "duplicate_name.yaml": """\
specs/invalid/duplicate_name.yaml:6:26: error: duplicate layer name 'conv'
    6 |   - {type: conv2d, name: conv, out_channels: 8, kernel_size: 3}
      |                          ^
  hint: layer names must be unique; rename one of them
  note: first used at line 5""",
    "dangling_reference.yaml": """\
specs/invalid/dangling_reference.yaml:7:52: error: layer 'merge' refers to unknown layer 'branch_c'
    7 |   - {type: concat, name: merge, inputs: [branch_a, branch_c]}
      |                                                    ^
  expected: 'input' or the name of an earlier layer
  hint: did you mean 'branch_b'?""",
    "forward_reference.yaml": """\
specs/invalid/forward_reference.yaml:5:38: error: layer 'act' refers to 'conv', which is defined later (line 6)
    5 |   - {type: relu, name: act, inputs: [conv]}
      |                                      ^
  hint: references may only point backwards: move this layer after it""",
    "unsafe_tag.yaml": """\
specs/invalid/unsafe_tag.yaml:5:5: error: unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'
    5 |   - !!python/object/apply:os.system ["echo pwned"]
      |     ^
  expected: plain YAML values (mappings, lists, strings, numbers, booleans)
  hint: spec files never construct Python objects; remove the tag""",
    "yaml_syntax.yaml": """\
specs/invalid/yaml_syntax.yaml:4:7: error: YAML syntax error: expected ',' or '}', but got ':'
    4 | layers:
      |       ^
  note: while parsing a flow mapping that starts at line 3, column 8""",
    "json_syntax.json": """\
specs/invalid/json_syntax.json:3:30: error: JSON syntax error: Expecting value
    3 |  "layers": [{"type": "relu"},]}
      |                              ^""",
    "schema_errors.yaml": """\
specs/invalid/schema_errors.yaml:5:47: error: out_channels must be greater than 0 (conv2d layer 'conv1')
    5 |   - {type: conv2d, name: conv1, out_channels: 0, kernel_size: 3}
      |                                               ^
  expected: Number of filters (output channels).
  received: out_channels=0
specs/invalid/schema_errors.yaml:6:5: error: conv2d layer 'conv2' is missing the required field 'out_channels'
    6 |   - {type: conv2d, name: conv2, kernel_size: three}
      |     ^
  expected: out_channels: Number of filters (output channels).
specs/invalid/schema_errors.yaml:6:46: error: kernel_size has the wrong type (str) (conv2d layer 'conv2')
    6 |   - {type: conv2d, name: conv2, kernel_size: three}
      |                                              ^
  expected: Kernel size k or [k_h, k_w].
  received: kernel_size='three'
specs/invalid/schema_errors.yaml:7:24: error: p must be less than or equal to 1 (dropout layer 'dropout_1')
    7 |   - {type: dropout, p: 1.5}
      |                        ^
  expected: Probability of zeroing an element.
  received: p=1.5
4 errors""",
    # a0..a3 are 10 + 100 + 1,000 + 10,000 values; a4's fifth *a3 passes 100,000
    "alias_bomb.yaml": """\
specs/invalid/alias_bomb.yaml:10:45: error: the document expands to more than 100,000 values once its aliases are followed
   10 | a4: &a4 [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]
      |                                             ^
  hint: if this spec is legitimate, raise the limit with CNNSPEC_MAX_SPEC_VALUES
  note: an alias (*name) repeats everything its anchor (&name) holds, so a few lines can stand for billions of values""",
    # the file, layers and the layer are 3 levels: bracket 62 is level 65, column 20 + 62
    "deep_nesting.yaml": """\
specs/invalid/deep_nesting.yaml:5:82: error: mappings and lists nest deeper than 64 levels here
    5 | ...""" + "[" * 120 + """...
      |""" + " " * 64 + """^
  hint: if this spec is legitimate, raise the limit with CNNSPEC_MAX_SPEC_DEPTH""",
    "merge_scalar.yaml": """\
specs/invalid/merge_scalar.yaml:5:10: error: a merge key '<<' takes a mapping or a list of mappings
    5 |   - {<<: 5, type: relu}
      |          ^
  expected: <<: *anchor_of_a_mapping, or <<: [*first, *second]
  received: <<: 5""",
    "huge_repeat.yaml": """\
specs/invalid/huge_repeat.yaml:9:26: error: repeat: 9,223,372,036,854,775,808 is more than the 10,000 layers a model may have
    9 |   - {block: act, repeat: 9223372036854775808}
      |                          ^
  hint: if this spec is legitimate, raise the limit with CNNSPEC_MAX_LAYERS""",
    "huge_kernel.yaml": """\
specs/invalid/huge_kernel.yaml:5:50: error: kernel_size is larger than the largest size PyTorch takes (conv2d layer 'conv2d_1')
    5 |   - {type: conv2d, out_channels: 8, kernel_size: 1000000000000000000000000000000}
      |                                                  ^
  expected: at most 2,147,483,647 (2**31 - 1)
  received: kernel_size=1000000000000000000000000000000""",
    "nested_inputs.yaml": """\
specs/invalid/nested_inputs.yaml:6:27: error: inputs.0 must be a valid string (relu layer 'relu_1')
    6 |   - {type: relu, inputs: [[conv]]}
      |                           ^
  expected: Names of the layers feeding this one; default: the previous layer. 'input' names the model input.
  received: inputs.0=['conv']""",
    "unknown_block.yaml": """\
specs/invalid/unknown_block.yaml:11:13: error: unknown block 'conv_bnn'
   11 |   - {block: conv_bnn, name: stem}
      |             ^
  expected: one of the names under 'blocks': conv_bn
  hint: did you mean 'conv_bn'?
specs/invalid/unknown_block.yaml:12:42: error: block 'conv_bn' has no argument 'chanels'
   12 |   - {block: conv_bn, name: stage, with: {chanels: 32}}
      |                                          ^
  expected: one of channels
  hint: did you mean 'channels'?
2 errors""",
    # the gate has 8 channels, the map 16
    "mul_mismatch.yaml": """\
specs/invalid/mul_mismatch.yaml:10:38: error: mul layer 'scale': needs inputs of equal shape, or a [C, 1, 1] gate with the map's C channels
   10 |   - {type: mul, name: scale, inputs: [input, gate]}
      |                                      ^
  expected: every input [16, 8, 8] or [16, 1, 1]
  received: input=[16, 8, 8], gate=[8, 1, 1]
  hint: a squeeze-and-excitation gate is adaptive_avgpool2d with output_size 1, then 1x1 convs back to the map's channels""",
    # channels 6: slice [6:] is empty; the divisors of 6 are 1, 2, 3, 6
    "empty_channel_slice.yaml": """\
specs/invalid/empty_channel_slice.yaml:5:46: error: channel_slice layer 'tail': the slice keeps no channel: [6:] of 6 channels is empty
    5 |   - {type: channel_slice, name: tail, start: 6}
      |                                              ^
  expected: start before end, both within -6..6
  received: start=6, input=[6, 8, 8]
specs/invalid/empty_channel_slice.yaml:6:48: error: channel_shuffle layer 'mix': groups=4 does not divide the 6 input channels
    6 |   - {type: channel_shuffle, name: mix, groups: 4, inputs: [input]}
      |                                                ^
  expected: groups dividing 6
  received: groups=4, input=[6, 8, 8]
  hint: groups that work here: 1, 2, 3, 6
2 errors""",
    # PyTorch: output_padding < max(stride, dilation) = max(2, 1)
    "resampling_fields.yaml": """\
specs/invalid/resampling_fields.yaml:6:112: error: conv_transpose2d layer 'up': output_padding 2 along H must be less than the stride or the dilation (PyTorch's rule)
    6 |   - {type: conv_transpose2d, name: up, out_channels: 4, kernel_size: 3, stride: 2, padding: 1, output_padding: 2}
      |                                                                                                                ^
  expected: output_padding < max(stride, dilation) = 2
  received: output_padding=2, stride=2, dilation=1
specs/invalid/resampling_fields.yaml:7:48: error: upsample layer 'both': give exactly one of scale_factor and size
    7 |   - {type: upsample, name: both, scale_factor: 2, size: [14, 14], inputs: [input]}
      |                                                ^
  expected: scale_factor: 2 (or [2, 3]), or size: [h, w]
  received: scale_factor=2, size=[14, 14]
specs/invalid/resampling_fields.yaml:8:67: error: upsample layer 'sharp': align_corners works only with mode bilinear (PyTorch rejects it for nearest)
    8 |   - {type: upsample, name: sharp, scale_factor: 2, align_corners: true, inputs: [input]}
      |                                                                   ^
  received: mode='nearest', align_corners=true
  hint: remove align_corners, or use mode: bilinear
3 errors""",
    # pydantic alone said "inputs must have at most 1 item after validation, not 2 (block use)"
    "block_two_inputs.yaml": """\
specs/invalid/block_two_inputs.yaml:12:43: error: a block use takes one input, got 2
   12 |   - {block: conv_bn, name: stage, inputs: [left, right]}
      |                                           ^
  expected: inputs: [one layer name] (inside the block it is called 'input')
  received: inputs=['left', 'right']
  hint: merge them first, e.g. {type: concat, name: merged, inputs: [left, right]} (or add), and give the block inputs: [merged]""",    # the caret sits under 'raito' inside the quoted expression, not at the start of the value
    "bad_expression.yaml": """\
specs/invalid/bad_expression.yaml:8:67: error: in expression '${in_channels * raito}': unknown name 'raito'
    8 |       - {type: conv2d, name: conv, out_channels: "${in_channels * raito}", kernel_size: 1}
      |                                                                   ^
  expected: one of index, count, in_channels, ratio
  hint: did you mean 'ratio'?
  note: in block 'expand' used as 'stage' at line 12""",
}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cnnspec", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_every_invalid_spec_has_an_expected_message():
    shipped = {p.name for p in INVALID.iterdir() if p.suffix in (".yaml", ".json")}
    assert shipped == set(EXPECTED) | {"block_value.yaml", "unread_layer.yaml"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invalid_spec_message(name):
    """The whole rendered message: location, source line, caret, expected, received, hint."""
    from cnnspec.analysis import analyze

    with pytest.raises(SpecError) as caught:
        analyze(load_spec(f"specs/invalid/{name}"))
    assert caught.value.render() == EXPECTED[name]


@pytest.mark.parametrize("kind,closest", [("relu7", "relu"), ("maxpool", "maxpool2d"), ("Conv2d", "conv2d"),
                                          ("lstm", None), ("", None)])
def test_an_unknown_type_suggests_the_closest_names_not_the_whole_registry(kind, closest):
    from cnnspec.layers import LAYER_TYPES

    with pytest.raises(SpecError) as caught:
        parse_spec(f"name: t\ninput: {{channels: 1, height: 4, width: 4}}\nlayers:\n  - {{type: '{kind}'}}\n", "t.yaml")
    text = caught.value.render()
    assert text.startswith(f"t.yaml:4:12: error: unknown layer type '{kind}'\n")
    assert "expected: a registered layer type (`cnnspec layers` lists them)" in text
    hints = [line for line in text.splitlines() if line.startswith("  hint: ")]
    if closest is None:
        assert not hints
    else:
        (hint,) = hints
        names = re.findall(r"'([^']*)'", hint)
        assert hint.startswith(f"  hint: did you mean '{closest}'") and hint.endswith("?")
        assert 1 <= len(names) <= 3 and set(names) <= set(LAYER_TYPES)
    assert sum(f"'{name}'" in text for name in LAYER_TYPES) <= 3  # not the list of every type


def test_a_layer_without_type_is_told_where_the_types_are_listed():
    with pytest.raises(SpecError) as caught:
        parse_spec("name: t\ninput: {channels: 1, height: 4, width: 4}\nlayers:\n  - {out_channels: 3}\n", "t.yaml")
    text = caught.value.render()
    assert text.startswith("t.yaml:4:5: error: layer has no 'type'\n")
    assert "expected: a registered layer type (`cnnspec layers` lists them)" in text
    assert "hint: give the layer a type, e.g. {type: conv2d, ...}" in text


def test_error_in_block_points_at_the_use_site():
    with pytest.raises(SpecError) as caught:
        load_spec("specs/invalid/block_value.yaml")
    diagnostics = caught.value.diagnostics
    assert [(d.location.line, d.location.col) for d in diagnostics] == [(12, 63), (12, 63)]
    assert diagnostics[0].message == "out_channels must be greater than 0 (conv2d layer 'stage_0_conv')"
    assert diagnostics[1].note == "in block 'conv_bn' used as 'stage' at line 12, copy 1"


@pytest.fixture(autouse=True)
def _run_from_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_cli_exits_1_with_located_error_and_no_traceback():
    result = _cli("analyze", "specs/invalid/add_mismatch.yaml")
    assert result.returncode == 1
    assert result.stderr.startswith("specs/invalid/add_mismatch.yaml:6:41: error: add layer 'residual'")
    assert "Traceback" not in result.stderr + result.stdout


def test_validate_many_files_fails_if_any_is_invalid():
    runner = CliRunner()
    good = runner.invoke(cli, ["validate", "specs/simple_cnn.yaml"])
    assert good.exit_code == 0 and good.output.startswith("ok  specs/simple_cnn.yaml  (10 layers, 421,642 params")
    mixed = _cli("validate", "specs/simple_cnn.yaml", "specs/invalid/bad_groups.yaml", "specs/invalid/unknown_type.yaml")
    assert mixed.returncode == 1
    assert "ok  specs/simple_cnn.yaml" in mixed.stdout
    assert "bad_groups.yaml:5:73: error" in mixed.stderr and "unknown_type.yaml:5:12: error" in mixed.stderr


@pytest.mark.parametrize("args, message", [
    (["analyze", "specs/no_such_file.yaml"], "error: no such file: specs/no_such_file.yaml"),
    (["analyze", "specs"], "error: specs is a directory, not a spec file"),
    (["analyze", "specs/simple_cnn.yaml", "--format", "xml"], "Invalid value for '--format'"),
    (["layers", "conv2"], "error: unknown layer type 'conv2'\n  hint: did you mean 'conv2d'?"),
])
def test_usage_errors_are_messages_not_tracebacks(args, message):
    result = _cli(*args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_float_exponent_is_a_number_like_yaml_1_2():
    spec = parse_spec(
        "name: x\ninput: {channels: 1, height: 8, width: 8}\nlayers:\n"
        "  - {type: batchnorm2d, eps: 1e-3}\n  - {type: leaky_relu, negative_slope: 2E-1}\n"
    )
    assert spec.nodes[0].layer.eps == 0.001
    assert spec.nodes[1].layer.negative_slope == 0.2


def test_missing_top_level_fields_are_all_reported():
    with pytest.raises(SpecError) as caught:
        parse_spec("name: 3x\nlayers: []\n", "t.yaml")
    messages = [d.message for d in caught.value.diagnostics]
    assert any("name must match pattern" in m for m in messages)
    assert "the spec is missing the required field 'input'" in messages
    assert any(m.startswith("layers must have at least 1 item") for m in messages)


def test_a_spec_must_be_a_mapping():
    with pytest.raises(SpecError) as caught:
        parse_spec("- just\n- a list\n", "t.yaml")
    assert caught.value.diagnostics[0].message == "a spec must be a mapping with name, input and layers"


def test_wrong_arity_for_merges():
    text = ("name: x\ninput: {channels: 1, height: 8, width: 8}\nlayers:\n"
            "  - {type: add, inputs: [input]}\n")
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "t.yaml")
    assert caught.value.diagnostics[0].message == "add takes at least 2 inputs, got 1"


def test_several_inputs_to_a_one_input_layer_names_the_merges():
    text = ("name: x\ninput: {channels: 1, height: 8, width: 8}\nlayers:\n"
            "  - {type: relu, inputs: [input, input]}\n")
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "t.yaml")
    (problem,) = caught.value.diagnostics
    assert problem.message == "relu takes exactly 1 input, got 2"
    assert problem.hint.startswith("add, concat") and problem.hint.endswith(" merge several inputs; other layers take one")


def test_same_padding_with_stride_is_rejected_like_pytorch():
    text = ("name: x\ninput: {channels: 1, height: 8, width: 8}\nlayers:\n"
            "  - {type: conv2d, out_channels: 4, kernel_size: 3, stride: 2, padding: same}\n")
    from cnnspec.analysis import analyze

    with pytest.raises(SpecError) as caught:
        analyze(parse_spec(text, "t.yaml"))
    assert "padding 'same' works only with stride 1" in caught.value.diagnostics[0].message
    assert caught.value.diagnostics[0].location.line == 4


def test_pool_padding_over_half_the_kernel_is_rejected_like_pytorch():
    text = ("name: x\ninput: {channels: 1, height: 8, width: 8}\nlayers:\n"
            "  - {type: maxpool2d, kernel_size: 2, padding: 2}\n")
    from cnnspec.analysis import analyze

    with pytest.raises(SpecError) as caught:
        analyze(parse_spec(text, "t.yaml"))
    assert caught.value.diagnostics[0].message == (
        "maxpool2d layer 'maxpool2d_1': padding 2 is more than half the kernel (2)")


# probe: 2 * 4 * 1 * 1 + 2 = 10 params, MACs 2 * 26 * 26 * 4 = 5,408; probe_bn: 2 * 2 = 4 params
UNREAD_WARNING = """\
specs/invalid/unread_layer.yaml:8:5: warning: layer 'probe_bn' is never read: no later layer takes it as input and it is not the last layer (the model's output)
    8 |   - {type: batchnorm2d, name: probe_bn}
      |     ^
  hint: name it in a later layer's inputs, or remove it; until then it and the layer feeding only it (probe) still count in the totals (14 params, 5,408 MACs): the compiled module holds and runs them
"""


@pytest.mark.parametrize("command", ["analyze", "validate"])
def test_an_unread_layer_is_a_located_warning_that_does_not_fail(command, capsys):
    code, out, err = run_cli([command, "specs/invalid/unread_layer.yaml"], capsys)
    assert (code, err) == (0, UNREAD_WARNING)
    if command == "validate":  # the totals keep the dead branch: params 40 + 14 + 50,
        # MACs conv 4 * 26 * 26 * 9 = 24,336 + probe 5,408 + fc 4 * 10 = 40
        assert out == "ok  specs/invalid/unread_layer.yaml  (6 layers, 104 params, 29,784 MACs)\n"


def test_validate_strict_refuses_an_unread_layer_and_accepts_a_clean_spec(capsys):
    code, out, err = run_cli(["validate", "--strict", "specs/invalid/unread_layer.yaml", "specs/simple_cnn.yaml"], capsys)
    assert code == 1
    assert err == UNREAD_WARNING + "specs/invalid/unread_layer.yaml: 1 warning, refused by --strict\n"
    assert out.startswith("ok  specs/simple_cnn.yaml  (10 layers, 421,642 params")


def test_a_layer_of_a_block_copy_nobody_reads_names_its_copy(capsys):
    text = """\
name: unread_in_block
input: {channels: 1, height: 8, width: 8}
blocks:
  pair:
    layers:
      - {type: conv2d, name: side, out_channels: 2, kernel_size: 1, inputs: [input]}
      - {type: relu, name: act, inputs: [input]}
layers:
  - {block: pair, name: stage, repeat: 2}
"""
    from cnnspec.analysis import analyze

    with pytest.warns(SpecWarning) as caught:
        analysis = analyze(parse_spec(text, "b.yaml"))
    assert [str(w.message) for w in caught] == [d.render(text.splitlines()) for d in analysis.warnings]
    assert [(d.message.split(" is ")[0], d.location.line, d.note) for d in analysis.warnings] == [
        ("layer 'stage_0_side'", 6, "in block 'pair' used as 'stage' at line 9, copy 0"),
        ("layer 'stage_1_side'", 6, "in block 'pair' used as 'stage' at line 9, copy 1"),
    ]
    assert analysis.totals()["params"] == 2 * (2 * 1 + 2)  # both unread convs still count


@pytest.mark.slow
def test_train_and_export_warn_about_an_unread_layer(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "specs/invalid/unread_layer.yaml", "-d", "mnist_sample", "--epochs", "1",
                            "--batch-size", "256", "--device", "cpu", "-o", run], capsys)
    assert code == 0 and err.startswith(UNREAD_WARNING)
    code, _, err = run_cli(["export", run, "-o", tmp_path / "model.onnx"], capsys)
    assert code == 0
    assert err == UNREAD_WARNING.replace("specs/invalid/unread_layer.yaml", f"{run / 'best.pt'}[spec]")
