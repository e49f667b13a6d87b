"""`synthrec models list / show / promote / rollback`: the model registry of a refresh loop."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from synthrec.cli.app import app, config_from_flags, console, out
from synthrec.config import RegistryConfig, StorageConfig

models_app = typer.Typer(
    help="Registered versions of model F (MLflow Model Registry) and their aliases.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")

ROOT = typer.Option(
    ..., "--root-uri", help="Root of the refresh loop (its `out_uri`; local or s3://)."
)
TRACKING = typer.Option(
    None, "--tracking-uri", help="MLflow server (default: the SQLite file under --root-uri)."
)
NAME = typer.Option(None, "--name", help="Registered model name (default synthrec-recommender).")
CONFIG = typer.Option(None, "--config", help="YAML with RegistryConfig keys (flags win).")


def _registry(root_uri: str, tracking_uri: str | None, name: str | None, config: Path | None):
    from synthrec.registry import Registry

    cfg = config_from_flags(
        RegistryConfig, config, {"tracking_uri": tracking_uri, "model_name": name}
    )
    return Registry(root_uri, cfg, StorageConfig())


@models_app.command("list")
def list_command(
    root_uri: str = ROOT,
    tracking_uri: str | None = TRACKING,
    name: str | None = NAME,
    config: Path | None = CONFIG,
) -> None:
    """Every version, oldest first, with its aliases, parent and headline metric."""
    with _registry(root_uri, tracking_uri, name, config) as reg:
        versions = reg.versions()
        history = reg.production_history()
    table = Table(title=f"{versions[0].name if versions else name}: {len(versions)} version(s)")
    for col in ("version", "aliases", "parent", "ndcg@10", "refresh", "model_uri"):
        table.add_column(col)
    for v in versions:
        metrics = json.loads(v.tags.get("metrics", "{}"))
        ndcg = metrics.get("ndcg@10")
        table.add_row(
            str(v.version),
            ", ".join(v.aliases) or "-",
            v.tags.get("parent_version", "-"),
            "-" if ndcg is None else f"{ndcg:.4f}",
            v.tags.get("refresh_id", "-"),
            v.model_uri,
        )
    out.print(table)
    out.print(f"production history: {' -> '.join(map(str, history)) or 'none'}", highlight=False)


@models_app.command("show")
def show_command(
    ref: str = typer.Argument(..., help="VERSION, NAME/VERSION or NAME@ALIAS (e.g. @production)."),
    root_uri: str = ROOT,
    tracking_uri: str | None = TRACKING,
    name: str | None = NAME,
    config: Path | None = CONFIG,
) -> None:
    """One version as JSON: model URI, aliases, lineage tags and its training run's metrics."""
    with _registry(root_uri, tracking_uri, name, config) as reg:
        version = reg.resolve(ref if not ref.isdigit() else f"/{ref}")
        shown = version.as_dict()
        shown["tags"] = {k: _maybe_json(v) for k, v in version.tags.items()}
        if version.run_id:
            shown["training_run"] = reg.run_metrics(version.run_id)
    out.print_json(json.dumps(shown, default=str))


@models_app.command("promote")
def promote_command(
    version: int = typer.Argument(..., help="The version to serve as production."),
    root_uri: str = ROOT,
    tracking_uri: str | None = TRACKING,
    name: str | None = NAME,
    config: Path | None = CONFIG,
) -> None:
    """Point the `production` alias at VERSION (a Serve app following it rolls to it)."""
    with _registry(root_uri, tracking_uri, name, config) as reg:
        promoted = reg.promote(version)
    console.print(
        f"[green]production[/green] -> version {promoted.version} ({promoted.model_uri})",
        highlight=False,
    )


@models_app.command("rollback")
def rollback_command(
    root_uri: str = ROOT,
    tracking_uri: str | None = TRACKING,
    name: str | None = NAME,
    config: Path | None = CONFIG,
) -> None:
    """Point `production` back at the version that served before the current one."""
    with _registry(root_uri, tracking_uri, name, config) as reg:
        back = reg.rollback()
    console.print(
        f"[green]production[/green] rolled back to version {back.version} ({back.model_uri})",
        highlight=False,
    )


def _maybe_json(value: str):
    try:
        return json.loads(value)
    except ValueError:
        return value
