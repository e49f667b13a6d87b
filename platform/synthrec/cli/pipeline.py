"""`synthrec pipeline` and `synthrec demo`: the whole platform, stage by stage."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from synthrec.cli.app import app, config_from_flags, console, old_flag, out, renamed
from synthrec.cli.gan import Generator
from synthrec.config import PIPELINE_STAGES, PipelineConfig

STAGE_TITLES = {
    "data": "real data (split: each user's last two interactions, then a random privacy holdout)",
    "train_gan": "train the generator: row GAN or sequence model (Ray Train)",
    "generate": "generate synthetic rows (Ray Data)",
    "evaluate": "fidelity, utility and privacy report",
    "train_recommender": "train recommender F on real + synthetic (Ray Train)",
    "evaluate_recommender": "evaluate F on real held-out data",
}


class _Printer:
    """Turns pipeline events into progress lines (throttled for row counters)."""

    def __init__(self) -> None:
        self.last_rows = 0.0
        self.resumed_from = 0

    def __call__(self, kind: str, **event: Any) -> None:
        if kind == "stage":
            note = " [dim](reused: outputs already published)[/dim]" if event["reused"] else ""
            console.rule(f"[bold]{event['name']}[/bold]: {STAGE_TITLES[event['name']]}{note}")
        elif kind == "stage_done":
            console.print(f"[green]done[/green] {event['name']} in {event['seconds']:.0f} s")
        elif kind == "generator":
            console.print(f"  generator: {event['generator']} ({event['why']})", highlight=False)
        elif kind == "epoch" and event.get("phase") == "users":
            return  # the sequence model's users-table GAN: too many short epochs to list
        elif kind == "epoch":
            resumed = event.get("resumed_from") or 0
            if resumed > self.resumed_from:  # Ray Train restarted the workers mid-run
                console.print(f"  [yellow]workers restarted: resumed from epoch {resumed}[/yellow]")
            self.resumed_from = resumed
            shown = {
                k: event[k]
                for k in (
                    "epoch",
                    "phase",
                    "nll",
                    "valid_nll",
                    "critic_loss",
                    "generator_loss",
                    "fidelity",
                    "loss",
                    "ndcg@10",
                    "valid_ndcg",
                    "valid_gauc",
                    "rows_per_s",
                )
                if k in event
            }
            console.print(
                "  "
                + "  ".join(
                    f"{k}={v:,.3f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in shown.items()
                )
            )
        elif kind == "rows" and (
            time.monotonic() - self.last_rows > 1 or event["done"] >= event["total"]
        ):
            self.last_rows = time.monotonic()
            console.print(f"  {event['done']:,} / {event['total']:,} {event.get('unit', 'rows')}")
        elif kind == "evaluate" and event.get("part"):
            console.print(f"  {event['part']}")


def _summary(result: dict) -> Table:
    table = Table(title=f"pipeline outputs under {result['out']}")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    for key, value in result["headline"].items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    reused = [n for n, s in result["stages"].items() if s["reused"]]
    if reused:
        table.add_row("reused stages", ", ".join(reused))
    return table


@app.command("pipeline")
def pipeline(
    config: Path | None = typer.Option(None, "--config", help="YAML with PipelineConfig keys"),
    out_uri: str | None = typer.Option(None, "--out-uri", help="root URI of all outputs"),
    data_uri: str | None = typer.Option(
        None, "--data-uri", help="real event log URI (default: simulated data)"
    ),
    schema_uri: str | None = typer.Option(
        None, "--schema-uri", help="schema YAML for --data-uri (roles, ignore, behaviour)"
    ),
    stage: list[str] | None = typer.Option(
        None, "--stage", help=f"run only these: {', '.join(PIPELINE_STAGES)}"
    ),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster address (default: local Ray)"
    ),
    generator: Generator | None = typer.Option(
        None,
        "--generator",
        help="train_gan's generator: rows (default), sequences, or auto (sequences when the "
        "log has user, item and time columns)",
    ),
    out_old: str | None = old_flag("--out"),
    data: str | None = old_flag("--data"),
) -> None:
    """Train the GAN, generate, evaluate, train and evaluate the recommender; reuse finished
    stages."""
    from synthrec.pipeline import run_pipeline

    cfg = config_from_flags(
        PipelineConfig,
        config,
        {
            "out_uri": renamed(out_uri, out_old, "--out-uri", "--out"),
            "data_uri": renamed(data_uri, data, "--data-uri", "--data"),
            "schema_uri": schema_uri,
            "stages": stage or None,
            "ray_address": address,
            "generator": generator.value if generator else None,
        },
    )
    result = run_pipeline(cfg, progress=_Printer())
    out.print(_summary(result))


@app.command("demo")
def demo(
    out_uri: str | None = typer.Option(
        None, "--out-uri", help="local folder (or s3:// prefix) for every output [demo-output]"
    ),
    port: int = typer.Option(8000, "--port", help="port used in the printed serve/curl commands"),
    out_old: str | None = old_flag("--out"),
) -> None:
    """The pipeline on built-in simulated data with small sizes (minutes on a laptop)."""
    from synthrec.pipeline import run_pipeline

    out_uri = renamed(out_uri, out_old, "--out-uri", "--out") or "demo-output"
    cfg = PipelineConfig(out_uri=out_uri)
    console.print(
        f"[bold]synthrec demo[/bold]: simulated e-commerce search log "
        f"({cfg.simulate.rows:,} impressions) -> generator ({cfg.generator}) -> about "
        f"{cfg.synthetic_rows:,} synthetic rows -> report -> recommender; outputs in {out_uri}"
    )
    start = time.monotonic()
    result = run_pipeline(cfg, progress=_Printer())
    out.print(_summary(result))
    out.print(
        f"finished in {time.monotonic() - start:.0f} s. "
        f"Report: {result['headline'].get('evaluate.report')}\n"
    )
    out.print(
        _next_steps(result, port), soft_wrap=True, highlight=False, markup=False
    )  # copy-pasteable lines


def _next_steps(result: dict, port: int) -> str:
    import json

    stages = result["stages"]
    gan = stages.get("train_gan", {}).get("outputs", {}).get("model", "MODEL")
    rec = stages.get("train_recommender", {}).get("outputs", {}).get("model", "RECOMMENDER")
    data = stages.get("data", {}).get("outputs", {})
    synthetic_body = json.dumps(
        {"rows": 5, "conditions": data.get("sample_condition", {}), "seed": 1, "format": "json"}
    )
    recommend_body = json.dumps(
        {"user_id": data.get("sample_user", "42"), "k": 5, "exclude_seen": True}
    )
    base = f"http://127.0.0.1:{port}"
    json_header = "-H 'Content-Type: application/json'"
    return "\n".join(
        [
            "Serve the models it made:",
            f"  .venv/bin/synthrec serve --generator-uri {gan} --recommender-uri {rec} "
            f"--port {port}",
            "Then, from another shell:",
            f"  curl -s {base}/healthz",
            f"  curl -s {base}/v1/models",
            f"  curl -s -X POST {base}/v1/synthetic {json_header} -d '{synthetic_body}'",
            f"  curl -s -X POST {base}/v1/recommendations {json_header} -d '{recommend_body}'",
        ]
    )
