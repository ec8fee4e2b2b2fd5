"""Running the real CLI entry point in-process (shared by the test modules)."""

from __future__ import annotations

import pytest

from cnnspec.cli import main


def run_cli(args: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run `cnnspec ARGS` through cli.main (the real error channel); return (exit code, stdout, stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as done:
        code = int(done.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
