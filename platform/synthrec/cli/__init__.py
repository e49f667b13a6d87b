"""The `synthrec` command. The only place that prints, reads argv or exits.

Each command group lives in its own module and registers itself on `app` when imported.
"""

from __future__ import annotations

import sys
import warnings

import typer

try:  # typer >= 0.29 vendors its own click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click_errors

from synthrec.cli import cluster as _cluster  # noqa: E402,F401

# Importing registers the commands (order = order in --help).
from synthrec.cli import data as _data  # noqa: E402,F401
from synthrec.cli import evaluate as _evaluate  # noqa: E402,F401
from synthrec.cli import gan as _gan  # noqa: E402,F401
from synthrec.cli import models as _models  # noqa: E402,F401
from synthrec.cli import pipeline as _pipeline  # noqa: E402,F401
from synthrec.cli import recommender as _recommender  # noqa: E402,F401
from synthrec.cli import refresh as _refresh  # noqa: E402,F401
from synthrec.cli import serving as _serving  # noqa: E402,F401
from synthrec.cli import settings as _settings  # noqa: E402,F401
from synthrec.cli import tune as _tune  # noqa: E402,F401
from synthrec.cli.app import app, console, warn
from synthrec.errors import SynthrecError


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one red line and exit code 2; `--debug` shows tracebacks."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning  # deprecated config keys: one yellow line
            code = app(
                args=args, prog_name="synthrec", standalone_mode=False
            )  # typer.Exit(n) returns n here
    except SynthrecError as err:
        if debug:
            raise
        console.print(f"[bold red]error:[/bold red] {err}", highlight=False, soft_wrap=True)
        return _exit(2)
    except typer.Exit as err:
        return _exit(err.exit_code)
    except click_errors.ClickException as err:
        err.show()
        return _exit(err.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        console.print("[yellow]interrupted[/yellow]")
        return _exit(130)
    return _exit(code if isinstance(code, int) else 0)


_default_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, FutureWarning):
        warn(str(message))
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


def _exit(code: int) -> int:
    if code:
        sys.exit(code)
    return 0
