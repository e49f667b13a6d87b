"""Smoke check of the TabularARGN peer on ML-100K with short budgets (minutes, not a benchmark).

    .venv/bin/python bench/peers/smoke_argn.py [--budget-s 60] [--modes flat,real,synthetic]

flat: 2,000 rows from the first 80,000 events. real / synthetic: a users table (user_id, age,
gender, occupation, zip_region) and each user's events (user_id, item_id, genre, rating,
timestamp) in time order, 100 users generated with the real users as context or with
synthetic ones. Checks that the output has the input's columns and types, that ids are real
item ids (never `_RARE_`) and, for synthetic users, fresh user ids; prints what was used.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for `peers`

from peers import tabular_argn  # noqa: E402

EVENTS = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "ml-100k" / "events.parquet"
USER_COLUMNS = ["user_id", "age", "gender", "occupation", "zip_region"]
EVENT_COLUMNS = ["user_id", "item_id", "genre", "rating", "timestamp"]


def check(name: str, synth: pa.Table, real: pa.Table) -> None:
    assert synth.schema == real.schema, f"{name}: schema {synth.schema} != {real.schema}"
    if "item_id" in real.column_names:
        items = synth.column("item_id")
        unknown = pc.sum(pc.invert(pc.is_in(items, real.column("item_id")))).as_py() or 0
        assert unknown == 0, f"{name}: {unknown} item ids not in the real data (e.g. _RARE_)"


def summary(name: str, rows: int, info: dict, seconds: float) -> None:
    fits = {k: v for k, v in info.items() if k.endswith("fit")}
    samples = {k: v for k, v in info.items() if k.endswith("sample")}
    print(f"\n## {name}: {rows:,} rows in {seconds:.0f} s wall")
    for k, f in fits.items():
        stages = ", ".join(f"{s} {f[s]:.1f}" for s in ("split_s", "analyze_s", "encode_s"))
        print(
            f"  {k}: {stages}, train loop {f['train_loop_s']:.1f} s, {f['epochs']} epochs, "
            f"{f['train_rows_per_s']:,.0f} rows/s, stopped by {f['stopped_by']}, "
            f"val losses {f['val_losses']}"
        )
    for k, s in samples.items():
        print(f"  {k}: {json.dumps({a: round(b, 3) for a, b in s.items()})}")
    print(f"  peak RSS {info['peak_rss_gib']:.2f} GiB, threads {info['threads']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget-s", type=float, default=60)
    ap.add_argument("--modes", default="flat,real,synthetic")
    ap.add_argument("--users", type=int, default=100, help="users generated (sequential modes)")
    args = ap.parse_args()
    if (reason := tabular_argn.available()) is not None:
        sys.exit(f"skipped: {reason}")
    log = pq.read_table(EVENTS).replace_schema_metadata(None)
    for mode in args.modes.split(","):
        start = time.perf_counter()
        if mode == "flat":
            train = log.slice(0, 80_000)
            synth, info = tabular_argn.flat(train, rows=2_000, budget_s=args.budget_s)
            check("flat", synth, train)
            assert synth.num_rows == 2_000
            summary("flat", synth.num_rows, info, time.perf_counter() - start)
            continue
        users_df = log.select(USER_COLUMNS).to_pandas().drop_duplicates("user_id")
        users = pa.Table.from_pandas(users_df, preserve_index=False).cast(
            log.select(USER_COLUMNS).schema
        )
        events = log.select(EVENT_COLUMNS)
        synth_events, synth_users, info = tabular_argn.sequential(
            events, users, "user_id", "timestamp", args.users, args.budget_s, context=mode
        )
        check(f"{mode} events", synth_events, events)
        check(f"{mode} users", synth_users, users)
        assert synth_users.num_rows == args.users
        assert set(synth_events.column("user_id").to_pylist()) <= set(
            synth_users.column("user_id").to_pylist()
        ), "events of users not in the users table"
        real_ids = set(users.column("user_id").to_pylist())
        shared = real_ids & set(synth_users.column("user_id").to_pylist())
        if mode == "synthetic":
            assert not shared, f"synthetic users reuse real ids: {sorted(shared)[:5]}"
        else:
            assert len(shared) == args.users
        summary(
            f"sequential, {mode} users", synth_events.num_rows, info, time.perf_counter() - start
        )
        print(f"  first rows: {synth_events.slice(0, 3).to_pylist()}")
    print("\nsmoke checks passed")


if __name__ == "__main__":
    main()
