"""Model directories round trip without pickle; `Recommender.recommend` and cold starts."""

import json

import numpy as np
import pyarrow as pa
import pytest
import torch
from safetensors.torch import save as save_tensors
from test_recommender_data import toy_table

from synthrec.config import RecommenderConfig
from synthrec.errors import DataError, ModelError
from synthrec.recommender.artifacts import (
    PARTS,
    build_recommender,
    load_recommender,
    recommender_files,
    save_recommender,
)
from synthrec.recommender.baselines import Popularity
from synthrec.recommender.data import InteractionEncoder
from synthrec.recommender.train import fit
from synthrec.storage import publish_files, read_files


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def recommender():
    table = toy_table(num_users=20)
    cfg = RecommenderConfig(dim=16, num_layers=1, num_heads=1, max_len=6, epochs=3, batch_size=16)
    enc = InteractionEncoder.fit(table, cfg)
    log = enc.encode(table)
    model = fit(enc, cfg, log).model
    return build_recommender(
        model, enc, cfg, log, Popularity(log, enc.num_items).counts, {"epochs": 3}
    )


def test_artifacts_round_trip_gives_identical_recommendations(recommender, tmp_path):
    uri = str(tmp_path / "model")
    save_recommender(recommender, uri)
    loaded = load_recommender(uri)
    for user in ("u0", "u7"):
        assert loaded.recommend(user, k=5) == recommender.recommend(user, k=5)
    assert loaded.recommend(history=["i1", "i2"], k=3) == recommender.recommend(
        history=["i1", "i2"], k=3
    )
    assert loaded.metadata["num_items"] == 10 and loaded.metadata["training"] == {"epochs": 3}


def test_artifacts_refuse_other_formats_and_never_unpickle(recommender, tmp_path):
    uri = str(tmp_path / "bad")
    publish_files(uri, {"config.json": json.dumps({"format": "something-else"}).encode()})
    with pytest.raises(ModelError, match="unknown model format 'something-else'"):
        load_recommender(uri)
    save_recommender(recommender, str(tmp_path / "good"))
    names = set(read_files(str(tmp_path / "good")))
    assert names == {"config.json", "metadata.json", *PARTS}
    assert not any(n.endswith((".pt", ".pkl", ".bin")) for n in names)


def test_artifacts_malformed_parts_are_model_errors_naming_file_and_key(recommender, tmp_path):
    files = recommender_files(recommender)
    header = json.loads(files["config.json"])
    spec = {**header["state"]["model_spec"], "width": 3}
    broken = {
        "spec": (
            {"config.json": {**header, "state": {**header["state"], "model_spec": spec}}},
            "config.json state.model_spec: unreadable",
        ),
        "config": (
            {"config.json": {**header, "config": {**header["config"], "dim": "wide"}}},
            "config.json config: key 'dim'",
        ),
        "state": (
            {"config.json": {**header, "state": {"encoder": header["state"]["encoder"]}}},
            "missing key 'state.model_spec'",
        ),
    }
    for name, (changes, message) in broken.items():
        changed = {k: json.dumps(v).encode() for k, v in changes.items()}
        publish_files(str(tmp_path / name), {**files, **changed})
        with pytest.raises(ModelError, match=message):
            load_recommender(str(tmp_path / name))
    users = {**files, "users.safetensors": save_tensors({"history": torch.zeros(1, 2)})}
    publish_files(str(tmp_path / "users"), users)
    with pytest.raises(ModelError, match="users.safetensors: missing key 'user_cat'"):
        load_recommender(str(tmp_path / "users"))


def test_artifacts_format_1_recommender_directories_still_load(recommender, tmp_path):
    """Written before the common header: no metadata.json, training facts in config.json."""
    files = recommender_files(recommender)
    header = json.loads(files.pop("config.json"))
    del files["metadata.json"]
    old = {
        "format": "synthrec-recommender",
        "version": 1,
        "model_spec": header["state"]["model_spec"],
        "encoder": header["state"]["encoder"],
        "config": header["config"],
        "training": {"epochs": 3},
    }
    uri = str(tmp_path / "v1")
    publish_files(uri, {**files, "config.json": json.dumps(old).encode()})
    loaded = load_recommender(uri)
    assert loaded.training == {"epochs": 3}
    assert loaded.recommend("u2", k=5) == recommender.recommend("u2", k=5)


def test_recommend_known_user_excludes_history(recommender):
    items, scores, cold = recommender.recommend("u3", k=4)
    seen = set(
        recommender.encoder.item_ids.take(
            [i - 1 for i in recommender.histories[recommender._user_index["u3"]] if i]
        ).to_pylist()
    )
    assert not cold and len(items) == 4 and not seen & set(items)
    assert scores == sorted(scores, reverse=True)
    all_items, _, _ = recommender.recommend("u3", k=10, exclude_seen=False)
    assert len(all_items) == 10


def test_recommend_cold_start_from_history_or_popularity(recommender):
    items, _, cold = recommender.recommend("nobody", history=["i4"], k=3)
    assert cold and "i4" not in items
    items, scores, cold = recommender.recommend(k=3)
    expected = np.argsort(-recommender.popularity[1:], kind="stable")[:3]
    assert cold and items == recommender.encoder.item_ids.take(expected).to_pylist()


def test_recommend_rejects_unknown_items_query_and_bad_k(recommender):
    with pytest.raises(DataError, match="no-such-item"):
        recommender.recommend("u1", history=["no-such-item"])
    with pytest.raises(DataError, match="query"):
        recommender.recommend("u1", query="red shoes")
    with pytest.raises(DataError, match="k must"):
        recommender.recommend("u1", k=0)


def test_recommend_with_query_uses_the_hashed_tokens(tmp_path):
    table = toy_table(num_users=20)
    queries = [f"genre {g}" for g in table.column("genre").to_pylist()]
    table = table.append_column("query", pa.array(queries))
    cfg = RecommenderConfig(
        dim=16, num_layers=1, max_len=6, epochs=5, batch_size=16, lr=1e-2, query_buckets=64
    )
    enc = InteractionEncoder.fit(table, cfg)
    assert enc.columns.query == "query"
    log = enc.encode(table)
    rec = build_recommender(
        fit(enc, cfg, log).model, enc, cfg, log, Popularity(log, enc.num_items).counts, {}
    )
    save_recommender(rec, str(tmp_path / "q"))
    loaded = load_recommender(str(tmp_path / "q"))
    assert loaded.metadata["accepts_query"]
    _, plain, _ = loaded.recommend("u1", k=10)
    _, with_query, cold = loaded.recommend("u1", query="genre a", k=10)
    assert not cold and plain != with_query
    _, new_user, cold = loaded.recommend(
        "someone-new", query="genre b", k=3
    )  # cold start served by the query
    assert cold and len(new_user) == 3
