"""``python -m serving --model-repository MODEL_REPO [--host] [--port] [--device] ...``

Flags override ``CNNSPEC_SERVE_*`` environment variables, which override the defaults
(see serving/settings.py). ``cnnspec serve MODEL_REPO`` starts the same server.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any, Sequence

from pydantic import ValidationError

from .errors import ServingError
from .settings import ServeSettings, command_line_flags


DESCRIPTION = ("Serve a model repository (the folder cnnspec export writes) with the KServe Open Inference "
               "Protocol (V2) over HTTP (and gRPC with --grpc-port), with dynamic batching. Flags override CNNSPEC_SERVE_* environment "
               "variables, which override the defaults; 'cnnspec serve MODEL_REPO' starts the same server.")


def plain_text(text: str) -> str:
    """Docstring markup as a terminal shows it: ``code`` -> code, `code` -> 'code'."""
    return re.sub(r"`([^`]+)`", r"'\1'", re.sub(r"``([^`]+)``", r"\1", text))


def parse_args(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line flags -> settings overrides (only the flags given). One flag per setting, from
    ServeSettings (serving.settings.command_line_flags)."""
    parser = argparse.ArgumentParser(prog="python -m serving", description=DESCRIPTION)
    for flag in command_line_flags():
        shown = "required" if flag.required else "unset" if flag.default is None else f"default {flag.default}"
        help_text = plain_text(f"{flag.help} ({shown})").replace("%", "%%")
        if flag.kind is bool:
            parser.add_argument(flag.option, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag.option, type=flag.kind, choices=flag.choices, default=None, help=help_text,
                                metavar=None if flag.choices else flag.setting.upper())
    args = vars(parser.parse_args(argv))
    return {key: value for key, value in args.items() if value is not None}


def settings_from(overrides: dict[str, Any]) -> ServeSettings:
    """Build settings, turning pydantic's validation errors into one readable ServingError."""
    try:
        return ServeSettings(**overrides)
    except ValidationError as error:
        problems = "; ".join(_problem(e) for e in error.errors())
        raise ServingError(f"invalid server settings: {problems}") from None


def _problem(error: dict[str, Any]) -> str:
    """One pydantic error as ``name: message``, naming the flag and variable for a missing value."""
    name = ".".join(map(str, error["loc"])) or "settings"
    if error["type"] == "missing":
        return (f"{name} is required (--{name.replace('_', '-')} or "
                f"CNNSPEC_SERVE_{name.upper()})")
    return f"{name}: {error['msg']}"


def main(argv: Sequence[str] | None = None) -> int:
    from .server import serve

    try:
        serve(settings_from(parse_args(argv)))
    except ServingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
