"""cnnspec export: ONNX graphs that compute what PyTorch computes, carry their metadata, and land in
a Triton-layout model repository atomically; bad inputs leave the repository unchanged.

Real checkpoints (the SimpleCNN one comes from `cnnspec.train.loop.train` on the built-in MNIST sample),
real onnxruntime, Triton's own config schema (tritonclient.grpc.model_config_pb2)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

import cnnspec
from cnnspec.train.checkpoint import save_checkpoint
from cli_helpers import run_cli
from cnnspec.cli import main
from cnnspec.train.data import dataset_info, load_split, normalize
from cnnspec.errors import CnnspecError
from cnnspec.export.pipeline import ExportOptions, build, export
from cnnspec.train.run import load_run
from cnnspec.deploy.model_card import METADATA_KEYS, ModelCard

REPO_ROOT = Path(__file__).resolve().parents[1]
SPECS = REPO_ROOT / "specs"

RESIDUAL_SPEC = """\
# A one-block residual network: the add merges the block's output with its input.
name: tiny_residual
input: {channels: 1, height: 28, width: 28}
labels: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
layers:
  - {type: conv2d, name: stem, out_channels: 8, kernel_size: 3, stride: 2, padding: 1}
  - {type: batchnorm2d, name: stem_bn}
  - {type: relu, name: stem_relu}
  - {type: conv2d, name: conv_a, out_channels: 8, kernel_size: 3, padding: 1}
  - {type: batchnorm2d, name: bn_a}
  - {type: relu, name: relu_a}
  - {type: conv2d, name: conv_b, out_channels: 8, kernel_size: 3, padding: 1}
  - {type: batchnorm2d, name: bn_b}
  - {type: add, name: add, inputs: [bn_b, stem_relu]}
  - {type: relu, name: out_relu}
  - {type: global_avgpool, name: pool}
  - {type: linear, name: fc, out_features: 10}
"""


# --- helpers shared with test_predict.py ---------------------------------------------------------

def train_simple_cnn(base: Path) -> Path:
    """A real run of `cnnspec train specs/simple_cnn.yaml --dataset mnist_sample --epochs 1`
    (in-process), made once per test session."""
    run = base / "simple_cnn_run"
    if not (run / "best.pt").is_file():
        from cnnspec.train.loop import train

        train(SPECS / "simple_cnn.yaml", run, dataset="mnist_sample", epochs=1, device="cpu",
              reporter_out=io.StringIO())
    return run


def quick_checkpoint(spec_text: str, run_dir: Path, steps: int = 4, dataset: str = "mnist_sample",
                     data_dir: str | None = None) -> Path:
    """A checkpoint with the contract keys after a few real Adam steps on the built-in sample
    (enough to move BatchNorm statistics off their initial values)."""
    torch.manual_seed(0)
    spec = cnnspec.parse_spec(spec_text)
    model = cnnspec.build_model(spec)
    info = dataset_info("mnist_sample")
    images, labels = load_split("mnist_sample", None, train=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(steps):
        index = torch.arange(step * 32, (step + 1) * 32) * 7 % len(images)
        loss = torch.nn.functional.cross_entropy(model(normalize(images[index], info)), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    run_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(run_dir / "best.pt", {
        "cnnspec_version": cnnspec.__version__, "spec_name": spec.name, "spec_text": spec.text,
        "spec_hash": spec.hash, "model": model.state_dict(), "optimizer": None, "scheduler": None, "epoch": 1,
        "rng": {}, "metrics": [{"epoch": 1, "eval_accuracy": 0.5}], "best_eval_accuracy": 0.5,
        "dataset": {"name": dataset, "mean": list(info.mean), "std": list(info.std), "labels": list(info.labels),
                    "input_shape": list(info.input_shape)},
        "train_config": {"data_dir": data_dir},
    })
    (run_dir / "spec.yaml").write_text(spec.text)
    return run_dir


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its bytes (None for folders): equal snapshots = unchanged tree."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="session")
def simple_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_simple_cnn(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def exported(simple_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`cnnspec export RUN --repo REPO --format json` once, for the layout/metadata/config tests."""
    repo = tmp_path_factory.mktemp("exported") / "model_repository"
    capture = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(capture):
        main(["export", str(simple_run), "--repo", str(repo), "--format", "json"])
    return {"repo": repo, "report": json.loads(capture.getvalue()), "run": simple_run}


# --- the SimpleCNN export: layout, graph, metadata, config ----------------------------------------

def test_repository_layout_and_labels(exported: dict) -> None:
    repo = exported["repo"]
    assert sorted(snapshot(repo)) == ["simple_cnn", "simple_cnn/1", "simple_cnn/1/model.onnx",
                                      "simple_cnn/config.pbtxt", "simple_cnn/labels.txt"]
    assert (repo / "simple_cnn" / "labels.txt").read_text() == "".join(f"{d}\n" for d in range(10))
    assert not list(repo.rglob("*.data")), "weights must be embedded, not in a model.onnx.data side file"
    assert exported["report"]["written"] == [str(repo / "simple_cnn" / "1" / "model.onnx")]


def test_verification_report_covers_two_batch_sizes_random_and_real(exported: dict) -> None:
    checks = exported["report"]["checks"]
    assert [(c["inputs"], c["batch"]) for c in checks] == [("random", 1), ("random", 7), ("dataset", 1), ("dataset", 63)]
    for check in checks:
        assert check["passed"] and check["max_abs_diff"] <= 1e-4
        assert check["onnx_shape"] == check["expected_shape"] == [check["batch"], 10]
    assert all(c["top1_agreement"] == 1.0 for c in checks if c["inputs"] == "dataset")


def test_graph_names_dynamic_batch_and_checks(exported: dict) -> None:
    model = onnx.load(exported["repo"] / "simple_cnn" / "1" / "model.onnx")
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    (graph_input,), (graph_output,) = inferred.graph.input, inferred.graph.output
    assert (graph_input.name, graph_output.name) == ("input", "logits")
    in_dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in graph_output.type.tensor_type.shape.dim]
    assert in_dims == ["batch", 1, 28, 28] and out_dims == ["batch", 10]
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {18}
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def test_onnxruntime_matches_torch_at_odd_batch_on_real_digits(exported: dict) -> None:
    import onnxruntime as ort

    run = load_run(exported["run"])
    info = dataset_info("mnist_sample")
    images, _ = load_split("mnist_sample", None, train=False)
    batch = normalize(images[:13], info)
    session = ort.InferenceSession(str(exported["repo"] / "simple_cnn" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    ort_logits = session.run(["logits"], {"input": batch.numpy()})[0]
    with torch.inference_mode():
        torch_logits = run.model(batch).numpy()
    assert ort_logits.shape == (13, 10)
    assert np.abs(ort_logits - torch_logits).max() <= 1e-4
    assert (ort_logits.argmax(1) == torch_logits.argmax(1)).all()


def test_onnxruntime_fuses_the_exported_graph(exported: dict, tmp_path: Path) -> None:
    """The speed of onnxruntime comes from its graph fusions: every Relu must fold into the Conv or
    Gemm before it (an exporter that wraps ops in casts or identities would silently block this)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(exported["repo"] / "simple_cnn" / "1" / "model.onnx"), options,
                         providers=["CPUExecutionProvider"])
    ops = [node.op_type for node in onnx.load(tmp_path / "optimized.onnx").graph.node]
    assert ops == ["FusedConv", "MaxPool", "FusedConv", "MaxPool", "Reshape", "FusedGemm", "Gemm"]


def test_metadata_lets_a_server_preprocess(exported: dict) -> None:
    model = onnx.load(exported["repo"] / "simple_cnn" / "1" / "model.onnx")
    meta = {p.key: p.value for p in model.metadata_props}
    assert set(METADATA_KEYS) <= set(meta)
    spec = cnnspec.load_spec(SPECS / "simple_cnn.yaml")
    assert meta["cnnspec.spec_name"] == "simple_cnn"
    assert meta["cnnspec.spec_hash"] == spec.hash and meta["cnnspec.spec"] == spec.text
    assert json.loads(meta["cnnspec.labels"]) == [str(d) for d in range(10)]
    assert json.loads(meta["cnnspec.input_shape"]) == [1, 28, 28]
    assert json.loads(meta["cnnspec.mean"]) == pytest.approx([0.1307])
    assert json.loads(meta["cnnspec.std"]) == pytest.approx([0.3081])
    assert meta["cnnspec.color_mode"] == "L" and meta["cnnspec.dataset"] == "mnist_sample"
    assert meta["cnnspec.version"] == cnnspec.__version__
    metrics = [json.loads(line) for line in (exported["run"] / "metrics.jsonl").read_text().splitlines()]
    assert float(meta["cnnspec.eval_accuracy"]) == pytest.approx(metrics[-1]["eval_accuracy"])
    assert (meta["cnnspec.input_name"], meta["cnnspec.output_name"]) == ("input", "logits")
    assert (meta["cnnspec.outputs"], meta["cnnspec.quantization"], meta["cnnspec.epoch"]) == ("logits", "none", "1")
    card = ModelCard.from_metadata(meta)  # what predict and serving read back
    assert card.to_metadata() == {key: meta[key] for key in METADATA_KEYS}
    assert (card.input_shape, card.labels, card.epoch) == ((1, 28, 28), tuple(str(d) for d in range(10)), 1)


def test_config_pbtxt_parses_with_tritons_schema(exported: dict) -> None:
    text = (exported["repo"] / "simple_cnn" / "config.pbtxt").read_text()
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert config.name == "simple_cnn" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 64
    (inp,), (out,) = config.input, config.output
    assert (inp.name, inp.data_type, list(inp.dims)) == ("input", model_config_pb2.TYPE_FP32, [1, 28, 28])
    assert (out.name, out.data_type, list(out.dims)) == ("logits", model_config_pb2.TYPE_FP32, [10])
    assert out.label_filename == "labels.txt"
    assert config.HasField("dynamic_batching")
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    (group,) = config.instance_group
    assert (group.kind, group.count) == (model_config_pb2.ModelInstanceGroup.KIND_CPU, 1)
    assert config.version_policy.HasField("all")


def test_triton_schema_rejects_a_typo_so_the_test_above_can_fail() -> None:
    from google.protobuf.text_format import ParseError

    with pytest.raises(ParseError, match="max_batch_sise"):
        text_format.Parse('name: "m"\nmax_batch_sise: 4\n', model_config_pb2.ModelConfig())


# --- more specs: residual (add), concat (inception), LeNet-5 ---------------------------------------

def trainable_on_shipped_data() -> list[str]:
    """Every spec in specs/ that the built-in MNIST sample can train: input 1x28x28, 10 outputs.
    simple_cnn is covered by the trained-run tests above."""
    names = []
    for path in sorted(SPECS.glob("*.yaml")):
        spec = cnnspec.load_spec(path)
        if spec.input.shape == (1, 28, 28) and cnnspec.analyze(spec).output_shape == (10,) and spec.name != "simple_cnn":
            names.append(path.stem)
    return names


MERGE_OPS = {"tiny_residual": "Add", "inception_block": "Concat"}


@pytest.mark.parametrize("spec_name", ["tiny_residual", *trainable_on_shipped_data()])
def test_specs_export_and_verify(spec_name: str, tmp_path: Path) -> None:
    text = RESIDUAL_SPEC if spec_name == "tiny_residual" else (SPECS / f"{spec_name}.yaml").read_text()
    merge_op = MERGE_OPS.get(spec_name)
    run_dir = quick_checkpoint(text, tmp_path / "run")
    result = build(ExportOptions(run_dir, repo=tmp_path / "repo", samples=21))
    assert result.passed, result.problems
    assert {(c.inputs, c.batch) for c in result.checks} == {("random", 1), ("random", 7), ("dataset", 1), ("dataset", 21)}
    assert all(c.max_abs_diff <= 1e-4 and c.onnx_shape == [c.batch, 10] for c in result.checks)
    ops = {node.op_type for node in onnx.load_from_string(result.model_bytes).graph.node}
    if merge_op:
        assert merge_op in ops
    assert not (tmp_path / "repo").exists(), "build() verifies in memory and writes nothing"


# --- versions, flags, atomic writes -----------------------------------------------------------------

def test_new_version_leaves_the_old_one_untouched(simple_run: Path, exported: dict, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    import shutil

    shutil.copytree(exported["repo"], repo)
    before = snapshot(repo)
    code, out, err = run_cli(["export", simple_run, "--repo", repo, "--max-batch-size", 16,
                              "--max-queue-delay-us", 500, "--instance-kind", "gpu"], capsys)
    assert code == 0, err
    assert f"wrote {repo / 'simple_cnn' / '2' / 'model.onnx'}" in out
    after = snapshot(repo)
    assert after["simple_cnn/1/model.onnx"] == before["simple_cnn/1/model.onnx"]
    assert sorted(set(after) - set(before)) == ["simple_cnn/2", "simple_cnn/2/model.onnx"]
    config = text_format.Parse((repo / "simple_cnn" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.max_batch_size == 16 and config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    # an existing version is never overwritten
    before = snapshot(repo)
    code, _, err = run_cli(["export", simple_run, "--repo", repo, "--version", 1], capsys)
    assert code == 1 and "already exists" in err and "version 3" in err
    assert snapshot(repo) == before


def test_failed_verification_writes_nothing(simple_run: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    repo, output = tmp_path / "repo", tmp_path / "model.onnx"
    code, out, err = run_cli(["export", simple_run, "--repo", repo, "-o", output, "--tolerance", 0], capsys)
    assert code == 1
    assert "verification failed; nothing was written" in err and "max |ort - torch|" in err
    assert "FAIL" in out  # the report is still printed
    assert not repo.exists() and not output.exists()


def test_interrupted_write_leaves_no_half_model(simple_run: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure at the final rename (disk full, kill) leaves neither the model folder nor temp files."""
    import cnnspec.deploy.repository as repository

    repo = tmp_path / "repo"
    repo.mkdir()

    def broken_rename(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(repository.os, "rename", broken_rename)
    with pytest.raises(CnnspecError, match="No space left on device"):
        export(ExportOptions(simple_run, repo=repo, samples=5))
    assert snapshot(repo) == {}


def test_output_file_only(simple_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "out" / "simple.onnx"
    code, out, err = run_cli(["export", simple_run, "-o", output, "--samples", 9], capsys)
    assert code == 0, err
    model = onnx.load(output)
    assert {p.key for p in model.metadata_props} >= set(METADATA_KEYS)
    assert os.listdir(output.parent) == ["simple.onnx"]


# --- quantization -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, int8_op", [("dynamic-int8", "MatMulInteger"), ("static-int8", "QuantizeLinear")])
def test_quantized_models_work_and_report(mode: str, int8_op: str, simple_run: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    import onnxruntime as ort

    repo = tmp_path / "repo"
    if mode == "dynamic-int8":  # an fp32 model already served under the spec's name
        assert run_cli(["export", simple_run, "--repo", repo, "--samples", 9], capsys)[0] == 0
    code, out, err = run_cli(["export", simple_run, "--repo", repo, "--quantize", mode, "--format", "json",
                              "--samples", 9], capsys)
    assert code == 0, err
    report = json.loads(out)
    fp32, int8 = report["quantization"]
    assert (fp32["label"], int8["label"]) == ("fp32", mode)
    assert int8["size_bytes"] < 0.5 * fp32["size_bytes"]
    assert set(int8["latency_ms"]) == {"1", "32"} and all(v > 0 for v in int8["latency_ms"].values())
    assert abs(int8["accuracy"] - fp32["accuracy"]) <= 0.01 and int8["agreement_with_fp32"] >= 0.97
    assert fp32["images"] == int8["images"] == 1000  # the sample's test split: 100 of each digit
    assert int8["accuracy"] == int8["correct"] / 1000 and 0 <= int8["disagreements"] <= 30
    slower = [b for b in ("1", "32") if int8["latency_ms"][b] > fp32["latency_ms"][b]]
    assert bool(slower) == any("slower than fp32 on this machine" in w for w in report["warnings"])
    assert bool(slower) == ("warning: the " + mode + " model is slower than fp32" in err)
    # the int8 model is a model of its own: the fp32 one stays what serve and predict pick by default
    assert sorted(p.name for p in repo.iterdir()) == (
        ["simple_cnn", "simple_cnn_int8"] if mode == "dynamic-int8" else ["simple_cnn_int8"])
    assert not (repo / "simple_cnn" / "2").exists()
    assert report["written"][0] == str(repo / "simple_cnn_int8" / "1" / "model.onnx")
    assert 'name: "simple_cnn_int8"' in (repo / "simple_cnn_int8" / "config.pbtxt").read_text()
    path = repo / "simple_cnn_int8" / "1" / "model.onnx"
    model = onnx.load(path)
    assert int8_op in {n.op_type for n in model.graph.node}
    meta = {p.key: p.value for p in model.metadata_props}
    assert set(METADATA_KEYS) <= set(meta) and meta["cnnspec.quantization"] == mode
    assert ModelCard.from_metadata(meta).quantization == mode  # a card predict and serving accept
    assert len(path.read_bytes()) == int8["size_bytes"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    info = dataset_info("mnist_sample")
    images, labels = load_split("mnist_sample", None, train=False)
    logits = session.run(["logits"], {"input": normalize(images, info).numpy()})[0]
    assert logits.shape == (1000, 10)
    # dynamic quantization scales activations per call, so batch composition may move a few answers
    assert (logits.argmax(1) == labels.numpy()).mean() == pytest.approx(int8["accuracy"], abs=0.01)
    assert abs(int((logits.argmax(1) == labels.numpy()).sum()) - int8["correct"]) <= 10


def test_quantization_report_gives_exact_counts() -> None:
    """5 disagreements in 10,000 are reported as such, never rounded to "agrees 100.0%"."""
    from cnnspec.export.quantize import ModelFigures, slower_than_fp32
    from cnnspec.export.report import _quantization_table

    fp32 = ModelFigures("fp32", 1_700_000, {1: 0.054, 32: 1.13}, 0.9871, None, 10_000, 9_871, None)
    int8 = ModelFigures("static-int8", 440_000, {1: 0.081, 32: 0.9}, 0.9868, 0.9995, 10_000, 9_868, 5)
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(_quantization_table([fp32, int8]))
    row = next(line for line in console.export_text().splitlines() if "static-int8" in line)
    assert "-3 images (-0.03 pt)" in row and "9,995 of 10,000 (5 differ)" in row and "98.68%" in row
    assert slower_than_fp32(fp32, int8) == (
        "the static-int8 model is slower than fp32 on this machine (0.081 ms vs 0.054 ms at batch 1); "
        "it saves size, not time here: serve the fp32 model unless size matters")
    faster = ModelFigures("dynamic-int8", 490_000, {1: 0.05, 32: 1.0}, 0.9871, 1.0, 10_000, 9_871, 0)
    assert slower_than_fp32(fp32, faster) is None


# --- bad inputs: clear errors, repository unchanged --------------------------------------------------

@pytest.fixture
def populated_repo(exported: dict, tmp_path: Path) -> Path:
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(exported["repo"], repo)
    return repo


def _refused(args: list, repo: Path, capsys: pytest.CaptureFixture[str], message: str) -> None:
    before = snapshot(repo)
    code, out, err = run_cli(["export", *args, "--repo", repo], capsys)
    assert code == 1, out
    assert message in err, err
    assert "Traceback" not in err + out
    assert snapshot(repo) == before


def test_missing_run_dir(populated_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _refused([tmp_path / "no_such_run"], populated_repo, capsys, "no run directory or checkpoint at")


def test_run_dir_without_checkpoint(populated_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty_run").mkdir()
    _refused([tmp_path / "empty_run"], populated_repo, capsys, "holds no checkpoint (neither best.pt nor last.pt)")


def test_corrupt_checkpoint(populated_repo: Path, simple_run: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes((simple_run / "best.pt").read_bytes()[:5000])
    _refused([broken], populated_repo, capsys, "is not a readable checkpoint")


def test_checkpoint_from_another_spec(populated_repo: Path, simple_run: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    _refused([simple_run, "--spec", SPECS / "lenet5.yaml"], populated_repo, capsys, "was trained from a different spec")
    import shutil

    edited = tmp_path / "edited_run"
    shutil.copytree(simple_run, edited)
    (edited / "spec.yaml").write_text((edited / "spec.yaml").read_text().replace("out_features: 128", "out_features: 64"))
    _refused([edited], populated_repo, capsys, "was trained from a different spec")


def test_unwritable_repository(simple_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    _refused([simple_run], blocker, capsys, "exists but is not a folder")
    _refused([simple_run], blocker / "repo", capsys, "is not a folder")


@pytest.mark.parametrize("name", ["a" * 129, "digits\n", ".hidden", "../up", "a b"])
def test_export_refuses_a_name_the_service_would_not_serve(name: str, simple_run: Path, populated_repo: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Export and serving check names with one pattern (cnnspec.deploy.repository), so nothing is
    written under a name the service would skip or refuse."""
    from cnnspec.deploy.repository import check_name
    from serving.errors import BadRequest
    from serving.repository import check_model_name

    _refused([simple_run, "--name", name], populated_repo, capsys, f"invalid model name {name!r}")
    with pytest.raises(BadRequest):
        check_model_name(name)
    assert check_name("a" * 128) == "a" * 128 and check_model_name("a" * 128) == "a" * 128


def test_version_folders_are_positive_integers_without_leading_zeros(tmp_path: Path) -> None:
    from cnnspec.deploy.repository import versions

    for folder in ("1", "2", "10", "007", "0", "-3", "x"):
        (tmp_path / folder).mkdir()
    assert versions(tmp_path) == [1, 2, 10]  # as serving lists them: "007" would shadow "7"


def test_new_version_with_another_interface_is_refused(populated_repo: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    other = quick_checkpoint(RESIDUAL_SPEC, tmp_path / "run", steps=1)
    (populated_repo / "simple_cnn" / "labels.txt").write_text("".join(f"digit {d}\n" for d in range(10)))
    _refused([other, "--name", "simple_cnn"], populated_repo, capsys, "export under another --name")


def test_new_version_reads_the_existing_config_with_the_codec(populated_repo: Path, simple_run: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The interface check parses config.pbtxt (deploy's codec), however it is laid out."""
    config = populated_repo / "simple_cnn" / "config.pbtxt"
    original = config.read_text()
    config.write_text("# hand-edited\n" + original.replace("dims: [ 1, 28, 28 ]", "dims: [3,\n 28, 28]"))
    _refused([simple_run], populated_repo, capsys, "already has versions with input [3, 28, 28]")
    config.write_text(original.replace("max_batch_size", "max_batch_sise"))
    _refused([simple_run], populated_repo, capsys,
             f"cannot add a version next to {config}: {config}:4:1: error: message type \"inference.ModelConfig\" "
             "has no field named \"max_batch_sise\"; did you mean 'max_batch_size'?")


def test_dataset_unavailable_fails_unless_no_data_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = quick_checkpoint(RESIDUAL_SPEC, tmp_path / "run", steps=1, dataset="mnist",
                           data_dir=str(tmp_path / "no_mnist_here"))
    repo = tmp_path / "repo"
    _refused([run], repo, capsys, "cannot load dataset 'mnist' to verify the export")
    assert not repo.exists()
    code, out, err = run_cli(["export", run, "--repo", repo, "--no-data-check"], capsys)
    assert code == 0, err
    assert "verified on random inputs only" in out
    assert (repo / "tiny_residual" / "1" / "model.onnx").is_file()
