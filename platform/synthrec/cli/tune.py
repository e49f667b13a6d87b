"""`synthrec tune`: a bounded Ray Tune search for F, scored on the real validation split."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from synthrec.cli.app import REQUIRED, app, config_from_flags, console, out
from synthrec.config import TuneConfig


@app.command("tune")
def tune(
    real_uri: str | None = typer.Option(
        None, "--real-uri", help="real impressions with label columns (local or s3://)" + REQUIRED
    ),
    synthetic_uri: str | None = typer.Option(
        None, "--synthetic-uri", help="synthetic rows with the real table's columns"
    ),
    generator_uri: str | None = typer.Option(
        None,
        "--generator-uri",
        help="generator model sampled once per searched temperature (instead of --synthetic-uri)",
    ),
    synthetic_rows: int | None = typer.Option(
        None, "--synthetic-rows", help="rows sampled from --generator-uri (default: as real)"
    ),
    schema_uri: str | None = typer.Option(None, "--schema-uri", help="schema YAML of the real"),
    out_uri: str | None = typer.Option(
        None,
        "--out-uri",
        help="model directory of F trained with the chosen values; the search's record goes "
        "to <out-uri>-tuning" + REQUIRED,
    ),
    config: Path | None = typer.Option(
        None, "--config", help="YAML with TuneConfig keys (see `synthrec config show tune`)"
    ),
    num_samples: int | None = typer.Option(None, "--num-samples", help="trials (default 8)"),
    max_epochs: int | None = typer.Option(
        None, "--max-epochs", help="epochs of a trial that ASHA does not stop (default 10)"
    ),
    cpus_per_trial: float | None = typer.Option(None, "--cpus-per-trial"),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster address (default: local Ray)"
    ),
) -> None:
    """Search F's λ, synthetic share, sampling temperature and size with Ray Tune (ASHA),
    scored by click GAUC on the real validation split; publish F trained with the chosen values
    and the search's record beside it."""
    from synthrec.distributed.tune import METRIC, run_tune_command

    cfg = config_from_flags(
        TuneConfig,
        config,
        {
            "real_uri": real_uri,
            "synthetic_uri": synthetic_uri,
            "generator_uri": generator_uri,
            "synthetic_rows": synthetic_rows,
            "schema_uri": schema_uri,
            "out_uri": out_uri,
            "search.num_samples": num_samples,
            "search.max_epochs": max_epochs,
            "search.cpus_per_trial": cpus_per_trial,
            "ray_address": address,
        },
    )
    s = cfg.search
    console.print(f"tuning F: {s.num_samples} trials of at most {s.max_epochs} epochs (ASHA)")

    def show(m: dict) -> None:
        console.print(f"trial {m['trial']} epoch {m['epoch']}: {METRIC} {m[METRIC]:.4f}")

    summary = run_tune_command(cfg, progress=show)
    out.print(trials_table(summary["trials"], summary["best"]))
    best = ", ".join(f"{k}={v:.4g}" for k, v in summary["best"].items())
    out.print(
        f"chosen: {best} (valid click GAUC {summary[f'best_{METRIC}']:.4f}); published model "
        f"[bold]{summary['model_uri']}[/bold], search record {summary['tuning_uri']}"
    )


def trials_table(trials: list[dict], best: dict) -> Table:
    from synthrec.distributed.tune import KEYS, METRIC

    grid = Table(title="trials (ASHA stops the trailing ones early)")
    for name in (*KEYS, "epochs", METRIC):
        grid.add_column(name, justify="right")
    for t in sorted(trials, key=lambda t: -(t[METRIC] or 0.0)):
        row = [f"{t[k]:.4g}" for k in KEYS] + [str(t["epochs"]), f"{t[METRIC]:.4f}"]
        grid.add_row(*row, style="bold" if all(t[k] == best[k] for k in KEYS) else None)
    return grid
