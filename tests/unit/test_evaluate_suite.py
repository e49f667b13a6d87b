"""The whole evaluation: metrics shape, verdict, segments, input errors, report and job entry."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq
import pytest

from synthrec.config import EvaluateConfig, VerdictConfig
from synthrec.errors import ConfigError, SchemaError
from synthrec.evaluate import evaluate_synthetic, run_evaluate, write_report
from synthrec.evaluate.columns import encode
from synthrec.evaluate.report import SECTIONS
from synthrec.evaluate.suite import STAGES, segment_plan, verdict
from synthrec.schema import infer_schema

FAST = EvaluateConfig(
    privacy_query_rows=500, privacy_reference_rows=2_000, utility_max_train_rows=2_000
)


def events(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 70, n)
    price = rng.gamma(2.0, 10.0, n)
    price[rng.random(n) < 0.05] = np.nan
    category = rng.choice(["books", "games", "music", "garden"], n, p=[0.4, 0.3, 0.2, 0.1])
    ts = np.datetime64("2024-01-01") + rng.integers(0, 90 * 86_400, n).astype("timedelta64[s]")
    click = (rng.random(n) < 1 / (1 + np.exp(-(age - 40) / 10))).astype(np.int64)
    return pa.table(
        {
            "user_id": [f"u{i}" for i in rng.integers(0, 80, n)],
            "item_id": rng.integers(0, 150, n),
            "age": age,
            "price": pa.array(price, from_pandas=True),
            "category": category,
            "ts": pa.array(ts, pa.timestamp("s")),
            "click": click,
        }
    )


@pytest.fixture(scope="module")
def tables():
    return events(1_500, 0), events(1_500, 1), events(500, 2)


@pytest.fixture(scope="module")
def metrics(tables):
    real, syn, hold = tables
    return evaluate_synthetic(real, syn, hold, cfg=FAST, segments={"category": None})


def test_metrics_hold_every_headline_key_as_nested_json(metrics):
    for path in (
        "fidelity.overall",
        "fidelity.column_shapes",
        "fidelity.column_pair_trends",
        "fidelity.all_pairs.overall",
        "fidelity.coverage.overall",
        "utility.tstr_auc",
        "utility.trtr_auc",
        "utility.ratio",
        "privacy.exact_copy_rate",
        "privacy.dcr_share_closer_than_holdout_p5",
        "privacy.mia_auc",
        "privacy.nndr.synthetic_median",
        "verdict.passed",
    ):
        node = metrics
        for key in path.split("."):
            node = node[key]
        assert node is not None, path
    json.dumps(metrics, allow_nan=False)  # NaN became null
    assert set(metrics["fidelity"]["columns"]) == {
        "age",
        "price",
        "category",
        "ts",
        "click",
    }  # ids not scored


def test_independent_draws_score_high_and_pass(metrics):
    assert metrics["fidelity"]["overall"] > 0.85
    assert metrics["privacy"]["exact_copy_rate"] == 0.0
    assert metrics["verdict"]["passed"], metrics["verdict"]


def test_sequence_section_comes_with_user_item_and_time_columns(metrics):
    seqs = metrics["sequences"]
    assert seqs["columns"]["user"] == "user_id" and seqs["columns"]["time"] == "ts"
    assert seqs["columns"]["category"] == "category"
    assert 0 < seqs["events_per_user"]["ks_complement"] <= 1
    assert "80 of 80 holdout users also occur" in seqs["note"]  # same ids: no user baseline
    assert seqs["privacy"]["membership_auc"] is None


def test_segments_cover_the_top_values(metrics):
    segs = metrics["segments"]
    assert [s["value"] for s in segs] == ["books", "games", "music", "garden"]
    assert sum(s["real_share"] for s in segs) == pytest.approx(1.0)
    assert all(0.5 < s["fidelity"] <= 1 for s in segs)


def test_copied_data_fails_the_verdict(tables):
    real, _, hold = tables
    m = evaluate_synthetic(real, real, hold, cfg=FAST)
    failed = {c["metric"] for c in m["verdict"]["checks"] if not c["passed"]}
    assert {"privacy.exact_copy_rate", "privacy.dcr_share_closer_than_holdout_p5"} <= failed
    assert not m["verdict"]["passed"] and not m["verdict"]["privacy_passed"]


def test_copied_users_fail_the_user_level_privacy_checks(tables):
    real, syn, hold = tables
    # held-out users are other people than the training users (the fixture's share ids)
    other = pa.array(["h" + u for u in hold.column("user_id").to_pylist()])
    hold = hold.set_column(hold.schema.get_field_index("user_id"), "user_id", other)
    copied = evaluate_synthetic(real, real, hold, cfg=FAST)
    fresh = evaluate_synthetic(real, syn, hold, cfg=FAST)
    names = ("privacy.user_exact_copy_share", "privacy.user_shared_run_5_share")
    failed = {c["metric"] for c in copied["verdict"]["checks"] if not c["passed"]}
    assert set(names) <= failed
    checked = {c["metric"]: c["passed"] for c in fresh["verdict"]["checks"]}
    assert all(checked[n] for n in names) and "privacy.user_mia_auc" in checked


def test_user_level_checks_use_the_holdout_as_reference_and_skip_without_it():
    def metrics(holdout_runs):
        runs = {"limit": 5, "synthetic": {"share_at_least_5": 0.04}, "holdout": holdout_runs}
        priv = {
            "exact_copies": {"synthetic": 0.0, "holdout": None},
            "longest_shared_run": runs,
            "membership_auc": 0.7,
        }
        return {
            "privacy": {"exact_copy_rate": 0.0},
            "fidelity": {"overall": 0.9},
            "utility": {"ratio": None},
            "sequences": {"privacy": priv},
        }

    limits = VerdictConfig(min_utility_ratio=None)
    near = verdict(metrics({"share_at_least_5": 0.035}), limits)  # real users share runs too
    far = verdict(metrics({"share_at_least_5": 0.0}), limits)
    none = verdict(metrics(None), limits)
    run = "privacy.user_shared_run_5_share"
    assert {c["metric"]: c["passed"] for c in near["checks"]}[run]
    assert not {c["metric"]: c["passed"] for c in far["checks"]}[run]
    assert run in none["skipped"]
    assert not near["privacy_passed"]  # user-level membership attack AUC 0.7 > 0.6


def test_session_ids_are_left_out_of_fidelity_like_user_and_item_ids(tables):
    # a synthetic log's sessions are new ones: the same log with renumbered session ids is
    # a perfect copy as far as the columns go (session lengths: the sequence section)
    real, _, _ = tables
    session = pa.array(np.arange(real.num_rows) // 5, pa.int64())
    real = real.append_column("session_id", session)
    renumbered = real.set_column(
        real.num_columns - 1, "session_id", pa.compute.add(session, 1_000_000)
    )
    m = evaluate_synthetic(real, renumbered, cfg=FAST)
    assert "session_id" not in m["fidelity"]["columns"]
    assert not any("session_id" in p["columns"] for p in m["fidelity"]["pairs"])
    assert m["fidelity"]["overall"] > 0.99
    off = evaluate_synthetic(real, renumbered, cfg=FAST.model_copy(update={"sequences": False}))
    assert "session_id" in off["fidelity"]["columns"]  # no sequence view: an ordinary column


def test_verdict_skips_what_was_not_measured():
    metrics = {
        "privacy": {
            "exact_copy_rate": 0.0,
            "holdout_exact_copy_rate": None,
            "mia_auc": None,
            "dcr_share_closer_than_holdout_p5": None,
        },
        "fidelity": {"overall": 0.5},
        "utility": {"ratio": None},
    }
    v = verdict(metrics, VerdictConfig(min_utility_ratio=None))
    assert [c["metric"] for c in v["checks"]] == ["privacy.exact_copy_rate", "fidelity.overall"]
    assert v["skipped"] == ["privacy.dcr_share_closer_than_holdout_p5", "privacy.mia_auc"]
    assert not v["passed"] and v["privacy_passed"]  # fidelity 0.5 < 0.7


def test_segment_plan_reads_generation_conditions_and_rebalance(tables):
    real, syn, _ = tables
    columns = encode([real, syn], infer_schema(real))
    plan = segment_plan(
        {"conditions": {"category": "games"}, "rebalance": {"click": {"1": 0.5}}}, columns, 5
    )
    assert [(p["column"], p["value"], p["target_share"]) for p in plan] == [
        ("category", "games", None),
        ("click", "1", 0.5),
    ]
    uniform = segment_plan({"rebalance": {"category": "uniform"}}, columns, 5)
    assert {p["target_share"] for p in uniform} == {0.25}
    with pytest.raises(ConfigError, match="segment column 'price' is not a categorical column"):
        segment_plan({"price": None}, columns, 5)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.slice(0, 0), "synthetic table is empty"),
        (lambda t: t.drop(["price"]), "lacks price"),
        (lambda t: t.append_column("extra", pa.array(np.zeros(len(t)))), "adds extra"),
        (
            lambda t: t.set_column(4, "category", pa.array(np.zeros(len(t), np.int64))),
            "column 'category' is int64 but the real",
        ),
    ],
)
def test_bad_synthetic_inputs_fail_with_clear_messages(tables, change, message):
    real, syn, _ = tables
    with pytest.raises(SchemaError, match=message):
        evaluate_synthetic(real, change(syn), cfg=FAST)


def test_empty_real_and_unknown_label_fail_clearly(tables):
    real, syn, _ = tables
    with pytest.raises(SchemaError, match="real table is empty"):
        evaluate_synthetic(real.slice(0, 0), syn, cfg=FAST)
    with pytest.raises(ConfigError, match="label column 'nope'"):
        evaluate_synthetic(real, syn, cfg=FAST.model_copy(update={"label": "nope"}))


def test_report_is_self_contained_with_every_section(tmp_path, tables, metrics):
    real, syn, hold = tables
    uri = write_report(metrics, real, syn, hold, str(tmp_path / "rep"))
    page = (tmp_path / "rep" / "report.html").read_text()
    assert uri.endswith("report.html")
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 5  # distributions, associations, DCR, segments, sequences
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from the network
    assert (
        json.loads((tmp_path / "rep" / "metrics.json").read_text())["verdict"] == metrics["verdict"]
    )


def test_report_states_the_models_dp_budget(tmp_path, tables, metrics):
    real, syn, hold = tables
    dp = {"epsilon_spent": 2.0, "delta": 1e-5}
    write_report(
        {**metrics, "meta": {**metrics["meta"], "differential_privacy": dp}},
        real,
        syn,
        hold,
        str(tmp_path / "dp"),
    )
    page = (tmp_path / "dp" / "report.html").read_text()
    assert "Differential privacy: ε spent / δ" in page and "2.000 / 1e-05" in page


def test_run_evaluate_reads_files_and_writes_the_report(tmp_path, tables):
    real, syn, _ = tables
    pq.write_table(real, tmp_path / "real.parquet")
    pq.write_table(syn, tmp_path / "syn.parquet")
    cfg = FAST.model_copy(
        update={
            "real_uri": str(tmp_path / "real.parquet"),
            "synthetic_uri": str(tmp_path / "syn.parquet"),
            "out_uri": str(tmp_path / "out"),
        }
    )
    stages = []
    metrics = run_evaluate(cfg, progress=lambda done, stage: stages.append(stage))
    assert stages[-1] == "report" and len(stages) == len(STAGES) + 1
    assert (tmp_path / "out" / "report.html").stat().st_size > 10_000
    assert metrics["privacy"]["mia_auc"] is None  # no holdout
    assert metrics["utility"]["test"] == "20% of real rows"
    with pytest.raises(ConfigError, match="needs both a real and a synthetic"):
        run_evaluate(EvaluateConfig(real_uri=str(tmp_path / "real.parquet")))


def test_bad_segment_column_fails_before_any_work(tables):
    real, syn, _ = tables
    stages = []
    with pytest.raises(
        ConfigError, match="segment column 'nope' is not a categorical column; use one of: user_id"
    ):
        evaluate_synthetic(
            real,
            syn,
            cfg=FAST,
            segments={"conditions": {"nope": "x"}},
            progress=lambda done, stage: stages.append(stage),
        )
    assert stages == []
