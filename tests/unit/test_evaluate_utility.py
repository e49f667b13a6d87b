"""TSTR / TRTR utility with labels whose predictability is known by construction."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from synthrec.errors import ConfigError
from synthrec.evaluate.columns import encode
from synthrec.evaluate.utility import default_label, positive_codes, tstr_trtr
from synthrec.schema import ColumnSpec, Kind, Role, Schema

SCHEMA = Schema(
    [
        ColumnSpec("item_id", Role.ITEM_ID, Kind.STRING),
        ColumnSpec("x", Role.NUMERIC, Kind.FLOAT),
        ColumnSpec("c", Role.CATEGORICAL, Kind.STRING),
        ColumnSpec("click", Role.LABEL, Kind.INT),
    ]
)


def _draw(rng, n, flip=False):
    x = rng.normal(size=n)
    c = rng.choice(list("abc"), n)
    click = ((x > 0) ^ flip).astype(np.int64)  # the label is the sign of x
    return pa.table(
        {"item_id": [f"i{k}" for k in rng.integers(0, 40, n)], "x": x, "c": c, "click": click}
    )


def _run(real, syn, holdout=None, **kw):
    tables = [real, syn] + ([holdout] if holdout is not None else [])
    args = dict(exclude=[], max_train_rows=10_000, test_fraction=0.25, seed=0) | kw
    return tstr_trtr(encode(tables, SCHEMA), "click", holdout is not None, **args)


def test_faithful_synthetic_data_matches_real_utility():
    rng = np.random.default_rng(0)
    out = _run(_draw(rng, 2_000), _draw(rng, 2_000), _draw(rng, 1_000))
    assert out["trtr_auc"] > 0.99 and out["tstr_auc"] > 0.99
    assert out["ratio"] == pytest.approx(1.0, abs=0.01)
    assert out["test"] == "holdout" and out["test_rows"] == 1_000


def test_inverted_labels_give_useless_synthetic_data():
    rng = np.random.default_rng(1)
    out = _run(_draw(rng, 2_000), _draw(rng, 2_000, flip=True))
    assert out["trtr_auc"] > 0.99
    assert out["tstr_auc"] < 0.05  # it learns the opposite rule
    assert out["test_rows"] == 500  # 25 % of the real rows without a holdout
    assert out["train_rows_real"] == 1_500


def test_excluding_the_leaking_column_drops_utility_to_chance():
    rng = np.random.default_rng(2)
    out = _run(_draw(rng, 2_000), _draw(rng, 2_000), exclude=["x"])
    assert 0.4 < out["trtr_auc"] < 0.6


def test_single_class_test_set_has_no_auc():
    rng = np.random.default_rng(3)
    real = _draw(rng, 200)
    real = real.set_column(3, "click", pa.array(np.zeros(200, np.int64)))
    out = _run(real, _draw(rng, 200))
    assert out["tstr_auc"] is None and "one class" in out["note"]


def test_label_choice_and_positive_class():
    assert default_label(SCHEMA, None) == "click"
    with pytest.raises(ConfigError, match="'nope' is not in the data"):
        default_label(SCHEMA, "nope")
    schema = Schema([ColumnSpec("y", Role.LABEL, Kind.STRING)])
    col = encode([pa.table({"y": ["yes", "no", None]})], schema)["y"]
    assert positive_codes(col)[[0, 1, 2]].tolist() == [
        True,
        False,
        False,
    ]  # "yes" > "no"; null is not positive
