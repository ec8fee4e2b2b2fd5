"""The ``cnnspec`` command line. Commands are thin: they parse flags, call library code, and print.

Heavy libraries (torch, onnxruntime, matplotlib) are imported inside the commands that need them,
so ``cnnspec analyze`` starts fast and never imports torch. Library code raises CnnspecError
subclasses; ``main`` prints them (never a traceback) and exits 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import get_args

import click

from . import __version__
from .errors import CnnspecError, SpecError, SpecWarning
from .export import QuantizeMode
from .train.options import DEFAULTS, DatasetName, DeviceName, MonitorName, OptimizerName, PrecisionName, SchedulerName

FORMATS = ("table", "json", "markdown", "mermaid")


class _Group(click.Group):
    """Lists commands in the order they are defined (the order of the workflow)."""

    ORDER = ("analyze", "validate", "schema", "layers", "import", "summary", "train", "augmentations", "evaluate",
             "plot", "visualize",
             "export", "predict", "serve")

    def list_commands(self, ctx: click.Context) -> list[str]:
        known = [name for name in self.ORDER if name in self.commands]
        return known + [name for name in self.commands if name not in known]


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cnnspec")
def cli() -> None:
    """Describe a CNN in YAML or JSON; analyse, compile, train, export and serve it."""


def _echo_error(error: Exception) -> None:
    """A SpecError renders itself (``path:line:col: error: ...``); others get an ``error:`` prefix."""
    if isinstance(error, SpecError):
        click.echo(error.render(), err=True)
    else:
        text = str(error)
        located = text.startswith("error:") or ": error: " in text.split("\n", 1)[0]
        click.echo(text if located else f"error: {text}", err=True)


def missing_extra_message(error: ModuleNotFoundError, argv: list[str]) -> str:
    """One line naming the optional extra that provides the missing module (read from the installed
    package's metadata, so pyproject.toml stays the one list), or the plain error if none does."""
    from importlib import metadata

    module = (error.name or "").split(".")[0]
    wanted = {"PIL": "pillow", "yaml": "pyyaml"}.get(module, module).lower().replace("_", "-")
    extras: list[str] = []
    try:
        requirements = metadata.requires("cnnspec") or []
    except metadata.PackageNotFoundError:
        requirements = []
    for line in requirements:
        name, _, marker = line.partition(";")
        dist = name.strip().split("[")[0]
        for stop in "<>=!~ ":
            dist = dist.split(stop)[0]
        if dist.lower().replace("_", "-") == wanted and "extra ==" in marker:
            extra = marker.split("extra ==")[1].strip().strip("'\"")
            if extra not in extras:
                extras.append(extra)
    command = next((arg for arg in argv if not arg.startswith("-")), "")
    what = f"`cnnspec {command}`" if command else "this command"
    if not extras:
        return f"error: {what} needs the Python module '{module}', which is not installed"
    install = " or ".join(f"pip install 'cnnspec[{extra}]'" for extra in extras)
    return f"error: {what} needs {wanted}, which is not installed: {install}"


def _show_spec_warnings() -> None:
    """Print each SpecWarning (once per text) to stderr as ``path:line:col: warning: ...``, the
    way errors are printed; other warnings keep Python's usual display."""
    import warnings

    original = warnings.showwarning
    shown: set[str] = set()  # a command may analyse the same spec more than once

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if not issubclass(category, SpecWarning):
            original(message, category, filename, lineno, file, line)
        elif str(message) not in shown:
            shown.add(str(message))
            click.echo(str(message), err=True)

    warnings.simplefilter("always", SpecWarning)
    warnings.showwarning = show


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every cnnspec error into a message and exit code 1."""
    import warnings

    try:
        if argv is None and sys.argv[1:2] == ["train"]:  # a real process, not a test calling main([...])
            from .train.allocator import reexec_for_allocator

            reexec_for_allocator()
        with warnings.catch_warnings():
            _show_spec_warnings()
            code = cli.main(args=argv, prog_name="cnnspec", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except CnnspecError as error:
        _echo_error(error)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except ModuleNotFoundError as error:
        click.echo(missing_extra_message(error, argv if argv is not None else sys.argv[1:]), err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)


# --- analysis ----------------------------------------------------------------------------------

@cli.command()
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--format", "-f", "format_", type=click.Choice(FORMATS), default="table", show_default=True,
              help="Output format.")
@click.option("--explain", is_flag=True, help="Show the arithmetic behind every number.")
def analyze(spec: Path, format_: str, explain: bool) -> None:
    """Shapes, parameters, MACs and receptive fields of every layer, without running anything."""
    from .analysis import analyze_file
    from .report import render

    result = analyze_file(spec)
    click.echo(render(result, format_, explain=explain, width=terminal_width()), nl=False)


def terminal_width() -> int | None:
    """The width tables fit: $COLUMNS when set, else the terminal's; None for a pipe or a file,
    so that piped output keeps whole lines for grep and scripts."""
    import os
    import shutil

    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


@cli.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="Print errors and warnings only.")
@click.option("--strict", is_flag=True, help="Fail on warnings too (a layer whose output nothing reads).")
def validate(specs: tuple[Path, ...], quiet: bool, strict: bool) -> None:
    """Check spec files; exit 0 only if every one is valid (and, with --strict, has no warning).
    Every file is checked, whatever happens in another one."""
    from .analysis import analyze_file

    failed = 0
    for path in specs:
        try:
            result = analyze_file(path)  # warnings go to stderr as they are found
        except CnnspecError as error:
            failed += 1
            _echo_error(error)
            continue
        except Exception as error:  # a bug in cnnspec must not stop the other files being checked
            failed += 1
            click.echo(f"{path}: error: internal error while checking this file: {type(error).__name__}: "
                       f"{error} (please report it)", err=True)
            continue
        if strict and result.warnings:
            failed += 1
            count = len(result.warnings)
            click.echo(f"{path}: {count} warning{'s' if count > 1 else ''}, refused by --strict", err=True)
            continue
        if not quiet:
            totals = result.totals()
            click.echo(f"ok  {path}  ({_count(len(result.layers), 'layer')}, {_count(totals['params'], 'param')}, "
                       f"{_count(totals['macs'], 'MAC')})")
    if len(specs) > 1 and not (quiet and not failed):  # one file's own line already says it all
        click.echo(f"{len(specs) - failed} of {len(specs)} valid")
    if failed:
        raise click.exceptions.Exit(1)


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


@cli.command()
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to a file instead of stdout.")
def schema(output: Path | None) -> None:
    """Print the JSON Schema of spec files (for editor completion and validation)."""
    import json

    from .catalog import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if output:
        from .deploy.files import atomic_write_bytes

        atomic_write_bytes(output, text.encode())
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


@cli.command()
@click.argument("layer_type", required=False)
@click.option("--format", "-f", "format_", type=click.Choice(["table", "markdown", "json"]), default="table",
              show_default=True)
def layers(layer_type: str | None, format_: str) -> None:
    """The layer catalogue: every type with its fields and defaults."""
    import json

    from .catalog import catalog, render_catalog_markdown
    from .errors import UsageError, did_you_mean

    entries = catalog()
    if layer_type:
        entries = [e for e in entries if e["type"] == layer_type]
        if not entries:
            hint = did_you_mean(layer_type, [e["type"] for e in catalog()], n=3)
            raise UsageError(f"unknown layer type '{layer_type}'", [hint] if hint else [])
    if format_ == "json":
        click.echo(json.dumps(entries, indent=2))
    elif format_ == "markdown":
        click.echo(render_catalog_markdown())
    else:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        import io

        buffer = io.StringIO()  # printed through a buffer so that no line ends in rich's padding
        console = Console(file=buffer, width=terminal_width() or 120, color_system=None, highlight=False)
        for number, entry in enumerate(entries):
            if number:
                console.print()
            console.print(Text(f"{entry['type']}: {entry['summary']}"))  # wrapped at the terminal, not the table
            console.print(Text(f"input {entry['input']}, inputs: {entry['inputs']}"
                               + ("" if entry["fields"] else "; no fields of its own")))
            if entry["fields"]:
                table = Table()
                for column in ("field", "type", "default", "meaning"):
                    table.add_column(column, overflow="fold")
                for field in entry["fields"]:
                    table.add_row(*(Text(field[key]) for key in ("name", "type", "default_text", "description")))
                console.print(table)
        click.echo("\n".join(line.rstrip() for line in buffer.getvalue().splitlines()))


# --- commands added by later stages go below (keep each command thin) --------------------------

# --- pictures (cnnspec/plots/; matplotlib and torch are imported there, inside functions) -----

@cli.command("plot")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="PNG file to write.  [default: RUN_DIR/curves.png]")
def plot_command(run_dir: Path, output: Path | None) -> None:
    """Training curves of a run: loss and accuracy per epoch, train and eval (PNG)."""
    from .plots.curves import plot_curves

    click.echo(str(plot_curves(run_dir, output)))


@cli.group("visualize", cls=_Group)
def visualize_group() -> None:
    """Pictures of a trained model: its filters, and the feature maps of an image (PNG)."""


@visualize_group.command("filters")
@click.argument("checkpoint", metavar="CHECKPOINT_OR_RUN_DIR", type=click.Path(path_type=Path))
@click.option("--layer", "-l", default=None,
              help="A conv2d layer's name, e.g. conv2.  [default: the spec's first conv2d layer]")
@click.option("--input-channel", default="mean", show_default=True,
              help="Which input channel of each kernel to draw: a number, or 'mean' over all of them.")
@click.option("--max-filters", type=click.IntRange(min=1), default=256, show_default=True,
              help="Draw at most this many filters (the first ones).")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="PNG file to write.  [default: filters_LAYER.png next to the checkpoint]")
def visualize_filters(checkpoint: Path, layer: str | None, input_channel: str, max_filters: int, output: Path | None) -> None:
    """Draw a conv layer's kernels as a grid, one small image per filter (a run directory means its
    best.pt, else last.pt)."""
    from .errors import UsageError
    from .plots.filters import plot_filters

    if input_channel != "mean" and not input_channel.isdigit():
        raise UsageError(f"--input-channel must be a number or 'mean', got '{input_channel}'")
    channel = None if input_channel == "mean" else int(input_channel)
    click.echo(str(plot_filters(checkpoint, layer, output, input_channel=channel, max_filters=max_filters)))


@visualize_group.command("feature-maps")
@click.argument("checkpoint", metavar="CHECKPOINT_OR_RUN_DIR", type=click.Path(path_type=Path))
@click.option("--image", "-i", required=True, type=click.Path(path_type=Path),
              help="PNG or JPEG; converted to the model's channels and resized to its input size.")
@click.option("--max-channels", type=click.IntRange(min=1), default=8, show_default=True,
              help="Channels drawn per conv layer (the strongest responses).")
@click.option("--invert", is_flag=True, help="Invert the image first (dark digits on light paper).")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="PNG file to write.  [default: feature_maps_IMAGE.png next to the checkpoint]")
def visualize_feature_maps(checkpoint: Path, image: Path, max_channels: int, invert: bool, output: Path | None) -> None:
    """Draw what every conv layer computes for one image, with the model's prediction."""
    from .plots.feature_maps import plot_feature_maps

    click.echo(str(plot_feature_maps(checkpoint, image, output, max_channels=max_channels, invert=invert)))


@cli.command()
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--format", "-f", "format_", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
def summary(spec: Path, format_: str) -> None:
    """The analysis next to the compiled module's real numbers (shapes from a forward pass, counted
    parameters and buffers, MACs from torch's FLOP counter); exit 1 if any layer disagrees."""
    from .analysis import analyze_file
    from .resources import check_fits
    from .summary import render, summarize

    analysis = analyze_file(spec)
    check_fits(analysis, "summary")  # before torch allocates the module and its activations
    result = summarize(analysis)
    click.echo(render(result, format_), nl=False)
    if not result.match:
        raise click.exceptions.Exit(1)


# --- import (cnnspec/importer/; torch, torch.fx and onnx are imported there) -------------------

@cli.command("import")
@click.argument("source")
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True, help="The spec file to write.")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="Also write the weights for the spec: a state_dict of build_model(SPEC) (torch.save).")
@click.option("--state-dict", "state_dict", type=click.Path(path_type=Path), default=None,
              help="Load the source model's weights from this local state_dict file first.")
@click.option("--input", "input_", default=None, metavar="CxHxW",
              help="Input size, e.g. 3x224x224 (default: from the source when it says).")
def import_command(source: str, output: Path, weights: Path | None, state_dict: Path | None, input_: str | None) -> None:
    """Turn an existing model into a spec (and its weights): torchvision:NAME, timm:NAME,
    package.module:callable (returning an nn.Module) or a path to an .onnx file.

    The spec is checked before it is written: it parses, and the compiled module with the imported
    weights gives the source's output. Nothing is ever downloaded."""
    from .deploy.files import atomic_write_bytes
    from .importer import import_source, save_weights
    from .importer.sources import parse_input

    result = import_source(source, input_shape=parse_input(input_) if input_ else None, state_dict=state_dict)
    atomic_write_bytes(output, result.text.encode())
    if weights is not None:
        save_weights(result.state_dict, weights)
    lines = len(result.text.splitlines())
    click.echo(f"{source} -> {output}: {result.layers} layers in {lines} lines ({result.blocks} blocks); "
               f"{result.params:,} parameters, {result.macs:,} MACs")
    if result.max_abs_diff is not None:
        click.echo(f"checked: the compiled spec with the imported weights gives the source's output "
                   f"(max abs diff {result.max_abs_diff:.3g} on random input)")
    if weights is not None:
        click.echo(f"weights: {weights} (model.load_state_dict(torch.load(PATH, weights_only=True)))")
    for note in result.notes:
        click.echo(f"note: {note}", err=True)


# --- training (cnnspec/train/; torch is imported there) ----------------------

@cli.command("train")
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--dataset", "-d", type=click.Choice(get_args(DatasetName)), default=None,
              help="mnist_sample is built in (offline).  [default: the spec's train.dataset]")
@click.option("--data-dir", default=None, help=f"Folder holding the dataset's files.  [default: {DEFAULTS.data_dir}]")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Run directory: spec.yaml, metrics.jsonl, last.pt, best.pt.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help=f"Passes over the training set.  [default: {DEFAULTS.epochs}]")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help=f"Images per step (per process).  [default: {DEFAULTS.batch_size}]")
@click.option("--optimizer", type=click.Choice(get_args(OptimizerName)), default=None, help=f"[default: {DEFAULTS.optimizer}]")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help=f"Learning rate.  [default: {DEFAULTS.lr:g}]")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=None, help=f"[default: {DEFAULTS.weight_decay:g}]")
@click.option("--momentum", type=click.FloatRange(min=0), default=None, help=f"SGD momentum.  [default: {DEFAULTS.momentum:g}]")
@click.option("--scheduler", type=click.Choice(get_args(SchedulerName)), default=None,
              help=f"Learning-rate schedule, stepped every batch.  [default: {DEFAULTS.scheduler}]")
@click.option("--seed", type=int, default=None, help=f"Seed of weights, data order and dropout.  [default: {DEFAULTS.seed}]")
@click.option("--device", type=click.Choice(get_args(DeviceName)), default=None,
              help=f"auto: cuda, then mps, then cpu.  [default: {DEFAULTS.device}]")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help=f"Processes decoding imagefolder images at load time.  [default: {DEFAULTS.workers}]")
@click.option("--precision", type=click.Choice(get_args(PrecisionName)), default=None,
              help=f"auto: bf16/fp16 mixed on CUDA, bf16 mixed on CPUs with native bf16, else fp32.  [default: {DEFAULTS.precision}]")
@click.option("--augment", "-a", multiple=True, metavar="TRANSFORM",
              help="A training-batch transform, repeatable, in order: '{type: random_crop, size: 28, padding: 2}' "
                   "or a bare name; 'none' for no augmentation (see cnnspec augmentations).  [default: the spec's train.augment]")
@click.option("--val-split", type=click.FloatRange(min=0, max=1, max_open=True), default=None,
              help="Fraction of the training set held out for validation (stratified, by --seed).  [default: 0]")
@click.option("--early-stopping", type=click.IntRange(min=1), default=None, metavar="PATIENCE",
              help="Stop after PATIENCE epochs without a better --monitor figure (needs --val-split).")
@click.option("--monitor", type=click.Choice(get_args(MonitorName)), default=None,
              help="Validation figure that picks best.pt and drives early stopping.  [default: val_loss]")
@click.option("--label-smoothing", type=click.FloatRange(min=0, max=1, max_open=True), default=None,
              help="Label smoothing of the training loss.  [default: 0]")
@click.option("--grad-clip", type=click.FloatRange(min=0, min_open=True), default=None, metavar="MAX_NORM",
              help="Clip the total L2 norm of the gradients to MAX_NORM.  [default: off]")
@click.option("--warmup-epochs", type=click.FloatRange(min=0), default=None,
              help="Linear learning-rate warm-up over this many epochs before --scheduler.  [default: 0]")
@click.option("--init-from", type=click.Path(path_type=Path), default=None, metavar="CHECKPOINT",
              help="Start from the tensors of a checkpoint, run directory or state_dict file that match by name "
                   "and shape (the rest keep their initial values).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt.")
@click.option("--download", is_flag=True, help="Download a torchvision dataset into --data-dir if missing.")
def train_command(spec: Path, out: Path, resume: bool, download: bool, augment: tuple[str, ...],
                  init_from: Path | None, **flags: object) -> None:
    """Train a spec's model; flags override the spec's train: section. Multi-process with
    `torchrun --nproc_per_node=N -m cnnspec train ...` (DDP)."""
    from .train.augment import parse_augment_flag
    from .train.loop import train

    transforms = parse_augment_flag(list(augment)) if augment else None
    train(spec, out, resume=resume, download=download, augment=transforms,
          init_from=str(init_from) if init_from is not None else None, **flags)


@cli.command("augmentations")
@click.argument("augmentation_type", required=False)
@click.option("--format", "-f", "format_", type=click.Choice(["table", "markdown", "json"]), default="table",
              show_default=True)
def augmentations_command(augmentation_type: str | None, format_: str) -> None:
    """The augmentation catalogue (train.augment, --augment): every transform with its fields."""
    import json

    from .errors import UsageError, did_you_mean
    from .train.augment import augment_catalog, render_augment_markdown

    entries = augment_catalog()
    if augmentation_type:
        entries = [e for e in entries if e["type"] == augmentation_type]
        if not entries:
            hint = did_you_mean(augmentation_type, [e["type"] for e in augment_catalog()])
            raise UsageError(f"unknown augmentation type '{augmentation_type}'", [hint] if hint else [])
    if format_ == "json":
        click.echo(json.dumps(entries, indent=2))
    elif format_ == "markdown":
        click.echo(render_augment_markdown())
    else:
        from rich.table import Table
        from rich.text import Text

        console = _wide_console()
        for entry in entries:
            table = Table(title=Text(f"{entry['type']}: {entry['summary']}"), title_justify="left",
                          caption=entry["torchvision"], caption_justify="left")
            for column in ("field", "type", "default", "meaning"):
                table.add_column(column, overflow="fold")
            for field in entry["fields"]:
                table.add_row(*(Text(field[key]) for key in ("name", "type", "default", "description")))
            console.print(table)


@cli.command("evaluate")
@click.argument("source", metavar="RUN_DIR_OR_CHECKPOINT", type=click.Path(path_type=Path))
@click.option("--dataset", "-d", default=None, help="Dataset whose test split to use.  [default: the one trained on]")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Folder holding the dataset's files.  [default: the run's training data_dir]")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              help="Folder for report.json, predictions.csv and the PNGs.  [default: RUN_DIR/evaluation]")
@click.option("--misclassified", type=click.IntRange(min=0), default=32, show_default=True,
              help="Most confidently misclassified images drawn in misclassified.png.")
@click.option("--download", is_flag=True, help="Download a torchvision dataset into --data-dir if missing.")
@click.option("--format", "-f", "format_", type=click.Choice(["table", "json"]), default="table", show_default=True)
def evaluate_command(source: Path, dataset: str | None, data_dir: Path | None, out: Path | None, misclassified: int,
                     download: bool, format_: str) -> None:
    """Test-split accuracy of a trained run, per-class precision/recall/F1, a confusion-matrix PNG and
    a PNG of the most confidently misclassified images (RUN_DIR means its best.pt, else last.pt)."""
    import json

    from .train.evaluate import evaluate_run, render_report, summary_line

    result = evaluate_run(source, dataset=dataset, data_dir=data_dir, out=out, misclassified=misclassified,
                          download=download)
    if format_ == "json":
        click.echo(json.dumps(result.report, indent=2))
        return
    click.echo(summary_line(result.report))
    _wide_console().print(render_report(result.report))
    for path in result.written:
        click.echo(f"wrote {path}")


# --- export and predict (cnnspec/export/, deploy/; torch/onnx imported there) --

def _wide_console(stderr: bool = False) -> object:
    """A rich console that does not squeeze report tables to 80 columns when output is a pipe, and
    then does not end lines in the spaces rich pads titles with."""
    from rich.console import Console

    console = Console(stderr=stderr)
    if console.is_terminal:
        return console
    return Console(file=_StrippedLines(sys.stderr if stderr else sys.stdout), width=140, color_system=None)


class _StrippedLines:
    """A text stream that writes whole lines to ``target`` without their trailing spaces."""

    def __init__(self, target: object):
        self.target = target
        self.pending = ""

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            self.target.write(line.rstrip() + "\n")
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return False


@cli.command("export")
@click.argument("source", metavar="RUN_DIR_OR_CHECKPOINT", type=click.Path(path_type=Path))
@click.option("--repo", type=click.Path(path_type=Path), default=None,
              help="Model repository to add the model to: REPO/NAME/VERSION/model.onnx, config.pbtxt, labels.txt.")
@click.option("--name", default=None,
              help="Model name in the repository.  [default: the spec's name; NAME_int8 with --quantize]")
@click.option("--version", "version_", type=click.IntRange(min=1), default=None,
              help="Version folder to write (never overwritten).  [default: highest existing + 1, or 1]")
@click.option("--opset", type=click.IntRange(min=1), default=18, show_default=True,
              help="ONNX opset: 18 (the exporter's own) up to the newest onnx knows.")
@click.option("--quantize", type=click.Choice(get_args(QuantizeMode)), default="none",
              show_default=True, help="Write an int8 model instead of the float32 one (onnxruntime.quantization).")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Also (or only) write the verified model to this .onnx file.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Dataset folder for verification/calibration.  [default: the run's training data_dir]")
@click.option("--spec", "spec_file", type=click.Path(path_type=Path), default=None,
              help="Refuse unless the checkpoint was trained from exactly this spec file.")
@click.option("--no-data-check", is_flag=True,
              help="Verify on random inputs only when the dataset cannot be loaded (not with --quantize).")
@click.option("--samples", type=click.IntRange(min=1), default=63, show_default=True,
              help="Test-split images compared between onnxruntime and PyTorch.")
@click.option("--tolerance", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Largest allowed |onnxruntime - PyTorch| of any logit (float32).")
@click.option("--max-accuracy-drop", type=click.FloatRange(min=0, max=1), default=0.01, show_default=True,
              help="Largest allowed test-accuracy loss of a quantized model (fraction: 0.01 = 1 point).")
@click.option("--max-batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="config.pbtxt max_batch_size.")
@click.option("--max-queue-delay-us", type=click.IntRange(min=0), default=2000, show_default=True,
              help="config.pbtxt dynamic_batching max_queue_delay_microseconds.")
@click.option("--instance-kind", type=click.Choice(["cpu", "gpu", "auto"]), default="cpu", show_default=True,
              help="config.pbtxt instance_group kind (KIND_CPU, KIND_GPU, KIND_AUTO) for Triton.")
@click.option("--format", "-f", "format_", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Report format.")
def export_command(source: Path, repo: Path | None, name: str | None, version_: int | None, opset: int,
                   quantize: str, output: Path | None, data_dir: Path | None, spec_file: Path | None,
                   no_data_check: bool, samples: int, tolerance: float, max_accuracy_drop: float,
                   max_batch_size: int, max_queue_delay_us: int, instance_kind: str, format_: str) -> None:
    """Export a trained run to ONNX, verify it against PyTorch, and add it to a model repository.

    RUN_DIR_OR_CHECKPOINT is a run directory (its best.pt, else last.pt) or a checkpoint file.
    Nothing is written unless every verification check passes."""
    import json

    from .errors import UsageError
    from .export.pipeline import ExportOptions, export
    from .export.report import render_report, report_json
    from .deploy.model_config import ServingConfig

    if repo is None and output is None:
        raise UsageError("say where to write the model: --repo MODEL_REPO and/or -o model.onnx")
    options = ExportOptions(
        source=source, repo=repo, name=name, version=version_, opset=opset, quantize=quantize, output=output,
        data_dir=data_dir, spec_file=spec_file, data_check=not no_data_check, samples=samples,
        tolerance=tolerance, max_accuracy_drop=max_accuracy_drop,
        serving=ServingConfig(max_batch_size, max_queue_delay_us, instance_kind))
    console = _wide_console()

    def show(result: object) -> None:
        for warning in result.warnings:  # e.g. an int8 model slower than fp32 here
            click.echo(f"warning: {warning}", err=True)
        if format_ == "table":
            for table in render_report(result):
                console.print(table)
        elif not result.passed:  # the JSON report of a refused export, then the error
            click.echo(json.dumps(report_json(result), indent=2))

    result = export(options, report=show)
    if format_ == "json":
        click.echo(json.dumps(report_json(result), indent=2))
    else:
        for path in result.written:
            click.echo(f"wrote {path}")


@cli.command("predict")
@click.argument("model", metavar="MODEL_OR_REPO", type=click.Path(path_type=Path))
@click.argument("images", metavar="IMAGE...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", "-m", "name", default=None, help="Model name when MODEL_OR_REPO is a repository.")
@click.option("--version", "version_", type=click.IntRange(min=1), default=None,
              help="Model version.  [default: the highest]")
@click.option("--top-k", "-k", type=click.IntRange(min=1), default=3, show_default=True, help="Classes to show per image.")
@click.option("--format", "-f", "format_", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Output format.")
def predict_command(model: Path, images: tuple[Path, ...], name: str | None, version_: int | None, top_k: int,
                    format_: str) -> None:
    """Classify image files (PNG, JPEG, ...; any size and colour mode) with an exported model,
    preprocessed as its metadata says; prints the top-k labels with softmax probabilities.
    A file that is not an image is reported and the others are still classified; the exit code
    is then 1."""
    from .deploy.predict import predict_files, render, resolve_model

    path = resolve_model(model, name, version_)
    results = predict_files(path, list(images), top_k)
    failed = [entry for entry in results if "error" in entry]
    if format_ == "json" or len(failed) < len(results):  # JSON carries the errors too
        output = render(results, path, format_)
        if format_ == "json":
            click.echo(output)
        else:
            _wide_console().print(output)
    for entry in failed:
        click.echo(f"error: {entry['error']}", err=True)
    if failed:
        if len(results) > 1:
            click.echo(f"{len(failed)} of {len(results)} images could not be classified", err=True)
        raise click.exceptions.Exit(1)


class _ServeCommand(click.Command):
    """``cnnspec serve``: one option per setting of serving's ServeSettings (the same definition
    ``python -m serving`` takes its flags from), built when the command is used, because serving
    needs the optional ``serve`` extra and ``cnnspec analyze`` should not pay for importing it."""

    _settings_added = False

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not self._settings_added:
            self.params.extend(_serve_options())
            self._settings_added = True
        return super().get_params(ctx)


def _serve_options() -> list[click.Option]:
    """click options from serving.settings.command_line_flags (MODEL_REPO is the argument)."""
    from serving.settings import command_line_flags

    options = []
    for flag in command_line_flags():
        if flag.setting == "model_repository":
            continue
        shown = "  [default: unset]" if flag.default is None else f"  [default: {flag.default}]"
        if flag.kind is bool:
            options.append(click.Option([f"{flag.option}/--no-{flag.option[2:]}"], default=None,
                                        help=flag.help + shown))
        else:
            kind = (click.Choice(flag.choices) if flag.choices else
                    click.Path(path_type=Path) if flag.kind is Path else flag.kind)
            options.append(click.Option([flag.option], type=kind, default=None, help=flag.help + shown))
    return options


@cli.command("serve", cls=_ServeCommand)
@click.argument("model_repository", metavar="MODEL_REPO", type=click.Path(path_type=Path))
def serve_command(model_repository: Path, **flags: object) -> None:
    """Serve a model repository over the KServe Open Inference Protocol (V2) with dynamic batching.

    The same server and the same settings as `python -m serving` (one option per setting of
    serving/settings.py). Every setting can also come from a CNNSPEC_SERVE_* environment variable
    (e.g. CNNSPEC_SERVE_AUTH_TOKEN turns on bearer-token authentication).
    Stop it with Ctrl-C or SIGTERM: open requests are finished first."""
    from serving.__main__ import settings_from
    from serving.server import serve

    overrides = {key: value for key, value in flags.items() if value is not None}
    serve(settings_from({"model_repository": model_repository, **overrides}))
