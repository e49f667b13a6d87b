"""Model directories: save and load a `Synthesizer` at a local path or s3:// URI.

A model directory, published atomically through the storage layer's manifest:
- config.json          format, GanConfig, schema, encoder metadata (JSON only)
- generator.safetensors generator weights (float32, CPU)
- encoder.safetensors  the encoder's numeric arrays (means, vocabularies as utf-8 bytes, ...)
- metadata.json        version, training-data fingerprint, metrics, anything the caller adds

Nothing is unpickled on load; weights saved on a GPU load on any device.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load as np_load
from safetensors.numpy import save as np_save
from safetensors.torch import load as torch_load
from safetensors.torch import save as torch_save

from synthrec import storage as store
from synthrec.config import GanConfig, StorageConfig, validate_config
from synthrec.encoding import Encoder
from synthrec.errors import ConfigError, ModelError

MODEL_FORMAT = 1
FILES = ("config.json", "generator.safetensors", "encoder.safetensors", "metadata.json")


def save_synthesizer(
    synth, uri: str, storage: StorageConfig | None = None, metadata: dict[str, Any] | None = None
):
    """Publish `synth` as a model directory at `uri`; returns the storage Manifest."""
    if synth.generator is None:
        raise ModelError("cannot save an unfitted synthesizer; call fit() first")
    files = model_files(synth, metadata)
    meta = json.loads(files["metadata.json"])
    return store.publish_files(
        uri, files, storage, metadata={"version": meta.get("version"), "format": MODEL_FORMAT}
    )


def model_files(synth, metadata: dict[str, Any] | None = None) -> dict[str, bytes]:
    """The directory's files as bytes (what save_synthesizer publishes)."""
    enc_meta, enc_arrays = synth.encoder.state()
    config = {
        "format": MODEL_FORMAT,
        "gan_config": synth.cfg.model_dump(mode="json"),
        "schema": synth.encoder.schema.to_dict(),
        "encoder": enc_meta,
    }
    weights = {
        k: v.detach().to("cpu").contiguous() for k, v in synth.generator.state_dict().items()
    }
    meta = {**synth.metadata, **(metadata or {})}
    return {
        "config.json": json.dumps(config, indent=1).encode(),
        "generator.safetensors": torch_save(weights),
        "encoder.safetensors": np_save({k: np.ascontiguousarray(v) for k, v in enc_arrays.items()}),
        "metadata.json": json.dumps(meta, indent=1, default=_json_default).encode(),
    }


def load_synthesizer(
    uri: str,
    storage: StorageConfig | None = None,
    device: str | torch.device = "cpu",
    manifest: store.Manifest | None = None,
):
    """Load a published model directory; weights are mapped onto `device`. With `manifest`
    (read once by a driver), exactly that version is loaded."""
    from synthrec.gan.synthesizer import Synthesizer

    files = store.read_files(uri, FILES, storage, manifest=manifest)
    try:
        config = json.loads(files["config.json"])
        metadata = json.loads(files["metadata.json"])
    except ValueError as err:
        raise ModelError(
            f"{uri}: config.json or metadata.json is not valid JSON ({err}); re-save the model"
        ) from None
    if config.get("format") != MODEL_FORMAT:
        raise ModelError(
            f"{uri}: model format {config.get('format')!r} is not supported "
            f"(expected {MODEL_FORMAT}); retrain or re-save it with this synthrec version"
        )
    try:
        cfg = validate_config(
            GanConfig, config["gan_config"], source=f"{uri}/config.json gan_config"
        )
    except ConfigError as err:
        raise ModelError(str(err)) from None
    try:
        encoder = Encoder.from_state(config["encoder"], np_load(files["encoder.safetensors"]))
        weights = torch_load(files["generator.safetensors"])
    except (KeyError, ValueError, RuntimeError, SafetensorError) as err:
        raise ModelError(
            f"{uri}: encoder or weights are unreadable ({err!r}); re-save the model"
        ) from None
    return Synthesizer.from_parts(encoder, cfg, weights, metadata=metadata, device=device)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"metadata value of type {type(value).__name__} is not JSON serializable")
