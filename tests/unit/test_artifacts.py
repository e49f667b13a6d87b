"""Model directories: local round trip, pickle-free contents, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from synthrec import storage
from synthrec.artifacts import load_synthesizer, model_files, save_synthesizer
from synthrec.config import GanConfig
from synthrec.errors import ModelError
from synthrec.gan import Synthesizer

CFG = GanConfig(
    embedding_dim=8,
    generator_dims=[16],
    critic_dims=[16],
    batch_size=50,
    pac=5,
    mode_fit_rows=300,
    id_profile_rows=500,
    sample_batch_rows=200,
)


def make_table(n: int = 600, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "user_id": pa.array([f"u{i}" for i in rng.integers(0, 90, n)]),
            "genre": pa.array(rng.choice(["x", "y", "z"], n)),
            "price": pa.array(rng.lognormal(2, 1, n), mask=rng.random(n) < 0.1),
            "click": pa.array(rng.integers(0, 2, n), pa.int8()),
        }
    )


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    return Synthesizer().fit(make_table(), cfg=CFG, epochs=1)


def test_artifacts_local_round_trip_samples_identically(synth, tmp_path):
    uri = str(tmp_path / "model")
    save_synthesizer(synth, uri, metadata={"note": "unit"})
    loaded = load_synthesizer(uri, device="cpu")
    assert loaded.sample_block(1, 250, seed=9, conditions={"genre": "y"}).equals(
        synth.sample_block(1, 250, seed=9, conditions={"genre": "y"})
    )
    assert loaded.cfg == synth.cfg and loaded.encoder.schema == synth.encoder.schema
    assert loaded.metadata["version"] == synth.metadata["version"]
    assert (
        loaded.metadata["fingerprint"] == synth.metadata["fingerprint"]
        and loaded.metadata["note"] == "unit"
    )
    manifest = storage.read_manifest(uri)
    assert manifest.metadata["version"] == synth.metadata["version"]


def test_artifacts_files_are_json_and_safetensors_only(synth):
    files = model_files(synth)
    assert set(files) == {
        "config.json",
        "generator.safetensors",
        "encoder.safetensors",
        "metadata.json",
    }
    config = json.loads(files["config.json"])
    assert config["gan_config"]["seed"] == CFG.seed and "columns" in config["schema"]
    for name in ("generator.safetensors", "encoder.safetensors"):
        header_len = int.from_bytes(files[name][:8], "little")  # safetensors: JSON header
        json.loads(files[name][8 : 8 + header_len])
        assert b"\x80\x04\x95" not in files[name][:64]  # no pickle protocol marker


def test_artifacts_missing_model_is_model_error(tmp_path):
    with pytest.raises(ModelError, match="nothing is published"):
        load_synthesizer(str(tmp_path / "nothing"))


def test_artifacts_unfitted_synthesizer_is_model_error(tmp_path):
    with pytest.raises(ModelError, match="unfitted"):
        save_synthesizer(Synthesizer(), str(tmp_path / "m"))


def test_artifacts_incompatible_format_and_weights_are_model_errors(synth, tmp_path):
    files = model_files(synth)
    config = json.loads(files["config.json"])
    storage.publish_files(
        str(tmp_path / "old"),
        {**files, "config.json": json.dumps({**config, "format": 0}).encode()},
    )
    with pytest.raises(ModelError, match="format 0 is not supported"):
        load_synthesizer(str(tmp_path / "old"))
    wide = {**config, "gan_config": {**config["gan_config"], "generator_dims": [32]}}
    storage.publish_files(
        str(tmp_path / "wide"), {**files, "config.json": json.dumps(wide).encode()}
    )
    with pytest.raises(ModelError, match="do not match the config"):
        load_synthesizer(str(tmp_path / "wide"))
    storage.publish_files(str(tmp_path / "bad"), {**files, "generator.safetensors": b"garbage"})
    with pytest.raises(ModelError, match="unreadable"):
        load_synthesizer(str(tmp_path / "bad"))
