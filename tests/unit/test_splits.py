import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthrec.data.splits import ML100K_NUM_TRAIN, leave_last_out, temporal_split
from synthrec.errors import DataError


def _table(users, times, items=None):
    items = items or [f"i{k}" for k in range(len(users))]
    return pa.table({"user_id": users, "item_id": items, "timestamp": times})


def test_splits_temporal_takes_first_rows():
    t = _table(["a"] * 5, [1, 2, 3, 4, 5])
    train, test = temporal_split(t, 3)
    assert train["timestamp"].to_pylist() == [1, 2, 3]
    assert test["timestamp"].to_pylist() == [4, 5]


@pytest.mark.parametrize("num_train", [0, 5, -1])
def test_splits_temporal_rejects_out_of_range(num_train):
    with pytest.raises(DataError, match="num_train"):
        temporal_split(_table(["a"] * 5, [1, 2, 3, 4, 5]), num_train)


def test_splits_leave_last_out_per_user_latest_is_test():
    t = _table(
        ["a", "b", "a", "a", "b", "c"],
        [30, 5, 10, 20, 1, 7],
        ["a30", "b5", "a10", "a20", "b1", "c7"],
    )
    train, valid, test = leave_last_out(t)
    assert train["item_id"].to_pylist() == ["a10"]
    assert valid["item_id"].to_pylist() == ["a20", "b1"]  # input order kept
    assert test["item_id"].to_pylist() == ["a30", "b5", "c7"]


def test_splits_leave_last_out_ties_broken_by_row_order():
    t = _table(["u", "u", "u", "u"], [5, 9, 9, 9], ["x", "first", "second", "third"])
    train, valid, test = leave_last_out(t)
    assert test["item_id"].to_pylist() == ["third"]
    assert valid["item_id"].to_pylist() == ["second"]
    assert train["item_id"].to_pylist() == ["x", "first"]


def test_splits_leave_last_out_accepts_timestamps_and_int_users():
    ts = [dt.datetime(2020, 1, d) for d in (3, 1, 2)]
    t = pa.table({"uid": [7, 7, 7], "iid": [1, 2, 3], "when": pa.array(ts, pa.timestamp("s"))})
    train, valid, test = leave_last_out(t, "uid", "iid", "when")
    assert (train["iid"].to_pylist(), valid["iid"].to_pylist(), test["iid"].to_pylist()) == (
        [2],
        [3],
        [1],
    )


def test_splits_leave_last_out_names_missing_column():
    with pytest.raises(DataError, match="when"):
        leave_last_out(_table(["a"], [1]), time_col="when")


def test_splits_leave_last_out_rejects_null_users():
    with pytest.raises(DataError, match="user_id"):
        leave_last_out(_table(["a", None], [1, 2]))


def test_splits_leave_last_out_matches_reference_on_random_data():
    rng = np.random.default_rng(0)
    n = 2_000
    users = rng.integers(0, 50, n)
    times = rng.integers(0, 30, n)  # many ties
    t = pa.table({"user_id": users, "item_id": np.arange(n), "timestamp": times})
    _, valid, test = leave_last_out(t)
    # Reference: per user, max (time, row) pair is test, second largest is valid.
    ref_test, ref_valid = set(), set()
    for u in np.unique(users):
        rows = sorted(np.flatnonzero(users == u), key=lambda r: (times[r], r))
        ref_test.add(rows[-1])
        if len(rows) > 1:
            ref_valid.add(rows[-2])
    assert set(test["item_id"].to_pylist()) == ref_test
    assert set(valid["item_id"].to_pylist()) == ref_valid


def test_splits_on_ml100k(ml100k_dir):
    events = pq.read_table(ml100k_dir / "events.parquet")
    train, test = temporal_split(events, ML100K_NUM_TRAIN)
    assert (train.num_rows, test.num_rows) == (80_000, 20_000)
    tr, va, te = leave_last_out(events)
    assert va.num_rows == te.num_rows == 943
    assert tr.num_rows == 100_000 - 2 * 943


def test_pipeline_privacy_holdout_is_a_seeded_random_share_of_train():
    from synthrec.config import PipelineConfig
    from synthrec.pipeline import _privacy_holdout

    train = _table([f"u{k % 7}" for k in range(200)], list(range(200)))
    later = _table(["u0"], [999])
    cfg = PipelineConfig(privacy_holdout_share=0.1)
    gan_rows, holdout, _ = _privacy_holdout(train, later, cfg)
    again = _privacy_holdout(train, later, cfg)[1]
    other_seed = _privacy_holdout(
        train, later, cfg.model_copy(update={"gan": cfg.gan.model_copy(update={"seed": 7})})
    )[1]

    assert (gan_rows.num_rows, holdout.num_rows) == (180, 20)
    assert sorted(gan_rows["item_id"].to_pylist() + holdout["item_id"].to_pylist()) == sorted(
        train["item_id"].to_pylist()
    )
    assert holdout.equals(again) and not holdout.equals(other_seed)
    # spread over time, not the latest rows (the bias the random share exists to avoid)
    assert min(holdout["timestamp"].to_pylist()) < 100 < max(holdout["timestamp"].to_pylist())


def test_pipeline_privacy_holdout_for_sequences_holds_out_whole_users():
    # the sequence generator's privacy is judged per user: held-out users must be people
    # the generator never saw, not random rows of the users it trained on
    from synthrec.config import PipelineConfig
    from synthrec.pipeline import _privacy_holdout

    train = _table([f"u{k % 40}" for k in range(400)], list(range(400)))
    later = _table(["u0"], [999])
    cfg = PipelineConfig(privacy_holdout_share=0.1)
    gan_rows, holdout, names = _privacy_holdout(train, later, cfg, "user_id")
    kept, held = set(gan_rows["user_id"].to_pylist()), set(holdout["user_id"].to_pylist())
    assert len(held) == 4 and not kept & held and len(kept) == 36
    assert holdout.num_rows == 40 and gan_rows.num_rows == 360  # all of each user's rows
    assert "users" in names[1]
    assert _privacy_holdout(train, later, cfg, "user_id")[1].equals(holdout)


def test_pipeline_privacy_holdout_zero_share_uses_later_rows():
    from synthrec.config import PipelineConfig
    from synthrec.pipeline import _privacy_holdout

    train, later = _table(["a"] * 5, [1, 2, 3, 4, 5]), _table(["a"], [9])
    gan_rows, holdout, _ = _privacy_holdout(train, later, PipelineConfig(privacy_holdout_share=0))
    assert gan_rows.equals(train) and holdout.equals(later)
