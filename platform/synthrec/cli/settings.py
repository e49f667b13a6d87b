"""`synthrec config show COMMAND`: a command's config keys with their defaults, as YAML.

What a `--config` file may hold for that command: every key, nested sections expanded, with
its default (required keys print as null under a comment naming them). Copy it, keep the keys
you change.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import typer
import yaml
from pydantic import BaseModel

from synthrec import config as cfgs
from synthrec.cli.app import app, out

config_app = typer.Typer(help="Show the config keys a command reads.", no_args_is_help=True)
app.add_typer(config_app, name="config")

CONFIG_OF_COMMAND: dict[str, type[BaseModel]] = {
    "simulate": cfgs.SimulateConfig,
    "train-gan": cfgs.TrainGanConfig,
    "generate": cfgs.GenerateConfig,
    "evaluate": cfgs.EvaluateConfig,
    "train-recommender": cfgs.TrainRecommenderConfig,
    "tune": cfgs.TuneConfig,
    "serve": cfgs.ServeConfig,
    "pipeline": cfgs.PipelineConfig,
}
Command = Enum("Command", {name: name for name in CONFIG_OF_COMMAND}, type=str)


def defaults(cls: type[BaseModel]) -> tuple[dict[str, Any], list[str]]:
    """(key -> default, nested sections as dicts; the required keys, set to None)."""
    values, required = {}, []
    for name, field in cls.model_fields.items():
        if field.is_required():
            values[name] = None
            required.append(name)
            continue
        value = field.get_default(call_default_factory=True)
        values[name] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    return _plain(values), required


def _plain(value: Any) -> Any:
    """YAML-safe: enums by value, tuples as lists, secrets never shown."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


@config_app.command("show")
def show(
    command: Command = typer.Argument(..., help="The command whose config keys to print."),
) -> None:
    """Print COMMAND's config keys and defaults as YAML (a start for --config)."""
    cls = CONFIG_OF_COMMAND[command.value]
    values, required = defaults(cls)
    header = f"# synthrec {command.value} --config: {cls.__name__} keys and defaults\n"
    if required:
        header += f"# required (here or as flags): {', '.join(required)}\n"
    out.print(
        header + yaml.safe_dump(values, sort_keys=False, default_flow_style=False),
        highlight=False,
        soft_wrap=True,
        markup=False,
    )
