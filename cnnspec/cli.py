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
    text = error.render() if isinstance(error, SpecError) else str(error)
    click.echo(text if text.startswith(("error", "/")) or ": error:" in text.split("\n")[0] else f"error: {text}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every cnnspec error into a message and exit code 1."""
    try:
        cli.main(args=argv, prog_name="cnnspec", standalone_mode=False)
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


# --- commands added by later stages go below (keep each command thin) --------------------------
