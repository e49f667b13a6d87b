"""`synthrec train-recommender` and `synthrec evaluate-recommender`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from synthrec.cli.app import (
    REQUIRED,
    app,
    config_from_flags,
    console,
    old_flag,
    out,
    progress_bar,
    renamed,
)
from synthrec.config import TrainRecommenderConfig


@app.command("train-recommender")
def train_recommender(
    real_uri: str | None = typer.Option(
        None,
        "--real-uri",
        help="real interactions: .parquet, .csv(.gz) or .inter file or dataset folder (local or s3://)"
        + REQUIRED,
    ),
    synthetic_uri: str | None = typer.Option(
        None, "--synthetic-uri", help="synthetic interactions with the real table's columns"
    ),
    synthetic_weight: float | None = typer.Option(
        None, "--synthetic-weight", help="λ in L = mean(real) + λ·mean(synthetic)"
    ),
    schema_uri: str | None = typer.Option(
        None,
        "--schema-uri",
        help="schema YAML of the real table (default: its manifest's, else inferred)",
    ),
    out_uri: str | None = typer.Option(
        None, "--out-uri", help="model directory URI to publish" + REQUIRED
    ),
    config: Path | None = typer.Option(
        None, "--config", help="YAML with TrainRecommenderConfig keys"
    ),
    num_workers: int | None = typer.Option(None, "--num-workers", help="Ray Train workers"),
    gpu: bool | None = typer.Option(None, "--gpu/--cpu", help="one GPU per worker"),
    epochs: int | None = typer.Option(
        None, "--epochs", help="at most this many epochs (early stopping may end sooner)"
    ),
    time_budget: float | None = typer.Option(
        None, "--time-budget", help="minutes; stops at the first epoch past it"
    ),
    holdout: str | None = typer.Option(
        None, "--holdout", help="leave_last_out (default, evaluable) or none (serve-only)"
    ),
    resume: bool = typer.Option(
        False, "--resume", help="continue the run named by --run-name from its last checkpoint"
    ),
    run_name: str | None = typer.Option(None, "--run-name"),
    checkpoint_uri: str | None = typer.Option(
        None, "--checkpoint-uri", help="runs and checkpoints (default <out-uri>-runs)"
    ),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster address (default: local Ray)"
    ),
    real: str | None = old_flag("--real"),
    synthetic: str | None = old_flag("--synthetic"),
    out_old: str | None = old_flag("--out"),
) -> None:
    """Train recommender F on real (+ λ-weighted synthetic) interactions with Ray Train and
    publish it."""
    from synthrec.distributed.recommender_train import run_train_recommender

    real_uri = renamed(real_uri, real, "--real-uri", "--real")
    synthetic_uri = renamed(synthetic_uri, synthetic, "--synthetic-uri", "--synthetic")
    out_uri = renamed(out_uri, out_old, "--out-uri", "--out")
    if synthetic_weight is not None and synthetic_uri is None and config is None:
        raise typer.BadParameter("needs --synthetic-uri", param_hint="--synthetic-weight")
    if epochs is not None and time_budget is not None:
        raise typer.BadParameter(
            "give --epochs or --time-budget, not both", param_hint="--time-budget"
        )
    cfg = config_from_flags(
        TrainRecommenderConfig,
        config,
        {
            "real_uri": real_uri,
            "synthetic_uri": synthetic_uri,
            "schema_uri": schema_uri,
            "out_uri": out_uri,
            "model.synthetic_weight": synthetic_weight,
            "scaling.num_workers": num_workers,
            "scaling.use_gpu": gpu,
            "model.epochs": epochs,
            "model.time_budget_s": time_budget * 60 if time_budget is not None else None,
            "model.holdout": holdout,
            "run.resume": resume or None,
            "run.run_name": run_name,
            "run.checkpoint_uri": checkpoint_uri,
            "ray_address": address,
        },
    )
    total = cfg.model.epochs if cfg.model.time_budget_s is None else None
    with progress_bar("training", total, unit="epochs") as update:

        def show(m: dict) -> None:
            update(
                m["epoch"],
                rate=f"{m.get('seconds', 0):.1f} s/epoch",
                loss=f"{m.get('loss', float('nan')):.4f}",
                valid_ndcg=f"{m.get('valid_ndcg@10', float('nan')):.4f}",
            )

        summary = run_train_recommender(cfg, progress=show)
    out.print(
        f"published model [bold]{summary['model_uri']}[/bold]: {summary['epochs']} epochs, "
        f"best epoch {summary['best_epoch']} "
        f"({_best_score(summary)}), "
        f"{summary['train_seconds']:.0f} s (run {summary['run_name']}, "
        f"checkpoints {summary['checkpoints']})"
    )


def _best_score(summary: dict) -> str:
    """The validation score the run early-stopped on: click GAUC with ranking heads, else
    next-item NDCG@10."""
    if "best_valid_gauc" in summary:
        return f"valid click GAUC {summary['best_valid_gauc'] or float('nan'):.4f}"
    return f"valid NDCG@10 {summary['best_valid_ndcg@10'] or float('nan'):.4f}"


@app.command("evaluate-recommender")
def evaluate_recommender(
    model_uri: str | None = typer.Option(
        None, "--model-uri", help="model directory URI (required)"
    ),
    real_uri: str | None = typer.Option(
        None,
        "--real-uri",
        help="real interactions the model was trained from (local or s3://) (required)",
    ),
    out_dir: Path | None = typer.Option(
        None, "--out-dir", help="local folder for metrics.json and metrics.md (required)"
    ),
    baselines: bool = typer.Option(
        True, "--baselines/--no-baselines", help="also score popularity and EASE"
    ),
    num_train: int | None = typer.Option(
        None, "--num-train", help="rows in the temporal train part (default 80%)"
    ),
    schema_uri: str | None = typer.Option(
        None,
        "--schema-uri",
        help="schema YAML of the real table (default: the schema the model was trained with)",
    ),
    model: str | None = old_flag("--model"),
    real: str | None = old_flag("--real"),
    out_old: Path | None = old_flag("--out"),
) -> None:
    """Leave-last-out Recall/NDCG@10/MRR per segment and temporal click AUC on real data."""
    from synthrec.recommender.artifacts import load_recommender
    from synthrec.recommender.evaluation import check_evaluable
    from synthrec.recommender.evaluation import evaluate_recommender as evaluate

    model_uri = renamed(model_uri, model, "--model-uri", "--model", required=True)
    real_uri = renamed(real_uri, real, "--real-uri", "--real", required=True)
    out_dir = renamed(out_dir, out_old, "--out-dir", "--out", required=True)
    rec = load_recommender(model_uri)
    table = _real_table(real_uri, schema_uri, rec.training.get("schema"))
    check_evaluable(table)
    console.print(f"evaluating {model_uri} on {table.num_rows:,} real rows")
    report = evaluate(rec, table, num_train=num_train)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2))
    grid = metrics_table(report)
    (out_dir / "metrics.md").write_text(markdown_table(report))
    out.print(grid)
    out.print(f"wrote {out_dir / 'metrics.json'} and {out_dir / 'metrics.md'}")


def _real_table(uri: str, schema_uri: str | None, carried: dict | None):
    """The real log as the model read it: through `schema_uri`, else the model's own schema
    (behaviour labels, dropped columns), else as stored."""
    from synthrec.data.eventlog import load_event_log
    from synthrec.schema import Schema, apply_schema
    from synthrec.storage import read_table

    if schema_uri is not None:
        return load_event_log(uri, schema_uri)[0]
    table = read_table(uri)
    return apply_schema(table, Schema.from_dict(carried), uri) if carried else table


def _rows(report: dict) -> list[list[str]]:
    rows = []
    for name, parts in report["ranking"].items():
        o = parts["overall"]
        segs = [
            f"{parts[s]['ndcg@10']:.4f}" if s in parts else "-"
            for s in ("short_history", "rare_category")
        ]
        auc = report["click_auc"].get(name)
        rows.append(
            [
                name,
                f"{o['ndcg@10']:.4f}",
                f"{o['recall@10']:.4f}",
                f"{o['mrr']:.4f}",
                *segs,
                f"{auc:.4f}" if auc is not None else "-",
            ]
        )
    return rows


HEADER = [
    "model",
    "NDCG@10",
    "Recall@10",
    "MRR",
    "NDCG@10 short-history",
    "NDCG@10 rare-category",
    "click AUC",
]


def metrics_table(report: dict) -> Table:
    grid = Table(title=f"leave-last-out on {report['num_test_users']} users (full ranking)")
    for name in HEADER:
        grid.add_column(name, justify="left" if name == "model" else "right")
    for row in _rows(report):
        grid.add_row(*row)
    return grid


def markdown_table(report: dict) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(report)]
    return "\n".join(lines) + "\n"
