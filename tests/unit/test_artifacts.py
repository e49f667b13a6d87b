"""Model directories: local round trip, pickle-free contents, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from synthrec import storage
from synthrec.artifacts import load_synthesizer, model_files, save_synthesizer
from synthrec.config import EncoderConfig, GanConfig
from synthrec.errors import ModelError
from synthrec.gan import Synthesizer

CFG = GanConfig(
    embedding_dim=8,
    generator_dims=[16],
    critic_dims=[16],
    batch_size=50,
    pac=5,
    encoder=EncoderConfig(mode_fit_rows=300, id_profile_rows=500),
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
    assert config["format_version"] == 2 and config["kind"] == "row-gan"
    assert config["config"]["seed"] == CFG.seed and "columns" in config["schema"]
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


def _publish_with_header(synth, uri, **changes) -> str:
    files = model_files(synth)
    header = {**json.loads(files["config.json"]), **changes}
    storage.publish_files(uri, {**files, "config.json": json.dumps(header).encode()})
    return uri


def test_artifacts_incompatible_format_and_weights_are_model_errors(synth, tmp_path):
    old = _publish_with_header(synth, str(tmp_path / "old"), format_version=0)
    with pytest.raises(ModelError, match="format_version 0, this synthrec reads 2.*re-save"):
        load_synthesizer(old)
    new = _publish_with_header(synth, str(tmp_path / "new"), format_version=3)
    with pytest.raises(ModelError, match="format_version 3.*upgrade synthrec"):
        load_synthesizer(new)
    config = json.loads(model_files(synth)["config.json"])["config"]
    wide = _publish_with_header(
        synth, str(tmp_path / "wide"), config={**config, "generator_dims": [32]}
    )
    with pytest.raises(ModelError, match="do not match the config"):
        load_synthesizer(wide)
    files = model_files(synth)
    storage.publish_files(str(tmp_path / "bad"), {**files, "generator.safetensors": b"garbage"})
    with pytest.raises(ModelError, match="bad/generator.safetensors: unreadable"):
        load_synthesizer(str(tmp_path / "bad"))


def test_artifacts_header_problems_name_file_key_and_expectation(synth, tmp_path):
    from synthrec.recommender.artifacts import load_recommender

    uri = str(tmp_path / "gan")
    save_synthesizer(synth, uri)
    with pytest.raises(ModelError, match="kind 'row-gan', expected 'recommender'"):
        load_recommender(uri)
    files = model_files(synth)
    header = json.loads(files["config.json"])
    cases = {
        "no-state": (
            {k: v for k, v in header.items() if k != "state"},
            r"config.json: missing key\(s\) state",
        ),
        "no-encoder": ({**header, "state": {}}, "config.json: missing key 'state.encoder'"),
        "bad-config": (
            {**header, "config": {**header["config"], "pac": "ten"}},
            "config.json config: key 'pac'",
        ),
        "extra-config": (
            {**header, "config": {**header["config"], "nope": 1}},
            "unknown key 'nope'",
        ),
    }
    for name, (bad, message) in cases.items():
        storage.publish_files(
            str(tmp_path / name), {**files, "config.json": json.dumps(bad).encode()}
        )
        with pytest.raises(ModelError, match=message):
            load_synthesizer(str(tmp_path / name))
    storage.publish_files(str(tmp_path / "json"), {**files, "metadata.json": b"{not json"})
    with pytest.raises(ModelError, match="json/metadata.json is not valid JSON"):
        load_synthesizer(str(tmp_path / "json"))
    del files["encoder.safetensors"]
    storage.publish_files(str(tmp_path / "part"), files)
    with pytest.raises(ModelError, match="part lacks encoder.safetensors"):
        load_synthesizer(str(tmp_path / "part"))


def test_artifacts_format_1_directories_still_load(synth, tmp_path):
    """A directory written before the common header (config.json with "format": 1)."""
    files = model_files(synth)
    header = json.loads(files["config.json"])
    old = {
        "format": 1,
        "gan_config": header["config"],
        "schema": header["schema"],
        "encoder": header["state"]["encoder"],
    }
    uri = str(tmp_path / "v1")
    storage.publish_files(uri, {**files, "config.json": json.dumps(old).encode()})
    loaded = load_synthesizer(uri)
    assert loaded.metadata["version"] == synth.metadata["version"]
    assert loaded.sample_block(0, 100, seed=3).equals(synth.sample_block(0, 100, seed=3))
    storage.publish_files(
        str(tmp_path / "v0"), {**files, "config.json": json.dumps({**old, "format": 0}).encode()}
    )
    with pytest.raises(ModelError, match="unknown model format 0.*retrain"):
        load_synthesizer(str(tmp_path / "v0"))
