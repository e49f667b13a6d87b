"""`synthrec refresh`: one turn of the continuous loop on a new partition of real events."""

from __future__ import annotations

from pathlib import Path

import typer

from synthrec.cli.app import REQUIRED, app, config_from_flags, console, out
from synthrec.cli.pipeline import _Printer
from synthrec.config import RefreshConfig

TITLES = {
    "plan": "production version to start from, schema check",
    "data": "publish the partition, the real log so far, drift against the previous period",
    "generator": "generator warm-started from production -> fresh synthetic set -> report",
    "recommender": "F fine-tuned from production on real so far + fresh synthetic",
    "compare": "candidate vs production on the newest held-out slice",
    "register": "register the candidate (MLflow Model Registry, lineage tags)",
    "decide": "promote, or keep production and say why",
}


class _RefreshPrinter(_Printer):
    def __call__(self, kind: str, **event) -> None:
        if kind == "stage" and event.get("part") != "generator":
            note = " [dim](reused: finished before)[/dim]" if event["reused"] else ""
            console.rule(f"[bold]{event['name']}[/bold]: {TITLES[event['name']]}{note}")
        elif kind == "stage" or (kind == "stage_done" and event.get("part") == "generator"):
            console.print(
                f"  {event['name']}" + (" (reused)" if event.get("reused") else ""),
                highlight=False,
            )
        elif kind == "decision":
            color = "green" if event["promoted"] else "yellow"
            verb = "promoted" if event["promoted"] else "not promoted"
            console.print(
                f"[{color}]version {event['version']} {verb}[/{color}]: {event['reason']}",
                highlight=False,
            )
        else:
            super().__call__(kind, **event)


@app.command("refresh")
def refresh_command(
    partition_uri: str | None = typer.Option(
        None, "--partition-uri", help="The new partition of real events" + REQUIRED
    ),
    out_uri: str | None = typer.Option(
        None, "--out-uri", help="Root of the loop (registry, refreshes, reports)" + REQUIRED
    ),
    schema_uri: str | None = typer.Option(None, "--schema-uri", help="Schema YAML of the log."),
    margin: float | None = typer.Option(
        None, "--margin", help="NDCG@10 the candidate must gain over production (default 0)."
    ),
    allow_schema_change: bool = typer.Option(
        False,
        "--allow-schema-change",
        help="A partition whose columns differ from production's trains from scratch.",
    ),
    config: Path | None = typer.Option(None, "--config", help="YAML with RefreshConfig keys."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address."),
) -> None:
    """Warm-start the generator and F from production on a new partition, compare, promote
    only a better candidate whose synthetic set passes the privacy verdict."""
    from synthrec.refresh import run_refresh

    cfg = config_from_flags(
        RefreshConfig,
        config,
        {
            "partition_uri": partition_uri,
            "out_uri": out_uri,
            "schema_uri": schema_uri,
            "margin": margin,
            "allow_schema_change": True if allow_schema_change else None,
            "ray_address": address,
        },
    )
    result = run_refresh(cfg, progress=_RefreshPrinter())
    if result["status"] == "nothing to do":
        out.print(f"nothing to do: {result['reason']}", highlight=False)
        return
    out.print(
        f"refresh {result['id']}: {result['status']} (version {result['version']}); "
        f"{result['reason']}",
        highlight=False,
    )
