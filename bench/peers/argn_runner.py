"""Fit and sample MOSTLY AI's TabularARGN (`mostlyai-engine`) inside its own venv.

    bench/.venv/argn/bin/python bench/peers/argn_runner.py SPEC.json

Run by bench/peers/tabular_argn.py as a subprocess; it imports nothing of synthrec. SPEC.json
names the mode, the Parquet inputs, the output folder and the parameters:

- flat: `train` (one table) -> `out/sample.parquet` with `rows` rows, plus optional timed
  `draws` (rows, seed, conditions) whose seconds and share meeting the conditions are reported.
- sequential: `users` (one row per user, key `user_col`) and `events` (rows linked to users by
  `user_col`, sorted by `time_col` within each user) -> `out/events.parquet` and
  `out/users.parquet` for `num_users` users. With `context: real` the events are generated
  for real users drawn from `users`; with `context: synthetic` a flat model of `users` is
  trained first (its key not modelled), its synthetic users are the context of the events
  (the engine's two-table recipe), and the users get fresh ids. With `time_relative` (the
  default), `time_col` is encoded as the engine's TABULAR_DATETIME_RELATIVE (each user's first
  time, then the gaps between events; integer times are read as Unix seconds and returned so);
  without it, the engine's default encoding of the column's type.

The engine's own pipeline is used stage by stage (split -> analyze -> encode -> train ->
generate), so each stage is timed. `budget_s` caps the training loops only (the engine's
`max_training_time`, in minutes, checked after every step); the engine's own early stopping
(validation loss on its 20% split: it stops after 5 epochs without a new best) stays on.
With synthetic users, the users model gets at most `users_share` of the budget and the
events model what is left.
Value protection stays on, with rare categories replaced by samples of frequent ones
(`SAMPLE`) instead of the `_RARE_` token, so ids stay real ids. `out/info.json` reports the
seconds of each stage, the epochs and why training stopped, versions and parameters.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

RARE = "SAMPLE"  # RareCategoryReplacementMethod: a frequent value instead of the `_RARE_` token


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


class StepClock:
    """The engine's progress callback: it is called once on entering train(), once per training
    step (after any validation) and once on leaving; this keeps the time of each step call."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.step_times: list[float] = []

    def __call__(self, total=None, completed=None, advance=None, message=None, **_) -> None:
        if (completed, total) not in ((0, 1), (1, 1)):  # not the enter/exit calls
            self.step_times.append(time.perf_counter())


def training_summary(workspace: Path, clock: StepClock, budget_s: float, max_epochs: float):
    """What the training loop used: its seconds and steps from the clock (the engine's own
    progress messages come only at epoch ends, so they miss a loop stopped by time), epochs
    and validation losses from ModelStore/model-data/progress-messages.csv."""
    msgs = pd.read_csv(workspace / "ModelStore" / "model-data" / "progress-messages.csv")
    if "val_loss" not in msgs:  # stopped by time before its first epoch ended: no validation
        msgs["val_loss"] = np.nan
    loop_s = clock.step_times[-1] - clock.start if clock.step_times else 0.0
    steps = len(clock.step_times)
    epoch_ends = msgs[msgs["epoch"] == 1.0]
    epochs = steps / int(epoch_ends["steps"].iloc[0]) if len(epoch_ends) else msgs["epoch"].max()
    checkpoints = msgs[msgs["is_checkpoint"].astype(bool) & msgs["val_loss"].notna()]
    if loop_s >= budget_s:
        stopped_by = "time budget"
    elif epochs >= max_epochs:
        stopped_by = "max epochs"
    else:
        stopped_by = "early stopping (validation loss)"
    batch = int(msgs["samples"].iloc[-1] / msgs["steps"].iloc[-1])
    return {
        "train_loop_s": loop_s,  # from train()'s start: includes its set-up before the loop
        "epochs": round(float(epochs), 3),
        "steps": steps,
        "batch_size": batch,
        "train_samples_per_s": steps * batch / max(loop_s, 1e-9),  # sequences if sequential
        "stopped_by": stopped_by,
        "best_epoch": float(checkpoints["epoch"].iloc[-1]) if len(checkpoints) else None,
        "best_val_loss": float(checkpoints["val_loss"].iloc[-1]) if len(checkpoints) else None,
        "val_losses": msgs["val_loss"].dropna().round(4).tolist(),
    }


def fit(workspace: Path, tgt: pd.DataFrame, budget_s: float, seed: int, **keys) -> dict:
    """split -> analyze -> encode -> train in `workspace`; seconds per stage and the summary."""
    from mostlyai import engine

    engine.set_random_state(seed)
    stages = {}
    _, stages["split_s"] = timed(
        lambda: engine.split(tgt_data=tgt, model_type="TABULAR", workspace_dir=workspace, **keys)
    )
    _, stages["analyze_s"] = timed(
        lambda: engine.analyze(value_protection=True, workspace_dir=workspace)
    )
    _, stages["encode_s"] = timed(lambda: engine.encode(workspace_dir=workspace))
    max_epochs, clock = 100.0, StepClock()  # the engine's default epoch cap
    _, stages["train_s"] = timed(
        lambda: engine.train(
            max_training_time=budget_s / 60,  # minutes
            max_epochs=max_epochs,
            device="cpu",
            workspace_dir=workspace,
            update_progress=clock,
        )
    )
    peak_rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    summary = training_summary(workspace, clock, budget_s, max_epochs)
    # rows (events, if sequential) of the engine's training split passed per second
    stats = json.loads((workspace / "ModelStore" / "tgt-stats" / "stats.json").read_text())
    n_trn, n_val = stats["no_of_training_records"], stats["no_of_validation_records"]
    train_rows = len(tgt) * n_trn / (n_trn + n_val)
    summary["train_rows_per_s"] = (
        summary["epochs"] * train_rows / max(summary["train_loop_s"], 1e-9)
    )
    return {**stages, **summary, "peak_rss_gib": peak_rss_gib}


def generate(workspace: Path, seed: int, **kwargs) -> tuple[pd.DataFrame, float]:
    """One draw from the model in `workspace` (the engine reloads it on each call)."""
    from mostlyai import engine

    def draw():
        engine.set_random_state(seed)
        engine.generate(
            rare_category_replacement_method=RARE, device="cpu", workspace_dir=workspace, **kwargs
        )
        return pd.read_parquet(workspace / "SyntheticData")

    return timed(draw)


def run_flat(spec: dict, work: Path, out: Path) -> dict:
    train = pd.read_parquet(spec["train"])
    ws = work / "flat"
    info = {"fit": fit(ws, train, spec["budget_s"], spec["seed"])}
    sample, sample_s = generate(ws, spec["seed"], sample_size=spec["rows"])
    sample[list(train.columns)].to_parquet(out / "sample.parquet", index=False)
    info["sample"] = {
        "rows": len(sample),
        "seconds": sample_s,
        "rows_per_s": len(sample) / sample_s,
    }
    info["draws"] = []
    for d in spec.get("draws", []):
        conditions = d.get("conditions") or {}
        if conditions:  # the engine's conditional sampling: seed rows fixing those columns
            kwargs = {
                "seed_data": pd.DataFrame({c: [v] * d["rows"] for c, v in conditions.items()})
            }
        else:
            kwargs = {"sample_size": d["rows"]}
        draw, s = generate(ws, d["seed"], **kwargs)
        meets = np.logical_and.reduce([draw[c] == v for c, v in conditions.items()] or [True])
        info["draws"].append(
            {**d, "seconds": s, "rows_per_s": len(draw) / s, "condition_share": float(meets.mean())}
        )
    return info


def fresh_ids(like: pd.Series, n: int) -> pd.Series:
    """n new user ids of the real ids' kind: integers above the largest real one, or strings."""
    if pd.api.types.is_integer_dtype(like):
        return pd.Series(np.arange(n) + int(like.max()) + 1, dtype=like.dtype)
    return pd.Series([f"argn-{i}" for i in range(n)])


def run_sequential(spec: dict, work: Path, out: Path) -> dict:
    users, events = pd.read_parquet(spec["users"]), pd.read_parquet(spec["events"])
    key, time_col, seed, budget_s = (
        spec["user_col"],
        spec["time_col"],
        spec["seed"],
        spec["budget_s"],
    )
    # the engine keeps each sequence in the order given: time order within each user
    events = events.sort_values([key, time_col], kind="stable").reset_index(drop=True)
    encodings = None
    seconds = pd.api.types.is_integer_dtype(events[time_col])
    if spec.get("time_relative", True):
        # the engine's encoding for event times in sequences: each user's first time, then the
        # gaps between consecutive events; it needs datetimes (integer times are Unix seconds)
        if seconds:
            events = events.assign(**{time_col: pd.to_datetime(events[time_col], unit="s")})
        encodings = {time_col: "TABULAR_DATETIME_RELATIVE"}
    num_users = spec.get("num_users") or len(users)
    info, events_budget_s = {}, budget_s
    if spec["context"] == "synthetic":
        ws = work / "users"
        users_budget_s = budget_s * spec.get("users_share", 0.2)
        info["users_fit"] = fit(ws, users, users_budget_s, seed, tgt_primary_key=key)
        events_budget_s = budget_s - info["users_fit"]["train_loop_s"]
        context, s = generate(ws, seed, sample_size=num_users)
        info["users_sample"] = {"rows": len(context), "seconds": s}
        context = context[list(users.columns)]
    else:
        if num_users > len(users):
            raise SystemExit(f"num_users={num_users} > {len(users)} real users (context: real)")
        context = users.sample(n=num_users, random_state=seed) if num_users < len(users) else users
    ws = work / "events"
    info["events_fit"] = fit(
        ws, events, events_budget_s, seed,
        ctx_data=users, ctx_primary_key=key, tgt_context_key=key, tgt_encoding_types=encodings,
    )  # fmt: skip
    synth, s = generate(ws, seed, ctx_data=context.reset_index(drop=True))
    info["events_sample"] = {"rows": len(synth), "seconds": s, "rows_per_s": len(synth) / s}
    if spec["context"] == "synthetic":  # the engine's uuid keys -> fresh ids of the real kind
        ids = dict(zip(context[key], fresh_ids(users[key], len(context))))
        context = context.assign(**{key: context[key].map(ids)})
        synth = synth.assign(**{key: synth[key].map(ids)})
    # the engine writes sequences step by step (all users' first events, then their second ...):
    # a stable sort by user keeps each user's events in the order generated
    synth = synth.sort_values(key, kind="stable")[list(events.columns)].reset_index(drop=True)
    if seconds and not pd.api.types.is_integer_dtype(synth[time_col]):  # back to Unix seconds
        since = pd.to_datetime(synth[time_col]) - pd.Timestamp("1970-01-01")
        synth[time_col] = since.dt.total_seconds().round().astype("Int64")
    t = synth[time_col]
    in_order = t.groupby(synth[key], sort=False).apply(lambda x: x.is_monotonic_increasing)
    info["events_sample"]["share_users_in_time_order"] = float(in_order.mean())
    info["events_sample"]["users_with_events"] = int(synth[key].nunique())
    synth.to_parquet(out / "events.parquet", index=False)
    context.to_parquet(out / "users.parquet", index=False)
    return info


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    out, work = Path(spec["out"]), Path(spec["out"]) / "workspace"
    out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(spec["threads"])
    if spec.get("verbose"):
        from mostlyai.engine import init_logging

        init_logging()
    start = time.perf_counter()
    info = run_flat(spec, work, out) if spec["mode"] == "flat" else run_sequential(spec, work, out)
    info.update(
        total_s=time.perf_counter() - start,
        peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        threads=torch.get_num_threads(),
        versions={p: version(p) for p in ("mostlyai-engine", "torch", "pandas", "numpy")},
        params={k: v for k, v in spec.items() if k not in ("out",)}
        | {"rare_category_replacement_method": RARE, "value_protection": True, "max_epochs": 100},
    )
    (out / "info.json").write_text(json.dumps(info, indent=1, default=str))


if __name__ == "__main__":
    main()
