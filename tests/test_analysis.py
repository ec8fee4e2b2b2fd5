"""The analyzer's report formats, conventions, blocks, schema and catalogue (no torch anywhere)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnspec import analyze, parse_spec
from cnnspec.catalog import catalog, json_schema, render_catalog_markdown
from cnnspec.cli import cli

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted(p for p in (ROOT / "specs").glob("*.y*ml"))


def test_json_report_contract_for_simple_cnn():
    result = CliRunner().invoke(cli, ["analyze", "specs/simple_cnn.yaml", "--format", "json"],
                                catch_exceptions=False)
    data = json.loads(result.output)
    assert data["name"] == "simple_cnn" and data["input_shape"] == [1, 28, 28]
    assert data["totals"]["params"] == 421_642 and data["totals"]["macs"] == 4_241_152
    conv1 = data["layers"][0]
    assert conv1 == {
        "name": "conv1", "type": "conv2d", "inputs": ["input"], "output_shape": [32, 28, 28],
        "params": 320, "trainable_params": 320, "non_trainable_params": 0, "buffers": 0,
        "macs": 32 * 28 * 28 * 9, "activation_bytes": 32 * 28 * 28 * 4,
        "receptive_field": {"size": [3, 3], "jump": [1, 1], "start": [0, 0]},
    }
    assert data["layers"][6]["receptive_field"] is None  # flatten: a vector
    assert data["totals"]["activation_bytes"] == sum(l["activation_bytes"] for l in data["layers"])


def test_buffers_and_frozen_layers_are_counted_apart():
    spec = parse_spec(
        "name: x\ninput: {channels: 3, height: 8, width: 8}\nlayers:\n"
        "  - {type: conv2d, name: conv, out_channels: 16, kernel_size: 3, bias: false, trainable: false}\n"
        "  - {type: batchnorm2d, name: bn}\n"
    )
    totals = analyze(spec).totals()
    assert totals["params"] == 16 * 3 * 9 + 2 * 16
    assert totals["trainable_params"] == 2 * 16
    assert totals["non_trainable_params"] == 16 * 3 * 9
    assert totals["buffers"] == 2 * 16 + 1  # running mean, running var, num_batches_tracked


def test_table_has_every_layer_and_a_totals_row():
    result = CliRunner().invoke(cli, ["analyze", "specs/simple_cnn.yaml"], catch_exceptions=False)
    lines = result.output.splitlines()
    assert lines[0] == "simple_cnn: input [1, 28, 28] -> output [10]"
    for name in ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc1", "relu3", "fc2"):
        assert any(line.startswith(f"│ {name} ") for line in lines), name
    total = next(line for line in lines if line.startswith("│ total"))
    assert "421,642" in total and "4,241,152" in total
    assert "10x10 j4 s1.5" in result.output


def test_markdown_and_mermaid():
    runner = CliRunner()
    markdown = runner.invoke(cli, ["analyze", "specs/simple_cnn.yaml", "-f", "markdown"]).output
    assert "| conv2 | conv2d |  | [64, 14, 14] | 18,496 | 3,612,672 | 8x8 j2 s0.5 | 49.0 KiB |" in markdown
    assert "| **total** |" in markdown
    mermaid = runner.invoke(cli, ["analyze", "specs/simple_cnn.yaml", "-f", "mermaid"]).output
    assert mermaid.startswith("flowchart TD\n")
    assert '    pool2["pool2: maxpool2d 2x2/2<br/>[64, 7, 7]"]' in mermaid
    assert "    relu1 --> pool1" in mermaid


def test_explain_shows_the_textbook_arithmetic():
    output = CliRunner().invoke(cli, ["analyze", "specs/simple_cnn.yaml", "--explain"]).output
    assert "H_out = floor((28 + 2*1 - 3)/1) + 1 = 28" in output
    assert "params = C_out * (C_in/groups) * k_h * k_w + bias = 64 * 32 * 3 * 3 + 64 = 18,496" in output
    assert "params = in * out + bias = 3136 * 128 + 128 = 401,536" in output
    assert "RF_H: size = 8 + (2-1)*2 = 10, jump = 2*2 = 4, start = 0.5 + ((2-1)/2 - 0)*2 = 1.5" in output
    data = json.loads(CliRunner().invoke(cli, ["analyze", "specs/simple_cnn.yaml", "-f", "json", "--explain"]).output)
    assert data["layers"][2]["explain"][0] == "H_out = floor((28 + 2*0 - 2)/2) + 1 = 14"


def test_explain_ceil_mode_and_dilation():
    spec = parse_spec(
        "name: x\ninput: {channels: 1, height: 7, width: 7}\nlayers:\n"
        "  - {type: maxpool2d, name: pool, kernel_size: 2, ceil_mode: true}\n"
        "  - {type: conv2d, name: conv, out_channels: 1, kernel_size: 3, dilation: 2, padding: 2}\n"
    )
    from cnnspec.report import render

    text = render(analyze(spec), "table", explain=True)
    assert "H_out = ceil((7 + 2*0 - 2)/2) + 1 = 4" in text  # ceil(2.5) + 1
    assert "H_out = floor((4 + 2*2 - (2*(3-1) + 1))/1) + 1 = 4" in text


def test_ceil_mode_drops_a_window_starting_in_the_padding():
    # PyTorch: H=5, k=2, s=2, p=1, ceil -> ceil((5+2-2)/2)+1 = 4, but window 3 starts at 6 >= 5+1: 3
    spec = parse_spec(
        "name: x\ninput: {channels: 1, height: 5, width: 6}\nlayers:\n"
        "  - {type: maxpool2d, kernel_size: 2, padding: 1, ceil_mode: true}\n"
    )
    assert analyze(spec).output_shape == (1, 3, 4)


def test_same_padding_with_even_kernel_pads_right_and_bottom():
    spec = parse_spec(
        "name: x\ninput: {channels: 1, height: 9, width: 9}\nlayers:\n"
        "  - {type: conv2d, out_channels: 2, kernel_size: 4, padding: same}\n"
    )
    report = analyze(spec).layers[0]
    assert report.output_shape == (2, 9, 9)
    # left pad 1 (right 2): start = 0 + ((4-1)/2 - 1) * 1 = 0.5
    assert report.receptive_field.to_dict() == {"size": [4, 4], "jump": [1, 1], "start": [0.5, 0.5]}


def test_full_padding_grows_the_map():
    spec = parse_spec(
        "name: x\ninput: {channels: 1, height: 10, width: 10}\nlayers:\n"
        "  - {type: conv2d, out_channels: 1, kernel_size: 3, padding: full}\n"
    )
    assert analyze(spec).output_shape == (1, 12, 12)  # 10 + 2*2 - 3 + 1


BLOCKS = """\
name: blocky
input: {channels: 3, height: 32, width: 32}
blocks:
  basic:
    args: {channels: 8, stride: 1, project: false, shortcut: input}
    layers:
      - {type: conv2d, name: conv1, out_channels: $channels, kernel_size: 3, stride: $stride, padding: 1}
      - {type: relu, name: relu1}
      - {type: conv2d, name: conv2, out_channels: $channels, kernel_size: 3, padding: 1}
      - {type: conv2d, name: down, inputs: [input], out_channels: $channels, kernel_size: 1, stride: $stride, when: $project}
      - {type: add, name: add, inputs: [conv2, $shortcut]}
layers:
  - {type: conv2d, name: stem, out_channels: 8, kernel_size: 3, padding: 1}
  - {block: basic, name: stage1, repeat: 2}
  - {block: basic, name: stage2, repeat: 2, with: {channels: 16}, first: {stride: 2, project: true, shortcut: down}}
  - {type: global_avgpool, name: pool, inputs: [stage2]}
  - {type: linear, name: fc, out_features: 10}
"""


def test_blocks_expand_to_readable_names_and_wire_the_graph():
    result = analyze(parse_spec(BLOCKS))
    names = [r.name for r in result.layers]
    assert names[:6] == ["stem", "stage1_0_conv1", "stage1_0_relu1", "stage1_0_conv2", "stage1_0_add", "stage1_1_conv1"]
    assert "stage1_0_down" not in names and "stage2_0_down" in names and "stage2_1_down" not in names
    assert result.layer("stage1_0_conv1").inputs == ["stem"]
    assert result.layer("stage1_0_add").inputs == ["stage1_0_conv2", "stem"]
    assert result.layer("stage2_0_down").inputs == ["stage1_1_add"]
    assert result.layer("stage2_0_add").inputs == ["stage2_0_conv2", "stage2_0_down"]
    assert result.layer("stage2_1_add").inputs == ["stage2_1_conv2", "stage2_0_add"]
    assert result.layer("pool").inputs == ["stage2_1_add"]
    assert result.layer("stage2_1_add").output_shape == (16, 16, 16)


def test_unknown_block_argument_in_template():
    text = BLOCKS.replace("stride: $stride, padding: 1}", "stride: $strid, padding: 1}")
    with pytest.raises(Exception) as caught:
        parse_spec(text, "b.yaml")
    first = caught.value.diagnostics[0]
    assert first.message == "unknown block argument '$strid'"
    assert first.hint == "did you mean 'stride'?"
    assert (first.location.line, first.location.col) == (7, 86)


def test_json_and_yaml_are_the_same_language():

    from cnnspec.spec.source import load_file

    data = load_file(ROOT / "specs" / "simple_cnn.yaml").data
    from_json = analyze(parse_spec(json.dumps(data, indent=1), "s.json", json_syntax=True))
    from_yaml = analyze(parse_spec((ROOT / "specs" / "simple_cnn.yaml").read_text()))
    assert from_json.to_dict() == from_yaml.to_dict()


def test_json_schema_validates_shipped_specs_and_rejects_typos():
    import jsonschema

    from cnnspec.spec.source import load_file

    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in SPECS:
        assert list(validator.iter_errors(load_file(path).data)) == [], path.name
    bad = load_file(ROOT / "specs" / "simple_cnn.yaml").data
    bad["layers"][0]["kernal_size"] = 3
    assert list(validator.iter_errors(bad))


def test_schema_command_prints_the_schema():
    output = CliRunner().invoke(cli, ["schema"]).output
    assert json.loads(output)["title"] == "cnnspec model spec"


def test_catalogue_documents_every_field():
    for entry in catalog():
        for field in entry["fields"]:
            assert field["description"], f"{entry['type']}.{field['name']} has no description"
    conv = next(e for e in catalog() if e["type"] == "conv2d")
    shown = {f["name"]: f["default_text"] for f in conv["fields"]}
    assert shown == {"in_channels": "inferred", "out_channels": "required", "kernel_size": "required",
                     "stride": "1", "padding": "0", "dilation": "1", "groups": "1", "bias": "true",
                     "padding_mode": "'zeros'"}  # quoted as the type column quotes 'zeros'


def test_layers_json_gives_defaults_as_json_values():
    conv = json.loads(CliRunner().invoke(cli, ["layers", "conv2d", "-f", "json"]).output)[0]
    fields = {f["name"]: (f["required"], f["default"], f["default_text"]) for f in conv["fields"]}
    assert fields == {"in_channels": (False, None, "inferred"), "out_channels": (True, None, "required"),
                      "kernel_size": (True, None, "required"), "stride": (False, 1, "1"), "padding": (False, 0, "0"),
                      "dilation": (False, 1, "1"), "groups": (False, 1, "1"), "bias": (False, True, "true"),
                      "padding_mode": (False, "zeros", "'zeros'")}
    leaky = json.loads(CliRunner().invoke(cli, ["layers", "leaky_relu", "-f", "json"]).output)[0]
    assert [(f["name"], f["default"]) for f in leaky["fields"]] == [("negative_slope", 0.01)]


def test_readme_layer_reference_is_generated_from_the_classes():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- layers:begin -->") + len("<!-- layers:begin -->\n")
    end = readme.index("<!-- layers:end -->")
    assert readme[start:end].strip() == render_catalog_markdown().strip(), (
        "README's layer reference is stale: regenerate it with `cnnspec layers --format markdown`")


def test_analyze_never_imports_torch():
    """The analysis core stays pure Python: run the real command and look at sys.modules."""
    code = (
        "import sys\n"
        "from cnnspec.cli import main\n"
        "for args in (['analyze', 'specs/resnet50.yaml', '-f', 'json'], ['analyze', 'specs/simple_cnn.yaml'],\n"
        "             ['analyze', 'specs/simple_cnn.yaml', '--explain'], ['validate', 'specs/simple_cnn.yaml'],\n"
        "             ['schema'], ['layers']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as done:\n"
        "        assert not done.code, (args, done.code)\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'onnx', 'onnxruntime', 'numpy', 'matplotlib') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stderr


def test_readme_lists_every_command():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Command line"):readme.index("<!-- section:training -->")]
    for name in cli.commands:
        assert f"`cnnspec {name} " in section, f"README's command table lacks `cnnspec {name}`"


def test_explain_shows_the_union_at_a_residual_add():
    # ResNet-18 layer2_0: the main path sees 67 pixels, the 1x1 stride-2 shortcut 43, both centred
    # on pixel 0 of the input: spans [-33, 33] and [-21, 21], whose union is the main path's.
    output = CliRunner().invoke(cli, ["analyze", "specs/resnet18.yaml", "--explain"]).output
    block = output[output.index("layer2_0_add (add)"):]
    assert "RF_H: union of [-33, 33], [-21, 21] = [-33, 33]: size = 67, jump = 8, start = 0" in block


NESTED = """\
name: nested
input: {channels: 3, height: 8, width: 8}
blocks:
  side:
    layers:
      - {type: conv2d, name: conv, in_channels: 8, out_channels: 8, kernel_size: 1}
  body:
    layers:
      - {type: conv2d, name: main, out_channels: 8, kernel_size: 3, padding: 1}
      - {block: side, name: shortcut, inputs: [input]}
      - {type: add, name: sum, inputs: [main, shortcut]}
layers:
  - {type: conv2d, name: stem, out_channels: 8, kernel_size: 3, padding: 1}
  - {block: body, name: stage}
"""


def test_input_inside_a_block_names_the_blocks_input_also_for_a_nested_block_use():
    """Regression: ``{block: side, inputs: [input]}`` inside ``body`` used to read the model's input
    (3 channels), so the nested conv's in_channels 8 was refused; it must read stage's input, stem."""
    result = analyze(parse_spec(NESTED, "nested.yaml"))
    assert result.layer("stage_shortcut_conv").inputs == ["stem"]
    assert result.layer("stage_sum").inputs == ["stage_main", "stage_shortcut_conv"]
    assert result.layer("stage_sum").output_shape == (8, 8, 8)


def test_a_mismatch_behind_a_nested_block_input_names_the_blocks_input():
    # the shortcut's stride-2 conv halves 8 to floor((8 - 1)/2) + 1 = 4; the main path keeps 8
    text = NESTED.replace("kernel_size: 1}", "kernel_size: 1, stride: 2}")
    with pytest.raises(Exception) as caught:
        analyze(parse_spec(text, "nested.yaml"))
    assert caught.value.render() == """\
nested.yaml:11:40: error: add layer 'stage_sum': needs inputs of equal shape
   11 |       - {type: add, name: sum, inputs: [main, shortcut]}
      |                                        ^
  expected: every input with the same shape
  received: stage_main=[8, 8, 8], stage_shortcut_conv=[8, 4, 4]
  hint: give the shortcut a 1x1 conv2d with the main path's out_channels and stride (a projection), as ResNet does
  note: in block 'body' used as 'stage' at line 14"""


@pytest.mark.parametrize("layer, field", [
    # nearest x2: units 2m and 2m+1 both read input m, offsets m - u/2 = 0 and -1/2: envelope
    # [-1/2, 0] around u/2: size 1 + 1/2, start -1/4, jump 1/2
    ("{type: upsample, scale_factor: 2}", {"size": [1.5, 1.5], "jump": [0.5, 0.5], "start": [-0.25, -0.25]}),
    # bilinear x2: x = u/2 - 1/4; unit 2m reads m-1, m (offsets -1, 0), 2m+1 reads m, m+1 (-1/2, 1/2)
    ("{type: upsample, scale_factor: 2, mode: bilinear}", {"size": [2.5, 2.5], "jump": [0.5, 0.5], "start": [-0.25, -0.25]}),
    # k4 s2 p1 (DCGAN): unit u reads (u + 1 - t)/2, t = 0..3: 2m reads m-1, m; 2m+1 reads m, m+1
    ("{type: conv_transpose2d, out_channels: 2, kernel_size: 4, stride: 2, padding: 1}",
     {"size": [2.5, 2.5], "jump": [0.5, 0.5], "start": [-0.25, -0.25]}),
    # stride 1: a conv with padding d(k-1) - p = 1, every unit alike (exact): 3 / 1 / 0
    ("{type: conv_transpose2d, out_channels: 2, kernel_size: 3, padding: 1}", {"size": [3, 3], "jump": [1, 1], "start": [0, 0]}),
])
def test_resampling_fields_by_hand(layer: str, field: dict):
    result = analyze(parse_spec(f"name: r\ninput: {{channels: 1, height: 8, width: 8}}\nlayers:\n  - {layer}\n"))
    data = result.layers[0].receptive_field.to_dict()
    exact = data.pop("exact", None)
    assert data == field
    assert exact == (None if field["jump"] == [1, 1] else [False, False])


def test_a_transposed_conv_after_a_stride_divides_the_jump_back():
    # tiny_unet's up1 (k2 s2 p0) on bottom's 12 / 4 / 0.5: units 2m and 2m+1 both read input m,
    # offsets 0 and -1/2: size 12 + (1/2)*4 = 14, start 0.5 - (1/4)*4 = -0.5, jump 4/2 = 2
    result = analyze(parse_spec((ROOT / "specs" / "tiny_unet.yaml").read_text()))
    assert result.layer("bottom").receptive_field.to_dict() == {"size": [12, 12], "jump": [4, 4], "start": [0.5, 0.5]}
    assert result.layer("up1").receptive_field.to_dict() == {
        "size": [14, 14], "jump": [2, 2], "start": [-0.5, -0.5], "exact": [False, False]}


def test_explain_without_bias_has_no_bias_term(tmp_path):
    spec = tmp_path / "nobias.yaml"
    spec.write_text("name: x\ninput: {channels: 2, height: 4, width: 4}\nlayers:\n"
                    "  - {type: conv2d, name: conv, out_channels: 3, kernel_size: 3, bias: false}\n"
                    "  - {type: conv_transpose2d, name: up, out_channels: 2, kernel_size: 2, stride: 2, bias: false}\n"
                    "  - {type: flatten}\n"
                    "  - {type: linear, name: fc, out_features: 5, bias: false}\n")
    output = CliRunner().invoke(cli, ["analyze", str(spec), "--explain"]).output
    assert "params = C_out * (C_in/groups) * k_h * k_w = 3 * 2 * 3 * 3 = 54" in output
    assert "params = C_in * (C_out/groups) * k_h * k_w = 3 * 2 * 2 * 2 = 24" in output
    assert "params = in * out = 32 * 5 = 160" in output
    assert "bias" not in output


SIMPLE_CNN_AT_80 = """\
simple_cnn: input [1, 28, 28] -> output [10]
layer    type       output         params       MACs  RF                memory
───────  ─────────  ────────────  ───────  ─────────  ─────────────  ─────────
conv1    conv2d     [32, 28, 28]      320    225,792  3x3 j1 s0       98.0 KiB
relu1    relu       [32, 28, 28]        0          0  3x3 j1 s0       98.0 KiB
pool1    maxpool2d  [32, 14, 14]        0          0  4x4 j2 s0.5     24.5 KiB
conv2    conv2d     [64, 14, 14]   18,496  3,612,672  8x8 j2 s0.5     49.0 KiB
relu2    relu       [64, 14, 14]        0          0  8x8 j2 s0.5     49.0 KiB
pool2    maxpool2d  [64, 7, 7]          0          0  10x10 j4 s1.5   12.2 KiB
flatten  flatten    [3136]              0          0  -               12.2 KiB
fc1      linear     [128]         401,536    401,408  -                  512 B
relu3    relu       [128]               0          0  -                  512 B
fc2      linear     [10]            1,290      1,280  -                   40 B
───────  ─────────  ────────────  ───────  ─────────  ─────────────  ─────────
total                             421,642  4,241,152                 344.0 KiB
params: 421,642 (421.64K; trainable 421,642, non-trainable 0; 1.6 MiB as
  float32)
buffers: 0
MACs: 4,241,152 (4.24M) per image; FLOPs ~ 2 x MACs
activations: 344.0 KiB per image (float32, every layer output)
receptive field: SxS jJ sS = SxS input pixels seen, J input pixels between
  neighbouring outputs (jump), S the input coordinate of the first output's
  field centre (start); <= an upper bound; - for vectors
"""


def test_the_table_fits_an_80_column_terminal():
    """No box, no empty inputs column, RF for receptive field: the sequential SimpleCNN fits whole."""
    output = CliRunner().invoke(cli, ["analyze", "specs/simple_cnn.yaml"], env={"COLUMNS": "80"}).output
    assert output == SIMPLE_CNN_AT_80


def test_at_200_columns_the_boxed_table_stays_and_the_legend_wraps():
    output = CliRunner().invoke(cli, ["analyze", "specs/simple_cnn.yaml"], env={"COLUMNS": "200"}).output
    lines = output.splitlines()
    assert lines[1].startswith("┏━━━━━━━━━┳") and "┃ inputs ┃" in lines[2] and "┃ receptive field ┃" in lines[2]
    assert "│ pool2   │ maxpool2d │        │ [64, 7, 7]   │       0 │         0 │ 10x10 j4 s1.5   │  12.2 KiB │" in lines
    assert lines[-2:] == [
        "receptive field: SxS jJ sS = SxS input pixels seen, J input pixels between neighbouring outputs (jump), "
        "S the input coordinate of the first output's field centre (start); <= an upper bound; - for",
        "  vectors"]
    assert max(len(line) for line in lines) <= 200


def test_a_wide_graph_wraps_its_names_and_shortens_its_counts_at_80_columns():
    output = CliRunner().invoke(cli, ["analyze", "specs/resnet18.yaml"], env={"COLUMNS": "80"}).output
    lines = output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[1].split() == ["layer", "type", "inputs", "output", "params", "MACs", "RF", "memory"]
    # conv1: 64 * 3 * 7 * 7 = 9,408 params, 9,408 * 112 * 112 = 118,013,952 MACs, as short counts
    assert lines[3].split()[:7] == ["conv1", "conv2d", "[64,", "112,", "9.41K", "118.01M", "7x7"]
    assert "params: 11,689,512 (11.69M;" in output  # the exact figures stay in the totals lines


@pytest.mark.parametrize("columns", [None, "80", "200"])
def test_no_line_ends_in_spaces(columns):
    env = {"COLUMNS": columns} if columns else {}
    for args in (["analyze", "specs/resnet18.yaml"], ["analyze", "specs/simple_cnn.yaml", "-f", "markdown"],
                 ["layers"], ["layers", "conv2d"]):
        output = CliRunner().invoke(cli, args, env=env).output
        assert output and [line for line in output.splitlines() if line != line.rstrip()] == [], args
        if columns and "markdown" not in args:  # Markdown is for files, whatever the terminal
            assert max(len(line) for line in output.splitlines()) <= int(columns), args
