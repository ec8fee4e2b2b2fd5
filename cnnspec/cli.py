"""The ``cnnspec`` command line. Commands are thin: they parse flags, call library code, and print.

Heavy libraries (torch, onnxruntime, matplotlib) are imported inside the commands that need them,
so ``cnnspec analyze`` starts fast and never imports torch. Library code raises CnnspecError
subclasses; ``main`` prints them (never a traceback) and exits 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__
from .errors import CnnspecError, SpecError

FORMATS = ("table", "json", "markdown", "mermaid")


class _Group(click.Group):
    """Lists commands in the order they are defined (the order of the workflow)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


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


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every cnnspec error into a message and exit code 1."""
    try:
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
    from .analysis import analyze as run_analysis
    from .report import render
    from .spec import load_spec

    result = run_analysis(load_spec(spec))
    click.echo(render(result, format_, explain=explain), nl=False)


@cli.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="Print errors only.")
def validate(specs: tuple[Path, ...], quiet: bool) -> None:
    """Check spec files; exit 0 only if every one is valid."""
    from .analysis import analyze as run_analysis
    from .spec import load_spec

    failed = 0
    for path in specs:
        try:
            result = run_analysis(load_spec(path))
        except SpecError as error:
            failed += 1
            click.echo(error.render(), err=True)
            continue
        if not quiet:
            totals = result.totals()
            click.echo(f"ok  {path}  ({len(result.layers)} layers, {totals['params']:,} params, "
                       f"{totals['macs']:,} MACs)")
    if failed:
        raise click.exceptions.Exit(1)


@cli.command()
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to a file instead of stdout.")
def schema(output: Path | None) -> None:
    """Print the JSON Schema of spec files (for editor completion and validation)."""
    import json

    from .catalog import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if output:
        from .checkpoint import atomic_write_bytes

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
            hint = did_you_mean(layer_type, [e["type"] for e in catalog()])
            raise UsageError(f"unknown layer type '{layer_type}'", [hint] if hint else [])
    if format_ == "json":
        click.echo(json.dumps(entries, indent=2))
    elif format_ == "markdown":
        click.echo(render_catalog_markdown())
    else:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        console = Console()
        for entry in entries:
            table = Table(title=Text(f"{entry['type']}: {entry['summary']}"), title_justify="left",
                          caption=f"input {entry['input']}, inputs: {entry['inputs']}", caption_justify="left")
            for column in ("field", "type", "default", "meaning"):
                table.add_column(column, overflow="fold")
            for field in entry["fields"]:
                table.add_row(*(Text(field[key]) for key in ("name", "type", "default", "description")))
            console.print(table)


# --- commands added by later stages go below (keep each command thin) --------------------------

@cli.command()
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--format", "-f", "format_", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
def summary(spec: Path, format_: str) -> None:
    """The analysis next to the compiled module's real numbers (shapes from a forward pass, counted
    parameters and buffers, MACs from torch's FLOP counter); exit 1 if any layer disagrees."""
    from .analysis import analyze as run_analysis
    from .spec import load_spec
    from .summary import render, summarize

    result = summarize(run_analysis(load_spec(spec)))
    click.echo(render(result, format_), nl=False)
    if not result.match:
        raise click.exceptions.Exit(1)


# --- training (cnnspec/train.py, cnnspec/data.py; torch is imported there) ----------------------

@cli.command("train")
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--dataset", "-d", default=None,
              help="mnist, fashion_mnist, cifar10, imagefolder or mnist_sample (built in).  [default: the spec's train.dataset]")
@click.option("--data-dir", default=None, help="Folder holding the dataset's files.  [default: data]")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Run directory: spec.yaml, metrics.jsonl, last.pt, best.pt.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Passes over the training set.  [default: 3]")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Images per step (per process).  [default: 64]")
@click.option("--optimizer", type=click.Choice(["adam", "adamw", "sgd"]), default=None, help="[default: adam]")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Learning rate.  [default: 0.001]")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=None, help="[default: 0]")
@click.option("--momentum", type=click.FloatRange(min=0), default=None, help="SGD momentum.  [default: 0.9]")
@click.option("--scheduler", type=click.Choice(["none", "cosine", "step", "onecycle"]), default=None,
              help="Learning-rate schedule, stepped every batch.  [default: none]")
@click.option("--seed", type=int, default=None, help="Seed of weights, data order and dropout.  [default: 0]")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default=None,
              help="auto: cuda, then mps, then cpu.  [default: auto]")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Processes decoding imagefolder images at load time.  [default: 0]")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default=None,
              help="auto: bf16/fp16 mixed on CUDA, bf16 mixed on CPUs with native bf16, else fp32.  [default: auto]")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt.")
@click.option("--download", is_flag=True, help="Download a torchvision dataset into --data-dir if missing.")
def train_command(spec: Path, out: Path, resume: bool, download: bool, **flags: object) -> None:
    """Train a spec's model; flags override the spec's train: section. Multi-process with
    `torchrun --nproc_per_node=N -m cnnspec train ...` (DDP)."""
    from .train import train

    train(spec, out, resume=resume, download=download, **flags)
