"""MOSTLY AI's TabularARGN as a peer in synthrec's benchmarks, from the main venv.

    from peers import tabular_argn              # bench/ is on sys.path for bench scripts
    if (reason := tabular_argn.available()) is None:
        synth, info = tabular_argn.flat(train, rows=80_000, budget_s=600, seed=0, threads=1)

The engine lives in its own venv (`bash bench/peers/setup_argn.sh`; path in $ARGN_VENV,
default bench/.venv/argn) and runs in a subprocess, bench/peers/argn_runner.py, which reads
and writes Parquet in a temporary folder. `budget_s` caps the engine's training loops only
(its `max_training_time`); its own early stopping stays on. The returned info says what was
used: seconds per stage (split, analyze, encode, train, generate), epochs, why training
stopped, peak memory of the runner, versions and parameters. Outputs are cast back to the
input's schema, so ids stay strings or integers as given.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "argn_runner.py"
SETUP = HERE / "setup_argn.sh"
VENV = Path(os.environ.get("ARGN_VENV", HERE.parent / ".venv" / "argn"))
PYTHON = VENV / "bin" / "python"
NAME = "TabularARGN (mostlyai-engine)"


class PeerError(RuntimeError):
    """The peer's runner failed; the message carries the tail of its log."""


@functools.cache
def available() -> str | None:
    """None if the engine's venv imports it, else the reason (and how to fix it)."""
    if not PYTHON.exists():
        return f"no venv at {VENV}: run `bash {SETUP.relative_to(HERE.parents[1])}`"
    probe = subprocess.run(
        [str(PYTHON), "-c", "from mostlyai import engine"],
        capture_output=True,
        text=True,
        env=runner_env(1),
        timeout=300,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        return f"mostlyai-engine does not import in {VENV} ({last}): re-run {SETUP.name}"
    return None


def version() -> str | None:
    """The installed mostlyai-engine version, or None."""
    dist = list(VENV.glob("lib/python*/site-packages/mostlyai_engine-*.dist-info"))
    return dist[0].name.removesuffix(".dist-info").split("-")[1] if dist else None


def runner_env(threads: int) -> dict:
    """The runner's environment: no PYTHONPATH (it must not see synthrec's source or our venv's
    packages), BLAS pools capped at `threads`, and no Hugging Face hub calls."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    return env | {"OPENBLAS_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}


def run(spec: dict, inputs: dict[str, pa.Table], timeout_s: float) -> tuple[Path, dict]:
    """Write `inputs` as Parquet, run the runner on `spec` in a temporary folder; returns the
    folder (kept while the caller reads it: see `_outputs`) and the runner's info."""
    if (reason := available()) is not None:
        raise PeerError(f"{NAME} is not available: {reason}")
    tmp = Path(tempfile.mkdtemp(prefix="argn-"))
    for name, table in inputs.items():
        pq.write_table(table, tmp / f"{name}.parquet")
        spec[name] = str(tmp / f"{name}.parquet")
    spec["out"] = str(tmp / "out")
    (tmp / "spec.json").write_text(json.dumps(spec))
    log = tmp / "runner.log"
    with log.open("w") as f:
        try:
            proc = subprocess.run(
                [str(PYTHON), str(RUNNER), str(tmp / "spec.json")],
                stdout=f,
                stderr=subprocess.STDOUT,
                env=runner_env(spec["threads"]),
                timeout=timeout_s,
            )
            failed = f"exit status {proc.returncode}" if proc.returncode else None
        except subprocess.TimeoutExpired:
            failed = f"no result after {timeout_s:.0f} s"
    if failed:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise PeerError(f"{NAME} runner failed ({failed}); log {log}, its end:\n{tail}")
    return tmp / "out", json.loads((tmp / "out" / "info.json").read_text())


def cast_like(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table`'s columns in `schema`'s order and types; floats bound for an integer column are
    rounded first (the engine may hand integers back as floats)."""
    columns = []
    for field in schema:
        col = table.column(field.name)
        if pa.types.is_integer(field.type) and pa.types.is_floating(col.type):
            col = pc.round(col)
        columns.append(col.cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _outputs(out: Path, *names: str) -> list[pa.Table]:
    tables = [pq.read_table(out / f"{n}.parquet").replace_schema_metadata(None) for n in names]
    shutil.rmtree(out.parent, ignore_errors=True)  # the temporary folder, workspaces included
    return tables


def _timeout(budget_s: float) -> float:
    # the budget caps training loops only: encoding and sampling come on top (minutes on 2 cores)
    return 3 * budget_s + 1800


def flat(
    train: pa.Table,
    rows: int,
    budget_s: float,
    seed: int = 0,
    threads: int = 1,
    draws: list[dict] | None = None,
) -> tuple[pa.Table, dict]:
    """Fit TabularARGN on `train` (one table) for at most `budget_s` seconds of training loop,
    sample `rows` rows. `draws`: extra timed samples, each {"rows", "seed", "conditions"?:
    {column: value}}; their seconds and share meeting the conditions come back in
    info["draws"]."""
    spec = {"mode": "flat", "rows": rows, "budget_s": budget_s, "seed": seed, "threads": threads}
    out, info = run(spec | {"draws": draws or []}, {"train": train}, _timeout(budget_s))
    (sample,) = _outputs(out, "sample")
    return cast_like(sample, train.schema), info


def sequential(
    events: pa.Table,
    users: pa.Table,
    user_col: str,
    time_col: str,
    num_users: int | None,
    budget_s: float,
    seed: int = 0,
    threads: int = 1,
    context: Literal["real", "synthetic"] = "real",
    users_share: float = 0.2,
    time_relative: bool = True,
) -> tuple[pa.Table, pa.Table, dict]:
    """Fit TabularARGN's sequential model of each user's events (in `time_col` order) with the
    users table as context, and generate `num_users` users with their events (None: as many as
    `users` has). context="real": the events of real users drawn from `users`; "synthetic":
    a flat model of `users` (trained first, at most `users_share` of the budget; the events
    model gets the rest) makes the users, with fresh ids. Returns (events, users, info); the
    events come in the order generated within each user (info["events_sample"] says the share
    of users whose `time_col` is in order). time_relative: `time_col` as the engine's encoding
    for event times in sequences (first time, then gaps; integer times are Unix seconds),
    else the engine's default for its type."""
    if context not in ("real", "synthetic"):
        raise ValueError(f"context={context!r}: use 'real' or 'synthetic'")
    for name, table in (("events", events), ("users", users)):
        if user_col not in table.column_names:
            raise ValueError(f"{name} has no column {user_col!r}: {table.column_names}")
    if time_col not in events.column_names:
        raise ValueError(f"events has no column {time_col!r}: {events.column_names}")
    spec = {
        "mode": "sequential",
        "user_col": user_col,
        "time_col": time_col,
        "num_users": num_users,
        "context": context,
        "users_share": users_share,
        "time_relative": time_relative,
        "budget_s": budget_s,
        "seed": seed,
        "threads": threads,
    }
    out, info = run(spec, {"events": events, "users": users}, _timeout(budget_s))
    synth_events, synth_users = _outputs(out, "events", "users")
    return cast_like(synth_events, events.schema), cast_like(synth_users, users.schema), info


if __name__ == "__main__":  # `python bench/peers/tabular_argn.py`: is the peer ready?
    reason = available()
    print(f"{NAME} {version()}: " + ("ready" if reason is None else f"unavailable: {reason}"))
    sys.exit(reason is not None)
