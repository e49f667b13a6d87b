"""Row-GAN model directories: save and load a `Synthesizer` at a local path or s3:// URI.

The directory follows `synthrec.model_dir` (kind "row-gan"): its header holds the GanConfig,
the schema and the encoder's JSON state; beside it:
- generator.safetensors generator weights (float32, CPU)
- encoder.safetensors  the encoder's numeric arrays (means, vocabularies as utf-8 bytes, ...)
- metadata.json        version, training-data fingerprint, metrics, anything the caller adds

Nothing is unpickled on load; weights saved on a GPU load on any device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from safetensors.numpy import load as np_load
from safetensors.numpy import save as np_save
from safetensors.torch import load as torch_load
from safetensors.torch import save as torch_save

from synthrec import model_dir
from synthrec.config import GanConfig, StorageConfig
from synthrec.encoding import Encoder
from synthrec.errors import ModelError
from synthrec.storage import Manifest

KIND = "row-gan"
PARTS = ("generator.safetensors", "encoder.safetensors")


def save_synthesizer(
    synth, uri: str, storage: StorageConfig | None = None, metadata: dict[str, Any] | None = None
):
    """Publish `synth` as a model directory at `uri`; returns the storage Manifest."""
    if synth.generator is None:
        raise ModelError("cannot save an unfitted synthesizer; call fit() first")
    meta = {**synth.metadata, **(metadata or {})}
    return model_dir.publish_model_dir(
        uri, model_files(synth, metadata), storage, version=meta.get("version")
    )


def model_files(synth, metadata: dict[str, Any] | None = None) -> dict[str, bytes]:
    """The directory's files as bytes (what save_synthesizer publishes)."""
    enc_meta, enc_arrays = synth.encoder.state()
    weights = {
        k: v.detach().to("cpu").contiguous() for k, v in synth.generator.state_dict().items()
    }
    parts = {
        "generator.safetensors": torch_save(weights),
        "encoder.safetensors": np_save({k: np.ascontiguousarray(v) for k, v in enc_arrays.items()}),
    }
    return model_dir.model_files(
        KIND,
        synth.encoder.schema.to_dict(),
        synth.cfg,
        {"encoder": enc_meta},
        {**synth.metadata, **(metadata or {})},
        parts,
    )


def load_synthesizer(
    uri: str,
    storage: StorageConfig | None = None,
    device: str | torch.device = "cpu",
    manifest: Manifest | None = None,
    files: dict[str, bytes] | None = None,
):
    """Load a published model directory; weights are mapped onto `device`. With `manifest`
    (read once by a driver), exactly that version is loaded; with `files` (read and checked
    by a driver), nothing is read from storage."""
    from synthrec.gan.synthesizer import Synthesizer

    d = model_dir.read_model_dir(
        uri, KIND, GanConfig, PARTS, storage, manifest=manifest, files=files
    )
    encoder_state = d.part("encoder")
    with d.reading("encoder.safetensors"):
        encoder = Encoder.from_state(encoder_state, np_load(d.files["encoder.safetensors"]))
    with d.reading("generator.safetensors"):
        weights = torch_load(d.files["generator.safetensors"])
    return Synthesizer.from_parts(encoder, d.config, weights, metadata=d.metadata, device=device)
