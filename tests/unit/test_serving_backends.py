"""Model backends of the serving layer on real model directories (local files, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from synthrec.config import RecommenderConfig, SimulateConfig
from synthrec.data.simulator import simulate
from synthrec.recommender.artifacts import build_recommender, save_recommender
from synthrec.recommender.data import InteractionEncoder
from synthrec.recommender.train import fit
from synthrec.serving.backends import RecommenderBackend, public_metadata
from synthrec.storage import read_manifest

PRIVATE = {"real_uri": "s3://private-bucket/real", "synthetic_uri": "s3://private/syn"}


def _recommender(seed: int):
    table = simulate(SimulateConfig(rows=2_000, num_users=60, num_items=200, seed=3))
    cfg = RecommenderConfig(dim=8, num_layers=1, max_len=8, epochs=1, batch_size=256, seed=seed)
    encoder = InteractionEncoder.fit(table, cfg)
    known = encoder.encode(table)
    model = fit(encoder, cfg, known).model
    popularity = np.bincount(known.items, minlength=encoder.num_items + 1)
    training = {**PRIVATE, "run_name": "rec-run-1", "epochs": 1, "train_seconds": 1.5}
    return build_recommender(model, encoder, cfg, known, popularity, training)


@pytest.fixture(scope="module")
def two_models():
    return _recommender(seed=0), _recommender(seed=1)


def test_serving_recommender_version_belongs_to_the_weights_it_loaded(
    two_models, tmp_path, monkeypatch
):
    """A new model published while a replica loads must not lend its version to the old weights."""
    import synthrec.serving.scoring as scoring

    first, second = two_models
    uri = str(tmp_path / "rec")
    save_recommender(first, uri)
    loaded = {e.path.rsplit("/", 1)[-1]: e.sha256 for e in read_manifest(uri).files}[
        "model.safetensors"
    ]

    real = scoring.BatchRecommender

    def publish_meanwhile(*args, **kwargs):  # runs after the weights are read
        save_recommender(second, uri)
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "BatchRecommender", publish_meanwhile)
    backend = RecommenderBackend(uri)
    published = {e.path.rsplit("/", 1)[-1]: e.sha256 for e in read_manifest(uri).files}
    assert published["model.safetensors"] != loaded  # the second model is published now
    assert backend.version == loaded[:16]
    state = backend.model.model.state_dict()
    assert all(
        (state[k] == v).all() for k, v in first.model.state_dict().items()
    )  # and the weights served are the first model's


def test_serving_models_info_hides_uris_and_run_names(two_models, tmp_path):
    uri = str(tmp_path / "rec")
    save_recommender(two_models[0], uri)
    info = RecommenderBackend(uri).model_info()
    text = repr(info)
    assert "private" not in text and "rec-run-1" not in text and uri not in text
    assert info["metadata"]["training"] == {"epochs": 1, "train_seconds": 1.5}
    assert info["metadata"]["num_items"] > 0 and info["loaded"] is True


def test_serving_public_metadata_is_a_whitelist():
    meta = {
        "data_uri": "s3://b/real",
        "run_name": "x",
        "metrics": {"loss": 0.5, "path": "/data"},
        "created_at": "2026-01-01",
        "new_key": 1,
    }
    assert public_metadata(meta, frozenset({"metrics", "created_at"})) == {
        "created_at": "2026-01-01",
        "metrics": {"loss": 0.5},
    }
