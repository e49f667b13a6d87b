"""Public domains of categorical columns (privacy.domains): noisy counts over the declared
values, nothing dropped, no threshold δ; data outside a domain and misplaced domains refused."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from synthrec.config import GanConfig, PrivacyConfig
from synthrec.errors import DataError
from synthrec.gan import Synthesizer
from synthrec.gan.dp import private_fit
from synthrec.privacy import PrivacyError, check_accounted, epsilon_of
from synthrec.privacy.statistics import THRESHOLD_DELTA_SHARE
from synthrec.schema import ColumnSpec, Kind, Role, Schema, infer_schema

ROWS = 400
BINS = [f"{10 * i}-{10 * i + 10}" for i in range(21)]  # public edges; the last bin holds no row
DOMAINS = {c: BINS for c in ("a", "b", "c")}
NETS = {"embedding_dim": 8, "generator_dims": [16], "critic_dims": [16], "batch_size": 100}


def tiny_table(seed: int = 0) -> pa.Table:
    """ROWS rows, three columns of 20 evenly held bins: about 20 rows per value."""
    rng = np.random.default_rng(seed)
    return pa.table({c: rng.choice(BINS[:-1], ROWS) for c in DOMAINS})


def cfg_with(epsilon: float = 1.0, **privacy) -> GanConfig:
    return GanConfig(**NETS, privacy=PrivacyConfig(epsilon=epsilon, **privacy))  # pac 1


def fit(table: pa.Table, cfg: GanConfig, epochs: int = 1):
    return private_fit(table, infer_schema(table), cfg, epochs, cfg.batch_size)


def test_public_domains_fit_a_table_the_threshold_refuses():
    table = tiny_table()
    # without domains: at ε = 1 the threshold (hundreds of rows) drops every value of a column
    # (each holds ~20 rows: a value passes with probability ~3e-4, so some column keeps none)
    with pytest.raises(DataError, match="no value's noisy count passed the DP threshold"):
        fit(table, cfg_with())
    encoder, budget = fit(table, cfg_with(domains=DOMAINS))
    for c in DOMAINS:
        codec = encoder.codec(c)
        assert codec.values.to_pylist() == BINS  # every declared value, the empty bin too
        assert len(codec.freq) == len(BINS) and (codec.freq >= 1).all()  # noisy, floored
        assert not codec.meta["nullable"]
    assert budget.extra["statistics"] == dict.fromkeys(DOMAINS, "noisy counts over a public domain")
    assert "count_threshold" not in budget.extra
    synth = Synthesizer().fit(table, cfg=cfg_with(domains=DOMAINS), epochs=1)
    assert synth.metadata["epsilon_spent"] == pytest.approx(1.0, rel=0.01)
    sample = synth.sample(200, seed=1)
    assert set(sample.column("a").to_pylist()) <= set(BINS)


def test_public_domains_spend_no_threshold_delta():
    """The accountant converts at the whole δ when no column needs a threshold, and at δ less
    the threshold's share when one still does; the recorded δ is the total either way."""
    table = tiny_table().append_column("d", pa.array(["x", "y"] * (ROWS // 2)))
    delta = 1 / ROWS**1.1
    _, none = fit(table.drop(["d"]), cfg_with(epsilon=8.0, domains=DOMAINS), epochs=2)
    _, some = fit(table, cfg_with(epsilon=8.0, domains=DOMAINS), epochs=2)
    assert none.delta == some.delta == pytest.approx(delta)
    assert none.threshold_delta == 0.0
    assert some.threshold_delta == pytest.approx(THRESHOLD_DELTA_SHARE * delta)
    assert some.extra["statistics"]["d"] == "noisy counts"
    for budget, at in ((none, delta), (some, delta * (1 - THRESHOLD_DELTA_SHARE))):
        budget.steps = budget.max_steps  # the whole plan spent
        assert budget.spent() == pytest.approx(epsilon_of(budget.history(), at))
        assert budget.spent() == pytest.approx(8.0, rel=0.01) and budget.spent() <= 8.0
        assert budget.summary()["delta"] == pytest.approx(delta)
    # the δ the threshold no longer takes buys a little less noise for the same ε
    assert none.noise_multiplier < some.noise_multiplier


def test_data_outside_a_public_domain_is_refused_before_training():
    table = tiny_table()
    short = {**DOMAINS, "b": BINS[1:]}  # "0-10" is missing, about 20 rows hold it
    held = sum(v == "0-10" for v in table.column("b").to_pylist())
    with pytest.raises(DataError) as err:
        fit(table, cfg_with(domains=short))
    message = str(err.value)
    assert f"column 'b': {held} rows hold a value outside its public domain" in message
    assert "0-10" not in message  # the values themselves are not named
    # nulls are outside a domain unless the schema declares the column nullable
    nulls = pa.table({"a": pa.array(["0-10", None] * (ROWS // 2))})
    cfg = cfg_with(domains={"a": BINS})
    for nullable in (False, True):
        schema = Schema([ColumnSpec("a", Role.CATEGORICAL, Kind.STRING, nullable)])
        if nullable:
            encoder, _ = private_fit(nulls, schema, cfg, 1, 100)
            assert len(encoder.codec("a").freq) == len(BINS) + 1  # the declared null slot
        else:
            with pytest.raises(DataError, match="column 'a': 200 rows hold a value outside"):
                private_fit(nulls, schema, cfg, 1, 100)


def test_misplaced_public_domains_are_config_errors():
    table = tiny_table().append_column("price", pa.array(np.linspace(1, 100, ROWS)))
    schema = infer_schema(table)
    base = {"epsilon": 1.0, "bounds": {"price": (0.0, 100.0)}}
    with pytest.raises(PrivacyError, match="nope"):
        check_accounted(schema, PrivacyConfig(**base, domains={"nope": ["x"]}))
    with pytest.raises(PrivacyError, match="'price' \\(numeric\\).*categorical"):
        check_accounted(schema, PrivacyConfig(**base, domains={"price": ["1", "2"]}))
    with pytest.raises(ValidationError, match="domains and public_columns both list a"):
        PrivacyConfig(epsilon=1.0, domains={"a": BINS}, public_columns=["a"])
    with pytest.raises(ValidationError, match="a \\(empty\\)"):
        PrivacyConfig(epsilon=1.0, domains={"a": []})
    with pytest.raises(ValidationError, match="a \\(repeated values\\)"):
        PrivacyConfig(epsilon=1.0, domains={"a": ["x", "x"]})
    stats = check_accounted(schema, PrivacyConfig(**base, domains={"a": BINS}))
    coverage = {s.column: s.coverage for s in stats}
    assert coverage == {
        "a": "noisy counts over a public domain",
        "b": "noisy counts",
        "c": "noisy counts",
        "price": "public bounds",
    }


def test_sequence_generator_takes_domains_of_user_attributes_only():
    """The sequence generator's users GAN fits the users table through the same statistics
    code: a user attribute's domain is covered (noisy counts there) and handed to the GAN's
    privacy config; a domain on an event column is refused (its values are not counted)."""
    from synthrec.config import SequenceConfig
    from synthrec.privacy import check_sequence_accounted
    from synthrec.sequences import dp

    privacy = {
        "epsilon": 2.0,
        "public_columns": ["item", "event", "age"],
        "bounds": {"time": [0, 100], "__events": [1, 50]},
    }
    args = ("user", "item", "time", ["event"], ["gender", "age"])
    cfg = PrivacyConfig(**privacy, domains={"gender": ["F", "M"]})
    stats = {s.column: s.coverage for s in check_sequence_accounted(*args, cfg)}
    assert stats["gender"] == "noisy counts over a public domain"
    seq_cfg = SequenceConfig(batch_size=8, privacy=cfg)
    plan = dp.plan(seq_cfg, 300, 1, ["gender", "age"], "time")
    assert plan.users.domains == {"gender": ["F", "M"]}
    on_event = cfg.model_copy(
        update={"domains": {"event": ["view", "buy"]}, "public_columns": ["item", "age"]}
    )
    with pytest.raises(PrivacyError, match="event: the sequence generator gives noisy counts"):
        check_sequence_accounted(*args, on_event)
