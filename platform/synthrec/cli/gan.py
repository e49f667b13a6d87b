"""`synthrec train-gan` and `synthrec generate`."""

from __future__ import annotations

from enum import Enum
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
    parse_pairs,
    progress_bar,
    renamed,
)
from synthrec.config import GenerateConfig, TrainGanConfig


class Generator(str, Enum):
    auto = "auto"
    rows = "rows"
    sequences = "sequences"


@app.command("train-gan")
def train_gan(
    data_uri: str | None = typer.Option(
        None,
        "--data-uri",
        help="training table: .parquet, .csv(.gz) or .inter file or dataset folder (local or s3://)"
        + REQUIRED,
    ),
    out_uri: str | None = typer.Option(
        None, "--out-uri", help="model directory URI to publish" + REQUIRED
    ),
    schema_uri: str | None = typer.Option(
        None, "--schema-uri", help="schema YAML overriding inferred column roles"
    ),
    data: str | None = old_flag("--data"),
    out_old: str | None = old_flag("--out"),
    schema: str | None = old_flag("--schema"),
    config: Path | None = typer.Option(None, "--config", help="YAML with TrainGanConfig keys"),
    num_workers: int | None = typer.Option(None, "--num-workers", help="Ray Train workers"),
    gpu: bool | None = typer.Option(None, "--gpu/--cpu", help="one GPU per worker"),
    epochs: int | None = typer.Option(None, "--epochs"),
    time_budget: float | None = typer.Option(
        None, "--time-budget", help="minutes; stops at the first epoch past it"
    ),
    resume: bool = typer.Option(
        False, "--resume", help="continue the run named by --run-name from its last checkpoint"
    ),
    run_name: str | None = typer.Option(None, "--run-name"),
    checkpoint_uri: str | None = typer.Option(
        None, "--checkpoint-uri", help="where runs and checkpoints go (default <out-uri>-runs)"
    ),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster address (default: local Ray)"
    ),
    epsilon: float | None = typer.Option(
        None,
        "--epsilon",
        help="train the row GAN with differential privacy (DP-SGD) within this ε; training "
        "stops when it is spent (gan.privacy in a --config sets the rest)",
    ),
    delta: float | None = typer.Option(
        None, "--delta", help="δ of --epsilon; default 1/n^1.1 for n training rows"
    ),
    generator: Generator | None = typer.Option(
        None,
        "--generator",
        help="rows: the row GAN; sequences: users, catalog and each user's events (needs user, "
        "item and time columns); auto (default): sequences when the log has them",
    ),
) -> None:
    """Train a generator on Ray Train (CPU or GPU workers) and publish the model: the sequence
    generator when the log has user, item and time columns, else the conditional row GAN."""
    from synthrec.distributed.train_generator import resolve_generator, run_train_generator

    cfg = config_from_flags(
        TrainGanConfig,
        config,
        {
            "data_uri": renamed(data_uri, data, "--data-uri", "--data"),
            "out_uri": renamed(out_uri, out_old, "--out-uri", "--out"),
            "schema_uri": renamed(schema_uri, schema, "--schema-uri", "--schema"),
            "scaling.num_workers": num_workers,
            "scaling.use_gpu": gpu,
            "epochs": epochs,
            "time_budget_min": time_budget,
            "run.resume": resume or None,
            "run.run_name": run_name,
            "run.checkpoint_uri": checkpoint_uri,
            "ray_address": address,
            "generator": generator.value if generator else None,
            "gan.privacy.epsilon": epsilon,
            "gan.privacy.delta": delta,
        },
    )
    choice = resolve_generator(cfg)  # a log that cannot give sequences fails here, alone
    console.print(f"generator: {choice.generator} ({choice.why})", highlight=False)
    total = cfg.epochs if cfg.time_budget_min is None else None
    with progress_bar("training", total, unit="epochs") as update:

        def show(m: dict) -> None:
            if m.get("phase") == "users":  # the users-table GAN, before the sequence epochs
                return
            if "phase" in m:
                loss = m.get("nll", m.get("mle", float("nan")))
                update(m["epoch"], phase=m["phase"], nll=f"{loss:.3f}", valid=m.get("valid_nll"))
                return
            if "epsilon_spent" in m:
                gen_loss = m.get("generator_loss", float("nan"))
                update(m["epoch"], epsilon=f"{m['epsilon_spent']:.3f}", gen=f"{gen_loss:.3f}")
                return
            update(
                m["epoch"],
                rate=f"{m.get('rows_per_s', 0):,.0f} rows/s",
                critic=f"{m.get('critic_loss', float('nan')):.3f}",
                gen=f"{m.get('generator_loss', float('nan')):.3f}",
                fidelity=f"{m.get('fidelity', float('nan')):.3f}",
            )

        summary = run_train_generator(cfg, progress=show, choice=choice)
    out.print(
        f"published {summary['generator']} model [bold]{summary['model_uri']}[/bold] "
        f"after {summary['epochs']} epochs "
        f"in {summary['seconds']:.0f} s (run {summary['run_name']}, "
        f"checkpoints {summary['checkpoints']})"
    )
    if "epsilon_spent" in summary["last"]:
        out.print(f"differential privacy: ε = {summary['last']['epsilon_spent']:.3f} spent")


@app.command("generate")
def generate(
    model_uri: str | None = typer.Option(
        None, "--model-uri", help="model directory URI" + REQUIRED
    ),
    rows: int | None = typer.Option(None, "--rows", help="exact number of rows (row models)"),
    users: int | None = typer.Option(
        None,
        "--users",
        help="exact number of users, each with all their events (sequence models)",
    ),
    out_uri: str | None = typer.Option(None, "--out-uri", help="dataset URI to publish" + REQUIRED),
    model: str | None = old_flag("--model"),
    out_old: str | None = old_flag("--out"),
    condition: list[str] | None = typer.Option(
        None, "--condition", help="col=value; repeatable; exact on every row"
    ),
    rebalance: list[str] | None = typer.Option(
        None, "--rebalance", help="col[:uniform|v1=p1,v2=p2]"
    ),
    seed: int | None = typer.Option(None, "--seed"),
    rows_per_file: int | None = typer.Option(None, "--rows-per-file"),
    users_per_file: int | None = typer.Option(
        None, "--users-per-file", help="users per file (sequence models; at most 4,096)"
    ),
    concurrency: int | None = typer.Option(None, "--concurrency", help="generator actors"),
    gpu: bool | None = typer.Option(None, "--gpu/--cpu"),
    config: Path | None = typer.Option(None, "--config", help="YAML with GenerateConfig keys"),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster address (default: local Ray)"
    ),
) -> None:
    """Generate exactly N synthetic rows (row model: --rows) or N users with all their events
    (sequence model: --users; one row per event) with Ray Data; publish them atomically as
    Parquet."""
    from synthrec.distributed.generate import run_generate

    cfg = config_from_flags(
        GenerateConfig,
        config,
        {
            "model_uri": renamed(model_uri, model, "--model-uri", "--model"),
            "rows": rows,
            "users": users,
            "out_uri": renamed(out_uri, out_old, "--out-uri", "--out"),
            "seed": seed,
            "rows_per_file": rows_per_file,
            "users_per_file": users_per_file,
            "concurrency": concurrency,
            "gpu": gpu,
            "ray_address": address,
            "conditions": parse_pairs(condition, "--condition") or None,
            "rebalance": _parse_rebalance(rebalance) or None,
        },
    )
    with progress_bar("generating", cfg.count, unit=cfg.unit) as update:
        summary = run_generate(cfg, progress=update)
    table = Table(title="published synthetic dataset", show_header=False)
    counts = [("users", f"{summary.users:,}")] if summary.users is not None else []
    for key, value in (
        ("uri", summary.uri),
        *counts,
        ("rows", f"{summary.rows:,}"),
        ("files", summary.files),
        ("bytes", f"{summary.bytes:,}"),
        ("rows/s", f"{summary.rows_per_s:,.0f}"),
        (
            "actor start",
            "-" if summary.startup_s is None else f"{summary.startup_s:.1f} s",
        ),
        ("blocks reused", summary.reused_blocks),
    ):
        table.add_row(key, str(value))
    out.print(table)


def _parse_rebalance(values: list[str] | None) -> dict:
    """`genre` or `genre:uniform` -> uniform; `genre:Drama=0.5,Comedy=0.5` -> explicit
    probabilities."""
    result: dict = {}
    for item in values or []:
        column, _, dist = item.partition(":")
        if not column:
            raise typer.BadParameter(
                f"expected col[:distribution], got {item!r}", param_hint="--rebalance"
            )
        if not dist or dist == "uniform":
            result[column] = "uniform"
            continue
        probs = {}
        for pair in dist.split(","):
            value, sep, p = pair.partition("=")
            try:
                probs[value] = float(p)
            except ValueError:
                raise typer.BadParameter(
                    f"probability for {value!r} in {item!r} is not a number",
                    param_hint="--rebalance",
                ) from None
            if not sep:
                raise typer.BadParameter(
                    f"expected value=probability in {item!r}", param_hint="--rebalance"
                )
        result[column] = probs
    return result
