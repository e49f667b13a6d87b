"""The sequence generator: encoding round trip, the catalog head, exact conditions,
deterministic blocks, catalog dependencies, pseudonymous ids and bad input."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch

from synthrec.config import SequenceConfig
from synthrec.data.derived import epoch_seconds
from synthrec.data.relational import relational_view
from synthrec.errors import ConfigError, DataError
from synthrec.sequences import SequenceSynthesizer
from synthrec.sequences.encoding import LENGTH_COL, SequenceEncoder
from synthrec.sequences.model import SequenceModel, SequenceSpec
from synthrec.sequences.train import Sampling, item_grid, make_windows, sample_sequences
from tests.logshapes import search_log, search_schema, taobao_log

TINY = SequenceConfig(
    d_model=16, n_heads=2, n_layers=1, window=8, epochs=2, users_epochs=2, adversarial_steps=0
)


@pytest.fixture(scope="module")
def search():
    table = search_log(1_200, seed=3)
    synth = SequenceSynthesizer().fit(table, schema=search_schema(table), cfg=TINY)
    return table, synth


@pytest.fixture(scope="module")
def taobao():
    table = taobao_log(1_500, seed=4, clock_offset_s=8 * 3_600)
    return table, SequenceSynthesizer().fit(table, cfg=TINY)


def test_encoding_round_trip_keeps_items_fields_sessions_and_order():
    table = search_log(600, seed=1)
    log = relational_view(table, search_schema(table))
    enc, seqs, users = SequenceEncoder.fit(log)
    lengths = np.diff(seqs.offsets)
    ids = log.users.column(0).combine_chunks()
    out = enc.decode(
        users, lengths, seqs.gap, seqs.item, seqs.fields, log.items, ids, np.random.default_rng(0)
    )
    real = relational_view(table, search_schema(table)).events
    key = ["uid", "ts", "pos"]
    a = out.flatten().sort_by([(k, "ascending") for k in key])
    b = log.flatten().sort_by([(k, "ascending") for k in key])
    for col in ("uid", "sku", "brand", "cat", "query", "pos", "action", "clicked", "segment"):
        assert a.column(col).to_pylist() == b.column(col).to_pylist(), col
    assert real.num_rows == out.events.num_rows
    # same-second gaps decode exactly; each user's first event keeps its time
    t_a, t_b = epoch_seconds(a.column("ts"), "iso")[0], epoch_seconds(b.column("ts"), "iso")[0]
    same_user = (
        a.column("uid").to_numpy(zero_copy_only=False)[1:]
        == a.column("uid").to_numpy(zero_copy_only=False)[:-1]
    )
    tie_b = (np.diff(t_b) == 0) & same_user
    assert (np.diff(t_a)[tie_b] == 0).all()


def test_catalog_head_is_a_distribution_over_the_whole_catalog():
    torch.manual_seed(0)
    spec = SequenceSpec(
        num_items=37,
        num_clusters=8,
        cluster_size=5,
        gap_classes=4,
        field_classes=[3],
        user_classes=[2],
        session_field=-1,
        d_model=16,
        n_heads=2,
        n_layers=1,
        window=4,
    )
    model = SequenceModel(spec)
    grid = np.full((8, 5), 37)
    grid.flat[np.random.default_rng(0).permutation(40)[:37]] = np.arange(37)
    from synthrec.sequences.fitting import set_grid as _set_grid

    _set_grid(model, grid, np.ones(37))
    h = torch.randn(3, 16)
    items = torch.arange(37)
    lp = model.item_head.log_prob(h.repeat_interleave(37, 0), items.repeat(3)).view(3, 37)
    assert torch.allclose(lp.logsumexp(1), torch.zeros(3), atol=1e-5)


def test_one_step_with_the_key_value_cache_equals_the_full_forward():
    # sampling feeds steps one at a time through the cache; training runs whole windows: the
    # hidden states must agree, or samples come from another model than the trained one
    torch.manual_seed(1)
    spec = SequenceSpec(
        num_items=20, num_clusters=4, cluster_size=5, gap_classes=4, field_classes=[3],
        user_classes=[2], session_field=-1, d_model=16, n_heads=2, n_layers=2, window=8,
        dropout=0.0,
    )  # fmt: skip
    model = SequenceModel(spec).eval()
    b, t = 3, 8
    gap, item = torch.randint(0, 4, (b, t)), torch.randint(0, 20, (b, t))
    fields, user = torch.randint(0, 3, (b, t, 1)), torch.randint(0, 2, (b, 1))
    index = torch.arange(t).expand(b, t)
    with torch.no_grad():
        full = model.hidden(gap, item, fields, user, index, torch.ones(b, t, dtype=torch.bool))
        cache, user_vec, steps = model.new_cache(b, "cpu"), model.embed.user(user), []
        for i in range(t):
            x = model.embed(gap[:, i : i + 1], item[:, i : i + 1], fields[:, i : i + 1],
                            user_vec, index[:, i : i + 1])[:, 0]  # fmt: skip
            steps.append(model.advance(cache, x, index[:, i], i))
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)


def test_item_grid_is_balanced_and_holds_every_item_once():
    table = taobao_log(2_000, seed=0)
    log = relational_view(table)
    _, seqs, _ = SequenceEncoder.fit(log)
    n = log.items.num_rows
    grid = item_grid(seqs, n, seed=0)
    members = grid[grid < n]
    assert sorted(members.tolist()) == list(range(n))
    assert grid.shape[0] * grid.shape[1] < 2 * n + 2 * grid.shape[0]
    assert grid.shape[0] >= np.sqrt(n) / 2


def test_windows_split_long_users_and_keep_the_previous_event_as_input():
    table = taobao_log(800, seed=2)
    log = relational_view(table)
    enc, seqs, _ = SequenceEncoder.fit(log)
    spec = SequenceSpec(
        num_items=log.items.num_rows,
        num_clusters=2,
        cluster_size=log.items.num_rows,
        gap_classes=enc.gap.num_classes,
        field_classes=[f.num_classes for f in enc.fields],
        user_classes=[f.num_classes for f in enc.users],
        session_field=-1,
        window=4,
    )
    users = np.arange(seqs.num_users)
    win = make_windows(seqs, spec, users)
    assert int(win.valid.sum()) == len(seqs.item)  # every event is a target once
    later = ~win.first
    assert later.any()
    # a window inside a user reads the event before its first target
    w = np.flatnonzero(later)[0]
    u, start = win.user[w], win.index[w, 0]
    assert win.in_item[w, 0] == seqs.item[seqs.offsets[u] + start - 1]


def test_samples_have_catalog_attributes_exactly_and_derived_columns_recomputed(taobao):
    table, synth = taobao
    flat = synth.sample_table(users=40, seed=1)
    catalog = dict(zip(table["item_id"].to_pylist(), table["category_id"].to_pylist()))
    assert all(
        catalog[i] == c
        for i, c in zip(flat["item_id"].to_pylist(), flat["category_id"].to_pylist())
    )
    seconds = flat["timestamp"].to_numpy() + 8 * 3_600
    assert (flat["hour"].to_numpy() == (seconds // 3_600) % 24).all()
    assert flat.schema == table.schema


def test_user_ids_are_fresh_pseudonyms_for_int_and_string_ids(taobao, search):
    table, synth = taobao
    out = synth.sample(users=30, seed=0)
    real = set(table["user_id"].to_pylist())
    assert not real & set(out.users.column(0).to_pylist())
    s_table, s_synth = search
    s_out = s_synth.sample(users=30, seed=0)
    assert not set(s_table["uid"].to_pylist()) & set(s_out.users.column(0).to_pylist())


def test_a_real_id_that_looks_like_a_pseudonym_moves_the_prefix():
    table = taobao_log(600, seed=5)
    ids = pc.cast(table["user_id"], pa.string())
    table = table.set_column(0, "user_id", pc.binary_join_element_wise("syn-", ids, ""))
    synth = SequenceSynthesizer().fit(table, cfg=TINY)
    out = synth.sample(users=5, seed=0)
    assert not set(table["user_id"].to_pylist()) & set(out.users.column(0).to_pylist())
    assert out.users.column(0)[0].as_py().startswith("syn1-")


def test_same_seed_same_bytes_and_blocks_compose(taobao):
    _, synth = taobao
    a = synth.sample(users=25, seed=7).flatten()
    b = synth.sample(users=25, seed=7).flatten()
    c = synth.sample(users=25, seed=8).flatten()
    assert a.equals(b)
    assert not a.equals(c)
    block = synth.sample_block(0, 25, seed=7).flatten()
    assert block.equals(a)


def test_exact_counts_of_users_and_events(taobao):
    _, synth = taobao
    assert synth.sample(users=33, seed=1).users.num_rows == 33
    assert synth.sample(events=321, seed=1).events.num_rows == 321
    assert synth.sample(users=0, seed=1).events.num_rows == 0


def test_sampling_events_draws_blocks_sized_by_the_mean_user_not_full_blocks(taobao, monkeypatch):
    _, synth = taobao
    asked = []
    block = synth.sample_block
    monkeypatch.setattr(synth, "sample_block", lambda i, n, *a: asked.append(n) or block(i, n, *a))
    out = synth.sample(events=500, seed=3)
    mean = np.mean(synth.calibration[LENGTH_COL]["real"])
    assert out.events.num_rows == 500
    assert 500 / mean <= sum(asked) <= 4 * 500 / mean + 8  # not 4,096 users for 500 events


def test_exact_conditions_on_item_event_and_user_columns(search):
    table, synth = search
    out = synth.sample_table(
        users=20, seed=2, conditions={"cat": "cat 3", "action": "click", "segment": "power"}
    )
    assert set(out["cat"].to_pylist()) == {"cat 3"}
    assert set(out["action"].to_pylist()) == {"click"}
    assert set(out["segment"].to_pylist()) == {"power"}
    with pytest.raises(ConfigError, match="cannot condition on 'nope'"):
        synth.sample(users=2, conditions={"nope": 1})
    with pytest.raises(ConfigError, match="no catalog item"):
        synth.sample(users=2, conditions={"cat": "cat 999"})


def test_no_repeat_users_longer_than_the_allowed_items_repeat_instead_of_drawing_padding(taobao):
    # a log that never repeats items, conditioned on 3 items, users of 12 events: once a user
    # has had the 3, a draw has no fresh allowed item left (found by the ML-100K benchmark)
    _, synth = taobao
    model, num_items = synth.model, synth.items.num_rows
    allowed = torch.zeros(num_items, dtype=torch.bool)
    allowed[torch.tensor([0, num_items // 2, num_items - 1])] = True
    users = torch.zeros(6, len(synth.encoder.users), dtype=torch.long)
    out = sample_sequences(
        model,
        users,
        torch.full((6,), 12),
        torch.Generator().manual_seed(0),
        Sampling(no_repeat=True, item_allowed=allowed),
    )
    assert bool(allowed[out["item"]].all())  # never the padding index num_items


def test_classes_the_training_log_never_had_are_never_drawn(search):
    # a short fit leaves some mass on a field's "null" and "rare" classes; a column that had
    # neither must not get them in samples (nulls in ML-100K's rating broke its TSTR label)
    table, synth = search
    j = synth.encoder.event_field_names.index("action")
    codec = synth.encoder.fields[j]
    assert table.column("action").null_count == 0 and not codec.drawable()[-1]
    head = synth.model.field_heads[j]
    last = head[-1] if isinstance(head, torch.nn.Sequential) else head
    with torch.no_grad():
        saved = last.bias.clone()
        last.bias[-2:] += 50.0  # the model would now draw "rare" or null almost always
        try:
            out = synth.sample_table(users=30, seed=5)
        finally:
            last.bias.copy_(saved)
    assert out.column("action").null_count == 0
    assert set(out.column("action").to_pylist()) <= set(codec.values)


def test_rebalance_moves_item_attribute_shares(search):
    _, synth = search
    plain = synth.sample_table(users=60, seed=3)
    target = {"cat 0": 1.0, "cat 1": 1.0}
    tilted = synth.sample_table(users=60, seed=3, rebalance={"cat": target})
    share = pc.mean(pc.is_in(tilted["cat"], pa.array(["cat 0", "cat 1"]))).as_py()
    before = pc.mean(pc.is_in(plain["cat"], pa.array(["cat 0", "cat 1"]))).as_py()
    assert share > 0.95 > before


def test_sampling_knobs_change_diversity(taobao):
    _, synth = taobao
    model = synth.model
    user = torch.zeros(50, len(model.spec.user_classes), dtype=torch.long)
    lengths = torch.full((50,), 6)

    def distinct(s):
        out = sample_sequences(model, user, lengths, torch.Generator().manual_seed(0), s)
        return len(torch.unique(out["item"]))

    assert distinct(Sampling(temperature=0.3, top_p=0.5)) < distinct(Sampling(temperature=1.5))


def test_longer_than_the_window_single_event_users_and_tied_times():
    rng = np.random.default_rng(0)
    n_users = 12
    lengths = np.r_[1, 1, 30, rng.integers(2, 8, n_users - 3)]
    user = np.repeat(np.arange(n_users), lengths)
    table = pa.table(
        {
            "user_id": pa.array(user + 1, pa.int64()),
            "item_id": pa.array(rng.integers(0, 15, len(user)), pa.int64()),
            "timestamp": pa.array(1_700_000_000 + user * 1000 + rng.integers(0, 3, len(user))),
        }
    )
    synth = SequenceSynthesizer().fit(table, cfg=TINY)  # window 8 < 30 events
    model = synth.model
    user = torch.zeros(2, len(model.spec.user_classes), dtype=torch.long)
    steps = sample_sequences(
        model, user, torch.tensor([30, 1]), torch.Generator().manual_seed(0), Sampling()
    )  # 30 steps through a window of 8: the sliding key/value cache
    assert len(steps["item"]) == 31
    assert ((steps["item"] >= 0) & (steps["item"] < model.spec.num_items)).all()
    out = synth.sample(users=40, seed=0)
    t = out.events.column("timestamp").to_numpy()
    u = out.events.column("user_id").to_numpy()
    same = u[1:] == u[:-1]
    assert (np.diff(t)[same] >= 0).all()


def test_a_log_without_time_or_user_column_names_what_it_found():
    table = taobao_log(300, seed=0).drop_columns(["timestamp"])
    with pytest.raises(
        DataError, match="needs a user, an item and a time column.*--generator rows"
    ):
        SequenceSynthesizer().fit(table, cfg=TINY)
    with pytest.raises(DataError, match="columns found: user_id, item_id, category_id"):
        SequenceSynthesizer().fit(table, cfg=TINY)


def test_save_and_load_give_the_same_samples(taobao, tmp_path):
    from synthrec.sequences.artifacts import load_sequence_model, save_sequence_model

    _, synth = taobao
    save_sequence_model(synth, str(tmp_path / "model"))
    loaded = load_sequence_model(str(tmp_path / "model"))
    a = synth.sample_table(users=12, seed=4, conditions={"category_id": 1_000})
    b = loaded.sample_table(users=12, seed=4, conditions={"category_id": 1_000})
    assert a.equals(b)
    assert set(a["category_id"].to_pylist()) == {1_000}


def test_adversarial_phase_moves_the_generator_towards_the_critic():
    table = taobao_log(800, seed=6)
    cfg = TINY.model_copy(update={"adversarial_steps": 4, "epochs": 1})
    synth = SequenceSynthesizer().fit(table, cfg=cfg)
    assert synth.metadata["metrics"]["adversarial_steps"] == 4
    plain = SequenceSynthesizer().fit(table, cfg=cfg.model_copy(update={"adversarial_steps": 0}))
    a = dict(plain.model.named_parameters())
    moved = [k for k, v in synth.model.named_parameters() if not torch.equal(v, a[k])]
    assert moved  # the policy-gradient steps changed the weights the likelihood phase left


def test_python_api_takes_pandas_and_draws_a_fresh_seed_per_call(taobao):
    import synthrec

    table, _ = taobao
    df = table.slice(0, 600).to_pandas()
    seq = synthrec.SequenceSynthesizer().fit(df, cfg=TINY)
    a, b = seq.sample_table(users=8), seq.sample_table(users=8)
    assert type(a).__name__ == "DataFrame" and list(a.columns) == list(df.columns)
    assert not a.equals(b)
    assert seq.sample_table(users=8, seed=3).equals(seq.sample_table(users=8, seed=3))


def test_session_level_fields_stay_constant_within_synthetic_sessions():
    from tests.logshapes import simulator_log

    table, schema = simulator_log(3_000, seed=2)
    synth = SequenceSynthesizer().fit(table, schema=schema, cfg=TINY)
    names = synth.encoder.event_field_names
    assert "query" in [names[j] for j in synth.model.spec.session_level]
    out = synth.sample_table(users=30, seed=1)
    grouped = out.group_by("session_id").aggregate([("query", "count_distinct")])
    assert grouped.num_rows > 30  # users have several sessions
    assert max(grouped.column("query_count_distinct").to_pylist()) == 1  # nulls count 0


def test_item_grid_by_attribute_keeps_clusters_within_one_or_two_categories():
    table = taobao_log(2_000, seed=0)
    log = relational_view(table)
    _, seqs, _ = SequenceEncoder.fit(log)
    n = log.items.num_rows
    category = pc.dictionary_encode(log.items.column("category_id")).combine_chunks()
    codes = category.indices.to_numpy()
    grid = item_grid(seqs, n, seed=0, attribute=codes)
    assert sorted(grid[grid < n].tolist()) == list(range(n))
    spans = [len(set(codes[row[row < n]].tolist())) for row in grid]
    # items sorted by category and cut into runs: each category boundary splits one cluster
    assert sum(spans) <= len(grid) + len(set(codes.tolist())) - 1
