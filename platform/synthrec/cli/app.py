"""The Typer app, shared console and progress helpers for the command modules."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

try:  # typer >= 0.29 vendors its own click
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import get_current_context

from synthrec.config import load_config

T = TypeVar("T")
console = Console(stderr=True)
out = Console()  # results (tables, summaries) go to stdout

app = typer.Typer(
    name="synthrec",
    help="Synthetic interaction logs with a conditional GAN, and recommenders trained on them, "
    "on Ray.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Simulate, validate and describe datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def installed_version() -> str:
    """The installed distribution's version; the package's own `__version__` when synthrec runs
    from a source tree that was never installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("synthrec")
    except PackageNotFoundError:
        import synthrec

        return synthrec.__version__


def _print_version(value: bool) -> None:
    if value:
        out.print(f"synthrec {installed_version()}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
    version: bool = typer.Option(
        False,
        "--version",
        is_eager=True,
        expose_value=False,
        callback=_print_version,
        help="Print the installed synthrec version and exit.",
    ),
) -> None:
    """Global options (--debug is handled in main before parsing)."""


@contextmanager
def progress_bar(description: str, total: float | None, unit: str = "rows") -> Iterator[Any]:
    """A rich progress bar; yields `update(completed, **fields)` for library callbacks."""
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    start = time.monotonic()
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total, rate="")

        def update(completed: float, **fields: Any) -> None:
            elapsed = max(time.monotonic() - start, 1e-9)
            rate = fields.pop("rate", None) or f"{completed / elapsed:,.0f} {unit}/s"
            extra = " ".join(f"{k}={v}" for k, v in fields.items())
            progress.update(task, completed=completed, rate=f"{rate} {extra}".strip())

        yield update


REQUIRED = " (required; or set it in --config)"  # a flag a command needs, from here or its YAML


def old_flag(name: str) -> Any:
    """A flag's name before synthrec 0.2 (locations now end in -uri): hidden from --help and
    accepted, with a warning, until the next release. Read it with `renamed`."""
    return typer.Option(None, name, hidden=True)


def renamed(value: Any, old_value: Any, flag: str, old: str, required: bool = False) -> Any:
    """The value of `flag`, or of its deprecated name `old` (with a warning); never both."""
    if old_value is not None:
        if value is not None:
            raise typer.BadParameter(
                f"{old} is the old name of {flag}; give only {flag}", param_hint=old
            )
        warn(f"{old} is deprecated, use {flag}; the old name stops working in the next release")
        return old_value
    if value is None and required:
        raise typer.BadParameter("missing; it is required", param_hint=flag)
    return value


# Flags whose names differ from the config key they set (checked against the command's own
# options, so a flag is named only where the command has it).
FLAG_OF_KEY = {
    "ray_address": "--address",
    "scaling.use_gpu": "--gpu",
    "time_budget_min": "--time-budget",
    "model.time_budget_s": "--time-budget",
    "utility_exclude": "--utility-exclude",
    "conditions": "--condition",
    "stages": "--stage",
}


def config_from_flags(cls: type[T], config: Path | None, overrides: dict[str, Any]) -> T:
    """`load_config` for a command: errors about values its flags gave, or about required keys,
    name the flags (`--data-uri is required`), not the config keys. A key's flag is
    `FLAG_OF_KEY[key]`, else `--<last part of the key, dashed>`, if the command has it."""
    ctx = get_current_context(silent=True)
    options = {
        opt
        for param in (ctx.command.params if ctx else [])
        if not getattr(param, "hidden", False)
        for opt in param.opts
    }
    names = {}
    for key in overrides:
        leaf = key.rsplit(".", 1)[-1].replace("_", "-")
        for flag in (FLAG_OF_KEY.get(key), f"--{leaf}"):
            if flag in options:
                names[key] = flag
                break
    return load_config(cls, config, overrides, flags=names)


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)


def parse_pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    """Parse repeated `col=value` flags into a dict; bad shapes are a BadParameter."""
    pairs: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected col=value, got {item!r}", param_hint=flag)
        pairs[key.strip()] = value.strip()
    return pairs
