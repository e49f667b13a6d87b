"""Sequence metrics of event logs: fidelity per user, shared runs, copies, membership attack."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from logshapes import search_log, search_schema, taobao_log

from synthrec.config import EvaluateConfig
from synthrec.errors import ConfigError, DataError
from synthrec.evaluate.sequences import sequence_metrics, sequence_section, transition_distance
from synthrec.schema import infer_schema

START_S = 1_700_000_000
COLS = {"user_col": "user", "item_col": "item", "time_col": "ts"}


def log(seqs: dict, gap_s: int = 60, start: int = START_S) -> pa.Table:
    """One row per event: user -> its items in order, `gap_s` seconds apart, rows shuffled
    so the metrics must order them by time themselves."""
    users = [u for u, items in seqs.items() for _ in items]
    items = [i for seq in seqs.values() for i in seq]
    ts = [start + gap_s * k for seq in seqs.values() for k in range(len(seq))]
    order = np.random.default_rng(0).permutation(len(items))
    return pa.table(
        {
            "user": pa.array(users).take(order),
            "item": pa.array(items).take(order),
            "ts": pa.array(ts, pa.int64()).take(order),
        }
    )


def random_seqs(num_users: int, seed: int, prefix: str = "u") -> dict:
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, 301)
    return {
        f"{prefix}{u}": list(rng.choice(300, rng.integers(5, 30), p=weights / weights.sum()))
        for u in range(num_users)
    }


def brute_longest_run(seq: list, others: list[list]) -> int:
    """Longest common run of consecutive items of `seq` with any of `others` (DP)."""
    best = 0
    for other in others:
        prev = [0] * (len(other) + 1)
        for a in seq:
            cur = [0] * (len(other) + 1)
            for j, b in enumerate(other):
                if a == b:
                    cur[j + 1] = prev[j] + 1
                    best = max(best, cur[j + 1])
            prev = cur
    return best


def test_sequence_identical_logs_score_perfectly():
    real = log(random_seqs(40, 0))
    m = sequence_metrics(real, real, **COLS)
    for key in ("events_per_user", "inter_event_seconds", "session_lengths"):
        assert m[key]["ks_complement"] == 1.0, key
    assert m["item_popularity"]["tv_distance"] == 0.0
    assert m["transitions"]["pair_share_in_real"] == 1.0
    assert m["transitions"]["matrix_distance"] == 0.0
    assert m["repeat_rate"]["real"] == m["repeat_rate"]["synthetic"]
    assert m["privacy"]["exact_copies"]["synthetic"] == 1.0
    json.dumps(m, allow_nan=False)


def test_sequence_shuffled_order_loses_transitions_but_keeps_popularity():
    seqs = random_seqs(60, 1)
    rng = np.random.default_rng(2)
    shuffled = {u: list(rng.permutation(items)) for u, items in seqs.items()}
    m = sequence_metrics(log(seqs), log(shuffled), **COLS)
    assert m["item_popularity"]["tv_distance"] == pytest.approx(0.0)
    assert m["events_per_user"]["ks_complement"] == 1.0
    assert m["repeat_rate"]["synthetic"] == pytest.approx(m["repeat_rate"]["real"])
    assert m["transitions"]["pair_share_in_real"] < 0.6
    assert m["transitions"]["matrix_distance"] > 0.3


def test_sequence_copy_of_a_training_user_is_an_exact_copy_with_a_full_shared_run():
    seqs = random_seqs(30, 3)
    copied = seqs["u7"]
    synthetic = {"s0": copied, **random_seqs(9, 4, prefix="r")}
    synthetic["s1"] = [999, 998] + seqs["u2"][:7] + [997]  # a run of 7 inside new items
    m = sequence_metrics(log(seqs), log(synthetic), **COLS)
    runs = m["privacy"]["longest_shared_run"]
    assert m["privacy"]["exact_copies"]["synthetic"] == pytest.approx(1 / 11)
    assert runs["synthetic"]["max"] == len(copied)
    assert runs["histogram"]["synthetic"][7] == 1  # s1: exactly its embedded run
    assert runs["synthetic"]["share_at_least_5"] == pytest.approx(2 / 11)


def test_sequence_shared_runs_equal_a_brute_force_search():
    rng = np.random.default_rng(5)
    train = {f"t{u}": list(rng.integers(0, 4, rng.integers(1, 15))) for u in range(25)}
    synthetic = {f"s{u}": list(rng.integers(0, 4, rng.integers(1, 15))) for u in range(25)}
    m = sequence_metrics(log(train), log(synthetic), **COLS)
    want = [brute_longest_run(seq, list(train.values())) for seq in synthetic.values()]
    runs = m["privacy"]["longest_shared_run"]
    hist = np.asarray(runs["histogram"]["synthetic"])
    assert hist.tolist() == np.bincount(want, minlength=len(hist)).tolist()
    assert runs["synthetic"]["max"] == max(want)


def test_sequence_membership_attack_finds_copies_and_not_independent_users():
    members, outsiders = random_seqs(120, 6, "m"), random_seqs(120, 7, "h")
    copies = {f"s{k}": seq for k, seq in enumerate(members.values())}
    leak = sequence_metrics(log(members), log(copies), holdout=log(outsiders), **COLS)
    assert leak["privacy"]["membership_auc"] > 0.95
    assert leak["privacy"]["auc_run"] > 0.95
    assert leak["privacy"]["exact_copies"] == {"synthetic": 1.0, "holdout": 0.0}
    fresh = log(random_seqs(120, 8, "s"))
    private = sequence_metrics(log(members), fresh, holdout=log(outsiders), **COLS)
    assert abs(private["privacy"]["auc_run"] - 0.5) < 0.1
    assert abs(private["privacy"]["auc_jaccard"] - 0.5) < 0.1
    assert private["transitions"]["holdout_pair_share_in_real"] is not None


def test_sequence_string_and_int_ids_and_ms_or_arrow_times_give_the_same_metrics():
    seqs = {u: [int(i) for i in items] for u, items in random_seqs(30, 9).items()}
    numbered = {int(u[1:]): items for u, items in seqs.items()}
    base = sequence_metrics(log(seqs), log(random_seqs(20, 10)), **COLS)
    base.pop("histograms")
    as_int = log(numbered)
    as_str = as_int.set_column(1, "item", pa.array([f"i{i}" for i in as_int.column("item")]))
    as_ms = as_int.set_column(2, "ts", pa.compute.multiply(as_int.column("ts"), 1_000))
    as_arrow = as_int.set_column(2, "ts", as_int.column("ts").cast(pa.timestamp("s")))
    iso = pa.compute.strftime(as_arrow.column("ts"), format="%Y-%m-%dT%H:%M:%S")
    as_iso = as_int.set_column(2, "ts", iso)
    syn = log({int(u[1:]): [int(i) for i in s] for u, s in random_seqs(20, 10).items()})
    syn_str = syn.set_column(1, "item", pa.array([f"i{i}" for i in syn.column("item")]))
    for real, synthetic in (
        (as_int, syn),
        (as_str, syn_str),
        (as_ms, syn),
        (as_arrow, syn),
        (as_iso, syn),
    ):
        m = sequence_metrics(real, synthetic, **COLS)
        m.pop("histograms")
        assert m == base


def test_sequence_single_event_users_and_gap_cut_sessions():
    real = pa.table(
        {
            "user": ["a", "a", "a", "b", "c", "c"],
            "item": [1, 2, 1, 3, 4, 4],
            "ts": pa.array([0, 60, 4_000, 10, 5, 5], pa.timestamp("s")),
        }
    )
    m = sequence_metrics(real, real, **COLS)
    assert m["events_per_user"]["real"]["p50"] == 2.0  # lengths 3, 1, 2
    assert m["session_lengths"]["real"]["count"] == 4  # a: [2, 1] (gap > 30 min), b, c
    assert m["inter_event_seconds"]["real"]["count"] == 3  # b has no gap
    assert m["repeat_rate"]["real"] == pytest.approx(2 / 6)  # a's second 1, c's second 4


def test_sequence_session_column_counts_events_per_session():
    real = pa.table(
        {
            "user": [1, 1, 1, 2, 2],
            "item": [1, 2, 3, 1, 2],
            "ts": [START_S, START_S + 5, START_S + 9, START_S, START_S + 1],
            "session_id": ["x", "x", "y", "x", "x"],
        }
    )
    m = sequence_metrics(real, real, session_col="session_id", **COLS)
    assert m["session_lengths"]["real"]["count"] == 3  # (1, x), (1, y), (2, x)
    assert m["session_lengths"]["real"]["max"] == 2.0


def test_sequence_transition_distance_by_hand():
    n = 10  # keys: previous * n + next
    real = np.array([1 * n + 2, 1 * n + 2, 1 * n + 3, 4 * n + 5])  # 1 -> {2: 2/3, 3: 1/3}
    other = np.array([1 * n + 2, 1 * n + 3])  # 1 -> {2: 1/2, 3: 1/2}; 4 never left
    # source 1 (weight 3/4): TV 1/6; source 4 (weight 1/4): 1
    assert transition_distance(real, other, n) == pytest.approx(0.75 / 6 + 0.25)
    assert transition_distance(real, real, n) == 0.0


def test_sequence_holdout_of_the_same_users_is_left_out_with_a_note():
    real = log(random_seqs(20, 11))
    m = sequence_metrics(real, real, holdout=log(random_seqs(20, 12)), **COLS)
    assert "20 of 20 holdout users also occur" in m["note"]
    assert m["privacy"]["longest_shared_run"]["holdout"] is None
    assert m["privacy"]["membership_auc"] is None
    few = {**random_seqs(20, 12), **random_seqs(3, 13, "h")}  # 3 new people only
    m = sequence_metrics(real, real, holdout=log(few), **COLS)
    assert "3 held-out users are too few" in m["note"]
    assert m["privacy"]["membership_auc"] is None  # not an AUC over 3 users
    empty = sequence_metrics(real, real, holdout=real.slice(0, 0), **COLS)
    assert "no events" in empty["note"] and empty["transitions"]["holdout_matrix_distance"] is None


def test_sequence_categories_of_a_taobao_log():
    real, syn = taobao_log(2_000, seed=0), taobao_log(2_000, seed=1)
    cols = {"user_col": "user_id", "item_col": "item_id", "time_col": "timestamp"}
    m = sequence_metrics(real, syn, category_col="category_id", **cols)
    entropy = m["category_entropy"]
    assert 0 < entropy["ks_complement"] <= 1 and entropy["real"]["max"] > 0
    assert m["histograms"]["category_entropy"]["edges"]


def test_sequence_section_reads_roles_and_explains_when_it_cannot_run():
    real, syn = (timed(search_log(1_200, seed=s)) for s in (0, 1))
    schema = search_schema(real)
    m = sequence_section(real, syn, None, schema, EvaluateConfig())
    assert m["columns"] == {
        "user": "uid",
        "item": "sku",
        "time": "ts",
        "session": None,
        "category": "cat",
    }
    off = sequence_section(real, real, None, schema, EvaluateConfig(sequences=False))
    assert "turned off" in off["note"]
    no_time = real.drop_columns(["ts"])
    reason = sequence_section(no_time, no_time, None, search_schema(no_time), EvaluateConfig())
    assert "need a user id, an item id and a time column" in reason["note"]
    with pytest.raises(ConfigError, match="sequence_session_column 'visit'"):
        sequence_section(real, real, None, schema, EvaluateConfig(sequence_session_column="visit"))


def timed(table: pa.Table) -> pa.Table:
    """The search log with its ISO text times as an Arrow timestamp column."""
    ts = pa.compute.cast(table.column("ts"), pa.timestamp("s", tz="UTC"))
    return table.set_column(table.column_names.index("ts"), "ts", ts)


def test_sequence_missing_column_fails_clearly():
    real = log(random_seqs(5, 13))
    with pytest.raises(DataError, match="synthetic table lacks column"):
        sequence_metrics(real, real.drop_columns(["ts"]), **COLS)
    nulls = real.set_column(1, "item", pa.nulls(real.num_rows, pa.int64()))
    with pytest.raises(DataError, match="synthetic table has no event"):
        sequence_metrics(real, nulls, **COLS)
    assert infer_schema(real).names == ["user", "item", "ts"]
