"""Synthesizer: output types, seeded and block-deterministic sampling, exact conditions,
rebalancing, and every error a user can hit."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from synthrec.config import EncoderConfig, GanConfig
from synthrec.errors import ConditionError, ConfigError, ModelError
from synthrec.gan import Synthesizer

CFG = GanConfig(
    embedding_dim=16,
    generator_dims=[32, 32],
    critic_dims=[32, 32],
    batch_size=100,
    pac=10,
    encoder=EncoderConfig(mode_fit_rows=500, id_profile_rows=1_000),
    sample_batch_rows=300,
)


def make_table(n: int = 1_500, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    genre = rng.choice(["Action", "Comedy", "Drama", "Documentary"], n, p=[0.5, 0.3, 0.18, 0.02])
    return pa.table(
        {
            "user_id": pa.array([f"u{i}" for i in rng.integers(0, 150, n)]),
            "item_id": pa.array(rng.integers(0, 300, n), pa.int32()),
            "genre": pa.array(genre),
            "gender": pa.array(rng.choice(["F", "M"], n)),
            "rating": pa.array(rng.integers(1, 6, n), pa.int64()),
            "price": pa.array(rng.lognormal(2, 1, n), mask=rng.random(n) < 0.1),
            "ts": pa.array(1_600_000_000 + rng.integers(0, 10**7, n), pa.int64()).cast(
                pa.timestamp("s")
            ),
            "click": pa.array(rng.integers(0, 2, n), pa.int64()),
        }
    )


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return make_table()


@pytest.fixture(scope="module")
def synth(table) -> Synthesizer:
    return Synthesizer().fit(table, cfg=CFG, epochs=2)


def test_synthesizer_output_keeps_names_types_and_categories(synth, table):
    out = synth.sample(700, seed=1)
    assert out.num_rows == 700 and out.schema == table.schema
    for name in ("genre", "gender", "item_id"):
        assert set(pc.unique(out[name]).to_pylist()) <= set(pc.unique(table[name]).to_pylist()), (
            name
        )
    assert out["price"].null_count > 0  # nulls are generated too
    assert synth.metadata["metrics"]["epochs"] == 2 and len(synth.metadata["fingerprint"]) == 64


def test_synthesizer_sampling_is_seeded_and_block_deterministic(synth):
    a, b = synth.sample(700, seed=3), synth.sample(700, seed=3)
    assert a.equals(b)
    assert not a.equals(synth.sample(700, seed=4))
    blocks = [synth.sample_block(i, n, seed=3) for i, n in enumerate([300, 300, 100])]
    assert pa.concat_tables(blocks).equals(a)  # sample = its blocks
    assert synth.sample_block(2, 100, seed=3).equals(blocks[2])  # any order, any worker


def test_synthesizer_fit_is_reproducible_under_a_seed(table):
    one = Synthesizer().fit(table, cfg=CFG, epochs=1).sample(200, seed=0)
    two = Synthesizer().fit(table, cfg=CFG, epochs=1).sample(200, seed=0)
    # everything but the user pseudonyms, whose key is random per model (never the seed)
    assert one.drop_columns(["user_id"]).equals(two.drop_columns(["user_id"]))
    same_user = lambda t: pc.equal(t["user_id"][:-1], t["user_id"][1:])  # noqa: E731
    assert same_user(one).equals(same_user(two))


def test_synthesizer_user_ids_are_pseudonyms_never_real_and_stable_within_a_model(synth, table):
    real = set(table["user_id"].to_pylist())
    first, second = synth.sample(1_000, seed=7), synth.sample(1_000, seed=7)
    assert first["user_id"].equals(second["user_id"])  # stable within the model
    users = set(first["user_id"].to_pylist())
    assert not users & real and all(u.startswith("u_") and len(u) == 18 for u in users)
    assert synth.metadata["privacy"]["user_id_policy"] == {"user_id": "pseudonymize"}
    keep = CFG.model_copy(update={"encoder": CFG.encoder.model_copy(update={"id_policy": "keep"})})
    kept = Synthesizer().fit(table, cfg=keep, epochs=1).sample(300, seed=7)
    assert set(kept["user_id"].to_pylist()) <= real  # only when asked for explicitly


def test_synthesizer_fit_calibrates_id_draws_and_records_it(synth, table):
    record = synth.metadata["id_calibration"]
    assert record["rows"] == 10_000  # 2 x 1,500 rows, at least 10,000
    assert {c: len(v) for c, v in record["total_variation"].items()} == {"user_id": 4, "item_id": 4}
    # the draw weights are generator state (saved with its weights), one buffer per id column
    state = synth.generator.state_dict()
    weights = [state[f"id_calibration.log_weight_{k}"] for k in range(2)]
    assert all(w.abs().max() > 0 for w in weights)
    assert [len(w) for w in weights] == [
        len(synth.encoder.codec(c).freq) for c in ("user_id", "item_id")
    ]
    again = Synthesizer.from_parts(synth.encoder, synth.cfg, state)  # saved with the model
    assert again.sample(300, seed=4).equals(synth.sample(300, seed=4))
    plain = Synthesizer().fit(
        table, cfg=CFG.model_copy(update={"id_calibration_rounds": 0}), epochs=2
    )
    plain_state = plain.generator.state_dict()
    assert "id_calibration" not in plain.metadata
    assert not plain_state["id_calibration.log_weight_0"].any()
    assert plain.metadata["version"] != synth.metadata["version"]  # the weights change the draws
    conditioned = synth.sample(
        500, conditions={"genre": "Documentary"}, seed=2
    )  # conditions stay exact
    assert set(conditioned["genre"].to_pylist()) == {"Documentary"}


def test_synthesizer_time_budget_stops_training(table):
    """The budget (encoding included) ends training at the first step past its deadline,
    long before the requested epochs would: later epochs start only before the deadline,
    and the last one is cut there (a loaded machine may spend the budget before the first
    step; that first step still runs)."""
    budget, epochs, log = 2.0, 2_000, []
    start = time.monotonic()
    synth = Synthesizer().fit(
        table,
        cfg=CFG,
        epochs=epochs,
        time_budget_s=budget,
        progress=lambda **m: log.append((time.monotonic(), m["seconds"], m["steps"])),
    )
    deadline = start + budget
    assert 1 <= len(log) == synth.metadata["metrics"]["epochs"] < epochs
    assert all(end - seconds < deadline for end, seconds, _ in log[1:])
    end, seconds, steps = log[-1]
    step = seconds / steps
    assert deadline <= end <= max(deadline, end - seconds) + 1.5 * step + 0.1
    full_epoch = step * (table.num_rows // CFG.batch_size)
    assert epochs * full_epoch > 10 * budget  # without the budget: many times longer


def test_synthesizer_exact_conditions_on_one_and_two_columns(synth):
    out = synth.sample(900, conditions={"genre": "Documentary"}, seed=2)
    assert out.num_rows == 900 and pc.all(pc.equal(out["genre"], "Documentary")).as_py()
    out = synth.sample(500, conditions={"genre": "Drama", "gender": "F", "rating": "5"}, seed=2)
    assert (
        pc.all(pc.equal(out["genre"], "Drama")).as_py()
        and pc.all(pc.equal(out["gender"], "F")).as_py()
    )
    assert pc.all(pc.equal(out["rating"], 5)).as_py()  # "5" from a CLI matches int 5


def test_synthesizer_rebalance_uniform_and_given_probabilities(synth):
    out = synth.sample_block(0, 800, seed=0, rebalance={"genre": "uniform"})
    counts = dict(zip(*[c.to_pylist() for c in pc.value_counts(out["genre"]).flatten()]))
    assert counts == {"Action": 200, "Comedy": 200, "Drama": 200, "Documentary": 200}
    out = synth.sample_block(
        0,
        1_000,
        seed=0,
        rebalance={"genre": {"Documentary": 0.7, "Action": 0.3}},
        conditions={"gender": "M"},
    )
    counts = dict(zip(*[c.to_pylist() for c in pc.value_counts(out["genre"]).flatten()]))
    assert counts == {"Documentary": 700, "Action": 300}
    assert pc.all(pc.equal(out["gender"], "M")).as_py()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"conditions": {"nope": "x"}},
            "column 'nope' is not in the model's data; conditionable columns: genre",
        ),
        (
            {"conditions": {"genre": "Western"}},
            "genre='Western': not a value of the model's data; the column has 4 values",
        ),
        (
            {"conditions": {"\ud800x": "a"}},
            "column name '\\ud800x' is not valid UTF-8 text",
        ),
        ({"rebalance": {"\udfff": "uniform"}}, "rebalance column name '\\udfff' is not valid"),
        ({"conditions": {"price": 3}}, "'price' is not a categorical column"),
        ({"conditions": {"user_id": "u1"}}, "'user_id' holds pseudonymous user ids"),
        ({"conditions": {"item_id": 3}}, "'item_id' is not a categorical column"),
        ({"rebalance": {"genre": "zipf"}}, "expected 'uniform' or a {value: probability} mapping"),
        ({"rebalance": {"genre": {"Action": 0.5}}}, "probabilities sum to 0.5000"),
        ({"rebalance": {"genre": {"Action": -1, "Drama": 2}}}, "probability must be a number >= 0"),
        ({"rebalance": {"genre": {"Sci-Fi": 1.0}}}, "not a value of the model's data"),
        (
            {"rebalance": {"genre": "uniform"}, "conditions": {"genre": "Drama"}},
            "both conditioned and rebalanced",
        ),
    ],
)
def test_synthesizer_condition_errors(synth, kwargs, message):
    with pytest.raises(ConditionError) as err:
        synth.sample(10, **kwargs)
    assert message in str(err.value)
    str(err.value).encode("utf-8")  # every message can be sent back over HTTP
    assert "Documentary" not in str(err.value)  # training values are never listed


def test_synthesizer_usage_errors(table):
    with pytest.raises(ModelError, match="not fitted"):
        Synthesizer().sample(10)
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        Synthesizer().fit(table, cfg=CFG, epochs=0)
    with pytest.raises(ConfigError, match="time_budget_s must be > 0"):
        Synthesizer().fit(table, cfg=CFG, time_budget_s=0)


def test_synthesizer_negative_rows_is_config_error(synth):
    with pytest.raises(ConfigError, match="rows must be >= 0"):
        synth.sample(-1)
    assert synth.sample(0).num_rows == 0
