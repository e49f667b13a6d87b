"""`synthrec data ...`: simulate, validate and describe datasets."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from synthrec.cli.app import config_from_flags, data_app, old_flag, out, progress_bar, renamed
from synthrec.config import SimulateConfig


@data_app.command("simulate")
def simulate(
    rows: int = typer.Option(None, "--rows", help="Exact number of rows (impressions) to publish."),
    out_uri: str = typer.Option(None, "--out-uri", help="Local folder or s3://bucket/prefix."),
    seed: int = typer.Option(None, "--seed", help="Same seed and rows give the same data."),
    config: Path = typer.Option(None, "--config", help="YAML with SimulateConfig keys; flags win."),
    num_users: int = typer.Option(None, "--num-users"),
    num_items: int = typer.Option(None, "--num-items"),
    num_categories: int = typer.Option(None, "--num-categories"),
    num_brands: int = typer.Option(None, "--num-brands"),
    num_queries: int = typer.Option(None, "--num-queries"),
    rows_per_file: int = typer.Option(None, "--rows-per-file"),
    out_old: str | None = old_flag("--out"),
) -> None:
    """Generate a SIMULATED e-commerce search log and publish it atomically (with a manifest)."""
    from synthrec.data.simulator import run_simulate

    cfg = config_from_flags(
        SimulateConfig,
        config,
        {
            "rows": rows,
            "out_uri": renamed(out_uri, out_old, "--out-uri", "--out"),
            "seed": seed,
            "num_users": num_users,
            "num_items": num_items,
            "num_categories": num_categories,
            "num_brands": num_brands,
            "num_queries": num_queries,
            "rows_per_file": rows_per_file,
        },
    )
    start = time.monotonic()
    with progress_bar("simulating", total=cfg.rows) as update:
        manifest = run_simulate(cfg, progress=update)
    seconds = time.monotonic() - start
    size_mb = sum(f.bytes for f in manifest.files) / 1e6
    out.print(
        f"published {manifest.num_rows:,} rows of simulated data to {cfg.out_uri} "
        f"({len(manifest.files)} file(s), {size_mb:,.1f} MB, seed {cfg.seed}) "
        f"in {seconds:,.1f} s ({manifest.num_rows / max(seconds, 1e-9):,.0f} rows/s)",
        highlight=False,
        soft_wrap=True,
    )


@data_app.command("validate")
def validate(
    data_uri: str | None = typer.Option(
        None,
        "--data-uri",
        help="A .parquet, .csv(.gz) or RecBole .inter file or dataset folder, local or s3://. "
        "(required)",
    ),
    schema_uri: str | None = typer.Option(
        None, "--schema-uri", help="YAML: columns: {name: {role: ...}}; else inferred."
    ),
    write_schema_uri: str | None = typer.Option(
        None,
        "--write-schema",
        help="Also write the schema to this YAML (local or s3://): a start for --schema-uri.",
    ),
    data: str | None = old_flag("--data"),
    schema_old: str | None = old_flag("--schema"),
) -> None:
    """Check a dataset against a schema (or infer one) and print the column roles."""
    from synthrec.data.eventlog import load_event_log, manifest_schema, write_schema

    data = renamed(data_uri, data, "--data-uri", "--data", required=True)
    schema = renamed(schema_uri, schema_old, "--schema-uri", "--schema")

    table, result = load_event_log(data, schema)
    source = (
        f"from {schema}"
        if schema
        else ("from the manifest" if manifest_schema(data) else "inferred")
    )
    grid = Table(title=f"schema ({source})", title_justify="left")
    for name in ("column", "role", "kind", "nullable"):
        grid.add_column(name)
    for spec in result.columns:
        grid.add_row(spec.name, spec.role.value, spec.kind.value, "yes" if spec.nullable else "no")
    out.print(grid)
    out.print(f"valid: {table.num_rows:,} rows, {table.num_columns} columns", highlight=False)
    if write_schema_uri:
        write_schema(result, write_schema_uri, source=data)
        out.print(f"wrote the schema to {write_schema_uri}", highlight=False, soft_wrap=True)


@data_app.command("import")
def import_data(
    out_uri: str = typer.Option(..., "--out-uri", help="Dataset folder to publish (or s3://)."),
    events_uri: str | None = typer.Option(
        None, "--events-uri", help="Events table (.parquet, .csv(.gz), dataset folder)."
    ),
    users_uri: str | None = typer.Option(
        None, "--users-uri", help="Users table joined on --user-key."
    ),
    items_uri: str | None = typer.Option(
        None, "--items-uri", help="Items table joined on --item-key."
    ),
    recbole_uri: str | None = typer.Option(
        None, "--recbole-uri", help="RecBole atomic folder: <name>.inter (+ .user, .item)."
    ),
    recbole_name: str | None = typer.Option(
        None, "--recbole-name", help="Dataset name inside the folder (default: its name)."
    ),
    user_key: str = typer.Option("user_id", "--user-key", help="Key of the users table."),
    item_key: str = typer.Option("item_id", "--item-key", help="Key of the items table."),
    schema_uri: str | None = typer.Option(
        None, "--schema-uri", help="Schema YAML applied to the joined log; else inferred."
    ),
) -> None:
    """Join a RecBole folder or events + users + items tables into one published event log,
    with its schema in the manifest."""
    from synthrec.data.importing import run_import

    if (recbole_uri is None) == (events_uri is None):
        raise typer.BadParameter(
            "give --events-uri (with --users-uri / --items-uri) or --recbole-uri",
            param_hint="--events-uri",
        )
    done = run_import(
        out_uri,
        events_uri=events_uri,
        users_uri=users_uri,
        items_uri=items_uri,
        recbole_uri=recbole_uri,
        recbole_name=recbole_name,
        user_key=user_key,
        item_key=item_key,
        schema_uri=schema_uri,
    )
    roles = ", ".join(f"{c.name} ({c.role.value})" for c in done.schema.columns)
    out.print(
        f"published {done.num_rows:,} rows to {done.out_uri}: {roles}",
        highlight=False,
        soft_wrap=True,
    )


@data_app.command("describe")
def describe(
    uri: str = typer.Argument(
        ..., help="A .parquet, .csv(.gz) or RecBole .inter file or dataset folder, local or s3://."
    ),
    schema_uri: str | None = typer.Option(
        None, "--schema-uri", help="schema YAML: its roles, ignored columns, behaviour labels"
    ),
) -> None:
    """Rows, columns, roles, nulls and cardinality; manifest details for a published dataset."""
    from synthrec.data.eventlog import describe as describe_data

    info = describe_data(uri, schema_uri=schema_uri)
    if info.manifest is not None:
        m = info.manifest
        made = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(m.created_at))
        out.print(
            f"published dataset {uri}: run {m.run_id}, {len(m.files)} file(s), "
            f"{sum(f.bytes for f in m.files) / 1e6:,.1f} MB, written {made}",
            highlight=False,
        )
        if "description" in m.metadata:
            out.print(m.metadata["description"], highlight=False)
    out.print(f"{info.num_rows:,} rows, {len(info.columns)} columns", highlight=False)
    grid = Table()
    for name in ("column", "type", "role", "nulls", "distinct", "min", "max"):
        grid.add_column(name, justify="right" if name in ("nulls", "distinct") else "left")
    for c in info.columns:
        grid.add_row(
            c.name, c.type, c.role, f"{c.nulls:,}", f"{c.distinct:,}", c.low[:30], c.high[:30]
        )
    out.print(grid)
