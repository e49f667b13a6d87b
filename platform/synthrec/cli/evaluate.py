"""`synthrec evaluate`: fidelity, utility and privacy report of a synthetic table."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from synthrec.cli.app import (
    REQUIRED,
    app,
    config_from_flags,
    old_flag,
    out,
    progress_bar,
    renamed,
)
from synthrec.config import EvaluateConfig


@app.command("evaluate")
def evaluate(
    real_uri: str | None = typer.Option(
        None,
        "--real-uri",
        help="real rows the generator was trained on (file or dataset, local or s3://)" + REQUIRED,
    ),
    synthetic_uri: str | None = typer.Option(
        None, "--synthetic-uri", help="synthetic rows with the real table's columns" + REQUIRED
    ),
    holdout_uri: str | None = typer.Option(
        None,
        "--holdout-uri",
        help="real rows the generator never saw (privacy baseline, utility test)",
    ),
    schema_uri: str | None = typer.Option(
        None,
        "--schema-uri",
        help="schema YAML of the real table (default: its manifest's, else inferred)",
    ),
    label: str | None = typer.Option(
        None, "--label", help="binary label for TSTR/TRTR (default: the first label column)"
    ),
    exclude: list[str] | None = typer.Option(
        None, "--utility-exclude", help="column that leaks the label; repeatable"
    ),
    config: Path | None = typer.Option(
        None, "--config", help="YAML with EvaluateConfig keys (thresholds, samples)"
    ),
    out_uri: str | None = typer.Option(
        None, "--out-uri", help="folder for report.html and metrics.json (local or s3://)"
    ),
    strict: bool = typer.Option(False, "--strict", help="exit with code 1 when the verdict fails"),
    real: str | None = old_flag("--real"),
    synthetic: str | None = old_flag("--synthetic"),
    holdout: str | None = old_flag("--holdout"),
    out_old: str | None = old_flag("--out"),
) -> None:
    """Score synthetic data against real data and write report.html + metrics.json."""
    from synthrec.evaluate import run_evaluate
    from synthrec.evaluate.suite import STAGES, load_inputs

    cfg = config_from_flags(
        EvaluateConfig,
        config,
        {
            "real_uri": renamed(real_uri, real, "--real-uri", "--real"),
            "synthetic_uri": renamed(synthetic_uri, synthetic, "--synthetic-uri", "--synthetic"),
            "holdout_uri": renamed(holdout_uri, holdout, "--holdout-uri", "--holdout"),
            "schema_uri": schema_uri,
            "label": label,
            "out_uri": renamed(out_uri, out_old, "--out-uri", "--out"),
            "utility_exclude": exclude or None,
        },
    )
    inputs = load_inputs(cfg)  # bad input fails here, before the progress bar
    with progress_bar("evaluating", len(STAGES) + 1, unit="stages") as update:
        metrics = run_evaluate(
            cfg, progress=lambda done, stage="": update(done, rate=stage), inputs=inputs
        )
    out.print(headline_table(metrics))
    out.print(
        f"report: [bold]{cfg.out_uri.rstrip('/')}/report.html[/bold]  "
        f"metrics: {cfg.out_uri.rstrip('/')}/metrics.json"
    )
    if strict and not metrics["verdict"]["passed"]:
        raise typer.Exit(1)


def headline_table(metrics: dict) -> Table:
    """Headline metrics and the verdict as a rich table."""
    f, u, p, v = metrics["fidelity"], metrics["utility"], metrics["privacy"], metrics["verdict"]
    limits = {c["metric"]: c for c in v["checks"]}
    table = Table(title="synthetic data evaluation")
    for name in ("metric", "value", "threshold", "result"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    rows = [
        ("fidelity.overall", f.get("overall")),
        ("fidelity.column_shapes", f.get("column_shapes")),
        ("fidelity.column_pair_trends", f.get("column_pair_trends")),
        ("fidelity.all_pairs.overall", f.get("all_pairs", {}).get("overall")),
        ("utility.trtr_auc", u.get("trtr_auc")),
        ("utility.tstr_auc", u.get("tstr_auc")),
        ("utility.ratio", u.get("ratio")),
        ("privacy.exact_copy_rate", p.get("exact_copy_rate")),
        ("privacy.dcr_share_closer_than_holdout_p5", p.get("dcr_share_closer_than_holdout_p5")),
        ("privacy.mia_auc", p.get("mia_auc")),
    ]
    for name, value in rows:
        check = limits.get(name)
        threshold = f"{check['op']} {check['threshold']:.3f}" if check else ""
        result = (
            ("[green]pass[/green]" if check["passed"] else "[red]FAIL[/red]")
            if check
            else ("[dim]skipped[/dim]" if name in v["skipped"] else "")
        )
        table.add_row(name, "n/a" if value is None else f"{value:.4f}", threshold, result)
    table.add_row(
        "[bold]verdict[/bold]",
        "",
        "",
        "[bold green]PASS[/bold green]" if v["passed"] else "[bold red]FAIL[/bold red]",
    )
    return table
