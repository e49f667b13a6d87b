import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from synthrec.config import SimulateConfig
from synthrec.data import simulator
from synthrec.data.simulator import SCHEMA, simulate, simulate_batches, simulated_schema
from synthrec.errors import ConfigError
from synthrec.schema import validate_table


@pytest.fixture(scope="module")
def log() -> pa.Table:
    return simulate(SimulateConfig(rows=30_000, num_users=2_000, num_items=5_000, seed=3))


def test_simulator_exact_rows_and_schema(log):
    assert log.num_rows == 30_000
    assert log.schema.equals(SCHEMA)
    validate_table(log, simulated_schema(), "simulated log")
    assert log.schema.metadata[b"synthrec.source"].startswith(b"simulated")


def test_simulator_same_seed_same_rows_other_seed_differs():
    cfg = SimulateConfig(rows=5_000, num_users=500, num_items=1_000, seed=11)
    assert simulate(cfg).equals(simulate(cfg))
    assert not simulate(cfg).equals(simulate(cfg.model_copy(update={"seed": 12})))


def test_simulator_independent_of_batching(monkeypatch):
    monkeypatch.setattr(simulator, "BLOCK_ROWS", 4_000)  # several blocks, quickly
    cfg = SimulateConfig(rows=10_500, num_users=500, num_items=1_000)
    whole = simulate(cfg)
    for batch_rows in (777, 4_000, 50_000):
        parts = list(simulate_batches(cfg, batch_rows=batch_rows))
        assert all(b.num_rows == batch_rows for b in parts[:-1])
        assert pa.Table.from_batches(parts).equals(whole)
    # One block generated alone (as a worker would) equals its slice of the whole log.
    assert pa.Table.from_batches([simulator.simulate_block(cfg, 1)]).equals(
        whole.slice(4_000, 4_000)
    )


def test_simulator_funnel_cart_after_click_purchase_after_cart(log):
    click, cart, buy = (log[c].to_numpy() for c in ("click", "cart", "purchase"))
    assert set(np.unique(click)) == {0, 1}
    assert not np.any(cart > click) and not np.any(buy > cart)
    assert 0.03 < click.mean() < 0.25
    assert 0.05 < cart[click == 1].mean() < 0.5 and 0.1 < buy[cart == 1].mean() < 0.8


def test_simulator_position_bias(log):
    pos, click = log["position"].to_numpy(), log["click"].to_numpy()
    assert pos.min() == 1
    assert click[pos == 1].mean() > 2 * click[(pos >= 5) & (pos <= 8)].mean()


def test_simulator_sessions_are_ranked_pages_of_distinct_items(log):
    t = log.select(
        ["session_id", "item_id", "position", "timestamp", "user_id", "query"]
    ).to_pandas()
    g = t.groupby("session_id")
    assert (g["position"].max() == g.size()).all()  # positions 1..k
    assert not t.duplicated(["session_id", "item_id"]).any()
    assert (g["user_id"].nunique() == 1).all() and (g["query"].nunique() == 1).all()
    assert (np.diff(log["timestamp"].to_numpy()) >= 0).all()  # a log in time order


def test_simulator_long_tail_and_rare_categories(log):
    item_counts = np.sort(log["item_id"].value_counts().field("counts").to_numpy())[::-1]
    top = item_counts[: len(item_counts) // 10].sum() / item_counts.sum()
    assert top > 0.4  # the top 10% of items get a large share of impressions
    cat_counts = log["category"].value_counts().field("counts").to_numpy()
    assert cat_counts.max() > 10 * cat_counts.min()


def test_simulator_prices_positive_and_vary_by_category(log):
    price = log["price"].to_numpy()
    assert price.min() >= 0.99
    medians = log.group_by("category").aggregate([("price", "approximate_median")])[
        "price_approximate_median"
    ]
    assert pc.max(medians).as_py() > 5 * pc.min(medians).as_py()


def test_simulator_demographics_and_segments(log):
    assert set(log["user_segment"].unique().to_pylist()) == {"new", "casual", "power"}
    assert set(log["device"].unique().to_pylist()) == {"mobile", "desktop", "tablet"}
    age = log["age"].to_numpy()
    assert 18 <= age.min() and age.max() <= 80
    # A user's demographics are fixed across their rows.
    users = (
        log.select(["user_id", "age", "gender", "region", "user_segment"])
        .to_pandas()
        .drop_duplicates()
    )
    assert not users["user_id"].duplicated().any()


def test_simulator_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="num_queries"):
        simulator.build_world(SimulateConfig(num_categories=50, num_queries=10))
    with pytest.raises(ConfigError, match="batch_rows"):
        next(simulate_batches(SimulateConfig(rows=10), batch_rows=0))


def test_simulator_tiny_worlds_work():
    t = simulate(
        SimulateConfig(
            rows=200, num_users=1, num_items=3, num_categories=3, num_brands=1, num_queries=3
        )
    )
    assert t.num_rows == 200 and t["user_id"].unique().to_pylist() == ["u0000"]
    assert set(t["brand"].unique().to_pylist()) == {"brand 0000"}
