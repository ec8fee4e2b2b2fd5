"""Hostile and careless spec files: each class of issue 10 ends in a located error (or, where the
input is legitimate, a normal answer), within a bounded time and memory. The whole rendered message
is pinned, written by hand: the numbers in it are worked out in the comments.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
HEAD = "name: m\ninput: {channels: 1, height: 28, width: 28}\n"


def billion_laughs() -> str:
    """Nine lines that stand for 10^9 values: a0 holds 10, each a_i holds ten a_(i-1)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n" + HEAD + "layers:\n  - {type: relu}\n"


CASES = {
    # a0 (10 values) .. a3 (10^4) are built once each; a4's fifth *a3 passes the 100,000 budget
    "alias_bomb": (billion_laughs(), """\
hostile.yaml:5:45: error: the document expands to more than 100,000 values once its aliases are followed
    5 | a4: &a4 [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]
      |                                             ^
  hint: if this spec is legitimate, raise the limit with CNNSPEC_MAX_SPEC_VALUES
  note: an alias (*name) repeats everything its anchor (&name) holds, so a few lines can stand for billions of values"""),
    "self_reference": (HEAD + "layers: &x\n  - *x\n", """\
hostile.yaml:3:9: error: an alias refers to the value that contains it (a recursive structure)
    3 | layers: &x
      |         ^
  hint: an alias (*name) may only repeat a value defined before it, outside it"""),
    # the file, layers and the layer are 3 levels: bracket 62 is level 65, at column 20 + 62 = 82;
    # the line is cut to 120 characters around it
    "deep_nesting": (HEAD + "layers:\n  - {type: relu, x: " + "[" * 1000 + "]" * 1000 + "}\n", """\
hostile.yaml:4:82: error: mappings and lists nest deeper than 64 levels here
    4 | ...""" + "[" * 120 + """...
      |""" + " " * 64 + """^
  hint: if this spec is legitimate, raise the limit with CNNSPEC_MAX_SPEC_DEPTH"""),
    "merge_scalar": (HEAD + "layers:\n  - {<<: 5, type: relu}\n", """\
hostile.yaml:4:10: error: a merge key '<<' takes a mapping or a list of mappings
    4 |   - {<<: 5, type: relu}
      |          ^
  expected: <<: *anchor_of_a_mapping, or <<: [*first, *second]
  received: <<: 5"""),
    "nested_list_in_inputs": (
        HEAD + "blocks:\n  b:\n    layers:\n      - {type: relu, inputs: [[input]]}\nlayers:\n  - {block: b}\n", """\
hostile.yaml:6:31: error: inputs.0 must be a valid string (relu layer 'b_1_relu_1')
    6 |       - {type: relu, inputs: [[input]]}
      |                               ^
  expected: Names of the layers feeding this one; default: the previous layer. 'input' names the model input.
  received: inputs.0=['input']
  note: in block 'b' used as 'b_1' at line 8"""),
    "mapping_in_inputs": (HEAD + "layers:\n  - {type: relu, inputs: [{a: 1}]}\n", """\
hostile.yaml:4:27: error: inputs.0 must be a valid string (relu layer 'relu_1')
    4 |   - {type: relu, inputs: [{a: 1}]}
      |                           ^
  expected: Names of the layers feeding this one; default: the previous layer. 'input' names the model input.
  received: inputs.0={'a': 1}"""),
    # 2**63 = 9,223,372,036,854,775,808
    "repeat_2_63": (
        HEAD + "blocks:\n  b:\n    layers:\n      - {type: relu}\nlayers:\n  - {block: b, repeat: 9223372036854775808}\n",
        """\
hostile.yaml:8:24: error: repeat: 9,223,372,036,854,775,808 is more than the 10,000 layers a model may have
    8 |   - {block: b, repeat: 9223372036854775808}
      |                        ^
  hint: if this spec is legitimate, raise the limit with CNNSPEC_MAX_LAYERS"""),
    # 100 x 100 x 100 = 10^6 relus; copy 0 of c fills 100 x 100 = 10,000, copy 1 passes the limit
    "repeats_nested": (
        HEAD + "blocks:\n  a:\n    layers:\n      - {type: relu}\n  b:\n    layers:\n      - {block: a, repeat: 100}\n"
        "  c:\n    layers:\n      - {block: b, repeat: 100}\nlayers:\n  - {block: c, repeat: 100}\n", """\
hostile.yaml:9:9: error: the model expands to more than 10,000 layers
    9 |       - {block: a, repeat: 100}
      |         ^
  hint: if this spec is legitimate, raise the limit with CNNSPEC_MAX_LAYERS
  note: counted after every block use and repeat is expanded; in block 'b' used as 'c_1_1_b_1' at line 12, copy 0"""),
    "kernel_10_30": (HEAD + "layers:\n  - {type: conv2d, out_channels: 4, kernel_size: [1, 1000000000000000000000000000000]}\n", """\
hostile.yaml:4:54: error: kernel_size is larger than the largest size PyTorch takes (conv2d layer 'conv2d_1')
    4 |   - {type: conv2d, out_channels: 4, kernel_size: [1, 1000000000000000000000000000000]}
      |                                                      ^
  expected: at most 2,147,483,647 (2**31 - 1)
  received: kernel_size=[1, 1000000000000000000000000000000]"""),
    # 2e9 + 2 * 1e9 - 1 + 1 = 4e9 per side; 4 * 4e9 * 4e9 = 6.4e19 elements
    "output_too_large": (
        "name: m\ninput: {channels: 1, height: 2000000000, width: 2000000000}\nlayers:\n"
        "  - {type: conv2d, out_channels: 4, kernel_size: 1, padding: 1000000000}\n", """\
hostile.yaml:4:5: error: conv2d layer 'conv2d_1': the output [4, 4000000000, 4000000000] is larger than PyTorch can index
    4 |   - {type: conv2d, out_channels: 4, kernel_size: 1, padding: 1000000000}
      |     ^
  expected: every dimension at most 2,147,483,647 (2**31 - 1) and at most 2**63 - 1 elements
  received: 64,000,000,000,000,000,000 elements"""),
    "bad_name_and_bad_layer": ("name: 1bad\ninput: {channels: 1, height: 28, width: 28}\nlayers:\n"
                               "  - {type: conv2d, out_channels: 0, kernel_size: 3}\n", """\
hostile.yaml:1:7: error: name must match pattern '^[A-Za-z_][A-Za-z0-9_]*$'
    1 | name: 1bad
      |       ^
  expected: Model name, e.g. simple_cnn.
  received: name='1bad'
hostile.yaml:4:34: error: out_channels must be greater than 0 (conv2d layer 'conv2d_1')
    4 |   - {type: conv2d, out_channels: 0, kernel_size: 3}
      |                                  ^
  expected: Number of filters (output channels).
  received: out_channels=0
2 errors"""),
    "dangling_and_shape": (HEAD + "layers:\n  - {type: relu, inputs: [nope]}\n"
                           "  - {type: linear, inputs: [input], out_features: 3}\n", """\
hostile.yaml:4:27: error: layer 'relu_1' refers to unknown layer 'nope'
    4 |   - {type: relu, inputs: [nope]}
      |                           ^
  expected: 'input' or the name of an earlier layer
hostile.yaml:5:5: error: linear layer 'linear_1': needs a vector input but 'input' gives [1, 28, 28]; add a flatten layer before it
    5 |   - {type: linear, inputs: [input], out_features: 3}
      |     ^
  expected: an input of shape [F]
  received: input=[1, 28, 28]
  hint: insert {type: flatten} (or global_avgpool) before this layer
2 errors"""),
}


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for variable in ("CNNSPEC_MAX_SPEC_BYTES", "CNNSPEC_MAX_SPEC_VALUES", "CNNSPEC_MAX_SPEC_DEPTH", "CNNSPEC_MAX_LAYERS"):
        monkeypatch.delenv(variable, raising=False)
    return tmp_path


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_spec_gets_the_whole_located_message(case, in_tmp, capsys):
    text, expected = CASES[case]
    Path("hostile.yaml").write_text(text)
    tracemalloc.start()
    try:
        code, out, err = run_cli(["analyze", "hostile.yaml"], capsys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (code, out) == (1, "")
    assert err == expected + "\n"
    assert peak < 200 * 2**20  # the 10^9-value bomb and 10^6 repeats stay far below 1 GB


def test_a_huge_file_is_refused_before_it_is_read(in_tmp, capsys):
    # 300,000 lines of 17 bytes after 52 + 8 bytes of header: 5,100,060 bytes
    Path("hostile.yaml").write_text(HEAD + "layers:\n" + "  - {type: relu}\n" * 300_000)
    code, out, err = run_cli(["validate", "hostile.yaml"], capsys)
    assert (code, out) == (1, "")
    assert err == """\
hostile.yaml:1:1: error: hostile.yaml is 5,100,060 bytes; spec files are limited to 262,144 bytes
  hint: if this spec is legitimate, raise the limit with CNNSPEC_MAX_SPEC_BYTES
  note: a spec describes layers, not weights or data; repeated layers belong in a block used with 'repeat'
"""


def test_the_limits_have_settings(in_tmp, monkeypatch, capsys):
    """Each limit can be raised (or lowered) with its environment variable, and a wrong value is said so."""
    Path("hostile.yaml").write_text(HEAD + "blocks:\n  b:\n    layers:\n      - {type: relu}\nlayers:\n"
                                    "  - {block: b, repeat: 20000}\n")
    monkeypatch.setenv("CNNSPEC_MAX_LAYERS", "20000")
    code, out, _ = run_cli(["validate", "hostile.yaml"], capsys)
    assert (code, out) == (0, "ok  hostile.yaml  (20,000 layers, 0 params, 0 MACs)\n")
    monkeypatch.setenv("CNNSPEC_MAX_LAYERS", "lots")
    code, out, err = run_cli(["validate", "hostile.yaml"], capsys)
    assert (code, err) == (1, "error: CNNSPEC_MAX_LAYERS='lots' is not a positive integer\n"
                              "  hint: unset it to use the default, 10,000 layers\n")
    monkeypatch.setenv("CNNSPEC_MAX_SPEC_DEPTH", "3")
    monkeypatch.delenv("CNNSPEC_MAX_LAYERS")
    code, _, err = run_cli(["validate", "hostile.yaml"], capsys)
    assert code == 1 and err.startswith("hostile.yaml:5:5: error: mappings and lists nest deeper than 3 levels here")


def test_merge_keys_still_work_and_own_keys_win(in_tmp, capsys):
    Path("merge.yaml").write_text(
        HEAD + "base: &base {type: conv2d, kernel_size: 3, out_channels: 4}\n"
        "layers:\n  - {<<: *base, name: c1}\n  - {<<: *base, name: c2, out_channels: 8}\n")
    from cnnspec.spec.source import load_file

    layers = load_file("merge.yaml").data["layers"]
    assert layers == [{"name": "c1", "type": "conv2d", "kernel_size": 3, "out_channels": 4},
                      {"name": "c2", "type": "conv2d", "kernel_size": 3, "out_channels": 8}]


def test_validate_checks_every_file_whatever_happens_in_one(in_tmp, capsys):
    Path("inputs.yaml").write_text(CASES["nested_list_in_inputs"][0])
    Path("bomb.yaml").write_text(billion_laughs())
    good = ROOT / "specs" / "simple_cnn.yaml"
    code, out, err = run_cli(["validate", "inputs.yaml", "bomb.yaml", "missing.yaml", good], capsys)
    assert code == 1
    assert out == f"ok  {good}  (10 layers, 421,642 params, 4,241,152 MACs)\n1 of 4 valid\n"
    assert [line.split(": error: ")[0] for line in err.splitlines() if ": error: " in line or line.startswith("error:")] == [
        "inputs.yaml:6:31", "bomb.yaml:5:45", "error: no such file: missing.yaml"]


def _schema_errors(layer: dict) -> list[tuple[list, str]]:
    import jsonschema

    from cnnspec.catalog import json_schema

    spec = {"name": "m", "input": {"channels": 1, "height": 28, "width": 28}, "layers": [layer]}
    validator = jsonschema.Draft202012Validator(json_schema())
    return sorted((list(error.absolute_path), error.message) for error in validator.iter_errors(spec))


def test_the_json_schema_names_the_typo_of_a_conv2d_field():
    """The layer union is discriminated on `type`: an editor sees the conv2d class's own complaints,
    not "is not valid under any of the given schemas" from trying all 21 classes."""
    assert _schema_errors({"type": "conv2d", "out_channels": 3, "kernal_size": 3}) == [
        (["layers", 0], "'kernel_size' is a required property"),
        (["layers", 0], "Additional properties are not allowed ('kernal_size' was unexpected)"),
    ]
    assert _schema_errors({"type": "conv2d", "out_channels": "x", "kernel_size": 3}) == [
        (["layers", 0, "out_channels"], "'x' is not of type 'integer'")]
    assert _schema_errors({"out_channels": 3}) == [(["layers", 0], "'type' is a required property")]
    assert _schema_errors({"block": "stage", "repeat": 0}) == [
        (["layers", 0, "repeat"], "0 is less than or equal to the minimum of 0")]
    assert _schema_errors({"type": "maxpool2d", "kernel_size": 2}) == []


# --- a valid model that cannot fit in memory --------------------------------------------------

# conv2d 3 -> 10^6 channels at 224x224 (p=1 keeps 224), then global pooling and 10 classes
HUGE = """\
name: huge
input: {channels: 3, height: 224, width: 224}
layers:
  - {type: conv2d, out_channels: 1000000, kernel_size: 3, padding: 1}
  - {type: global_avgpool}
  - {type: flatten}
  - {type: linear, out_features: 10}
"""
# weights: 3*9*10^6 + 10^6 = 28,000,000 conv + 10^7 + 10 linear = 38,000,010 params * 4 B = 145.0 MiB
# the conv's output: 10^6 * 224 * 224 * 4 B = 200,704,000,000 B = 186.9 GiB per image
HUGE_RECEIVED = ("the largest output is 'conv2d_1' [1000000, 224, 224], 186.9 GiB per image\n"
                 "  hint: use fewer channels or a smaller input")


def test_summary_refuses_a_model_that_cannot_fit_before_allocating(in_tmp, monkeypatch, capsys):
    import cnnspec.resources

    monkeypatch.setattr(cnnspec.resources, "available_bytes", lambda device=None: 16 * 2**30)  # this machine's state
    Path("huge.yaml").write_text(HUGE)
    code, out, err = run_cli(["summary", "huge.yaml"], capsys)
    assert (code, out) == (1, "")
    # batch 1: 145.0 MiB + (input 602,112 B + 2 * 186.9 GiB) = 374.0 GiB
    assert err == """\
huge.yaml:4:5: error: the model does not fit in memory: `summary` needs about 374.0 GiB, and 16.0 GiB are free on this machine
    4 |   - {type: conv2d, out_channels: 1000000, kernel_size: 3, padding: 1}
      |     ^
  received: 145.0 MiB for weights + 373.8 GiB for activations at batch 1 (weights; the largest layer's input and output; float32); """ + HUGE_RECEIVED + """, or a machine with more memory
"""


def test_train_refuses_it_with_the_real_free_memory(in_tmp, capsys):
    Path("huge.yaml").write_text(HUGE)
    code, out, err = run_cli(["train", "huge.yaml", "-d", "mnist_sample", "-o", "run", "--batch-size", "8",
                              "--device", "cpu"], capsys)
    assert code == 1
    # weights: 4 * 152,000,040 B = 579.8 MiB; activations: every output, 200,704,000,000 + 4,000,000
    # + 4,000,000 + 40 = 200,712,000,040 B, so 8 * (602,112 + 2 * 200,712,000,040) B = 2,990.8 GiB
    assert err.startswith("huge.yaml:4:5: error: the model does not fit in memory: `train` needs about 2991.4 GiB, and ")
    assert ("  received: 579.8 MiB for weights + 2990.8 GiB for activations at batch 8 (weights, gradients and "
            "2 optimizer moments; every output and its gradient; float32); " + HUGE_RECEIVED) in err
    assert not Path("run").exists()


def test_export_refuses_it_before_loading_the_weights(in_tmp, capsys):
    import cnnspec
    from cnnspec.spec.model import parse_spec
    from cnnspec.train.checkpoint import save_checkpoint

    spec = parse_spec(HUGE, "huge.yaml")
    save_checkpoint(Path("huge.pt"), {
        "cnnspec_version": cnnspec.__version__, "spec_name": spec.name, "spec_text": spec.text,
        "spec_hash": spec.hash, "model": {}, "optimizer": None, "scheduler": None, "epoch": 0, "metrics": [],
        "best_eval_accuracy": None, "train_config": {}, "dataset": {}})
    code, out, err = run_cli(["export", "huge.pt", "-o", "huge.onnx", "--no-data-check"], capsys)
    assert code == 1
    # 3 * 152,000,040 B = 434.9 MiB + 64 * (602,112 + 2 * 200,704,000,000) B = 23,925.8 GiB
    assert err.startswith("huge.pt[spec]:4:5: error: the model does not fit in memory: `export` needs about 23926.2 GiB")
    assert "  received: 434.9 MiB for weights + 23925.8 GiB for activations at batch 64 (weights in PyTorch, ONNX and onnxruntime; the largest layer's input and output" in err
    assert not Path("huge.onnx").exists()


def test_train_reports_every_problem_of_the_spec_in_one_pass(in_tmp, capsys):
    Path("hostile.yaml").write_text(CASES["dangling_and_shape"][0])
    code, out, err = run_cli(["train", "hostile.yaml", "-d", "mnist_sample", "-o", "run"], capsys)
    assert (code, out) == (1, "")
    assert err == CASES["dangling_and_shape"][1] + "\n"
