"""Sequence-model directories: save and load a `SequenceSynthesizer` (local path or s3://).

The directory follows `synthrec.model_dir` (kind "sequence"): its header holds the
SequenceConfig, the schema of the flat log and the JSON state (the sequence encoder, the
network spec, the id policy, the users-table calibration, the users GAN's header); beside it:
- sequence.safetensors        the transformer's weights (with the catalog grid)
- catalog.parquet             the catalog as given (the items table of the relational view)
- item_counts.safetensors     item frequencies in the training log (for rebalancing)
- users.generator.safetensors, users.encoder.safetensors   the users-table GAN

No real user id is stored: users are generated, their ids are fresh pseudonyms.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.numpy import load as np_load
from safetensors.numpy import save as np_save
from safetensors.torch import load as torch_load
from safetensors.torch import save as torch_save

from synthrec import artifacts as row_artifacts
from synthrec import model_dir
from synthrec.config import GanConfig, SequenceConfig, StorageConfig
from synthrec.errors import ModelError
from synthrec.storage import Manifest

KIND = "sequence"
TIED = ("embed.item.", "item_head.item_emb.")
PARTS = (
    "sequence.safetensors",
    "catalog.parquet",
    "item_counts.safetensors",
    "users.generator.safetensors",
    "users.encoder.safetensors",
)


def model_files(synth, metadata: dict[str, Any] | None = None) -> dict[str, bytes]:
    """The directory's files as bytes (what save_sequence_model publishes)."""
    if synth.model is None:
        raise ModelError("cannot save an unfitted sequence synthesizer; call fit() first")
    users = row_artifacts.model_files(synth.users_model)
    buf = io.BytesIO()
    pq.write_table(synth.items, buf)
    weights = {
        k: v.detach().cpu().contiguous()
        for k, v in synth.model.state_dict().items()
        if not k.startswith(TIED)  # the item embedding is stored once, as item_emb.weight
    }
    parts = {
        "sequence.safetensors": torch_save(weights),
        "catalog.parquet": buf.getvalue(),
        "item_counts.safetensors": np_save({"counts": np.asarray(synth.item_counts, np.int64)}),
        "users.generator.safetensors": users["generator.safetensors"],
        "users.encoder.safetensors": users["encoder.safetensors"],
    }
    state = {
        "encoder": synth.encoder.to_dict(),
        "spec": synth.model.spec.to_dict(),
        "id_prefix": synth.id_prefix,
        "id_floor": synth.id_floor,
        "calibration": synth.calibration,
        "flat_types": synth.flat_types,
        "repeat_rate": synth.repeat_rate,
        "users_header": json.loads(users[model_dir.HEADER]),
    }
    return model_dir.model_files(
        KIND, synth.schema, synth.cfg, state, {**synth.metadata, **(metadata or {})}, parts
    )


def save_sequence_model(
    synth, uri: str, storage: StorageConfig | None = None, metadata: dict | None = None
) -> Manifest:
    files = model_files(synth, metadata)
    return model_dir.publish_model_dir(uri, files, storage, version=synth.metadata.get("version"))


def load_sequence_model(
    uri: str,
    storage: StorageConfig | None = None,
    device: str | torch.device = "cpu",
    manifest: Manifest | None = None,
    files: dict[str, bytes] | None = None,
):
    """Load a published sequence-model directory onto `device` (from `files` when a driver
    read them already)."""
    d = model_dir.read_model_dir(
        uri, KIND, SequenceConfig, PARTS, storage, manifest=manifest, files=files
    )
    return from_model_dir(d, device)


def from_model_dir(d: model_dir.ModelDir, device: str | torch.device = "cpu"):
    from synthrec.encoding import Encoder
    from synthrec.gan.synthesizer import Synthesizer
    from synthrec.sequences.encoding import SequenceEncoder
    from synthrec.sequences.model import SequenceModel, SequenceSpec
    from synthrec.sequences.synthesizer import SequenceSynthesizer

    try:
        state = d.state
        users_header = state["users_header"]
        with d.reading("users.encoder.safetensors"):
            users_enc = Encoder.from_state(
                users_header["state"]["encoder"], np_load(d.files["users.encoder.safetensors"])
            )
        with d.reading("users.generator.safetensors"):
            users_weights = torch_load(d.files["users.generator.safetensors"])
        gan_cfg = GanConfig.model_validate(users_header["config"])
        synth = SequenceSynthesizer()
        synth.device = torch.device(device)
        synth.users_model = Synthesizer.from_parts(users_enc, gan_cfg, users_weights, device=device)
        synth.encoder = SequenceEncoder.from_dict(state["encoder"])
        with d.reading("catalog.parquet"):
            synth.items = pq.read_table(pa.BufferReader(d.files["catalog.parquet"]))
        with d.reading("item_counts.safetensors"):
            synth.item_counts = np_load(d.files["item_counts.safetensors"])["counts"]
        model = SequenceModel(SequenceSpec(**state["spec"]))
        with d.reading("sequence.safetensors"):
            missing, unexpected = model.load_state_dict(
                torch_load(d.files["sequence.safetensors"]), strict=False
            )
        if unexpected or any(not k.startswith(TIED) for k in missing):
            raise ValueError(f"weights missing {missing} or unexpected {unexpected}")
        synth.model = model.to(synth.device).eval()
        synth.cfg = d.config
        synth.id_prefix, synth.id_floor = state["id_prefix"], int(state["id_floor"])
        synth.calibration, synth.flat_types = state["calibration"], state["flat_types"]
        synth.metadata = dict(d.metadata)
        synth.schema = d.schema
        synth.repeat_rate = float(state["repeat_rate"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ModelError(
            f"{d.uri}: the sequence model's state is incomplete or does not fit its network "
            f"({str(err).splitlines()[0]}); re-save the model with this synthrec"
        ) from None
    return synth
