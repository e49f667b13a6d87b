"""Model F directories and the `Recommender` inference object. Loading never unpickles.

The directory follows `synthrec.model_dir` (kind "recommender"): its header holds the
RecommenderConfig, the columns it reads (schema) and the JSON state (ModelSpec, the
interaction encoder's columns and codecs); metadata.json holds the training facts. Beside them:

    model.safetensors    weights (item attribute tables are buffers inside)
    items.parquet        item ids (original type) in index order (index = row + 1)
    item_index.safetensors   "vectors" (I+1, d): the item-embedding index for serving;
                         "popularity" (I+1,)
    users.parquet        known user ids in index order
    users.safetensors    "history" (U, L) last L item indices (left-padded with 0),
                         "user_cat", "user_num"
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from synthrec import model_dir
from synthrec.config import RecommenderConfig, StorageConfig
from synthrec.errors import DataError, ModelError
from synthrec.recommender.data import PAD, InteractionEncoder, Log
from synthrec.recommender.model import ModelSpec, RecommenderModel
from synthrec.recommender.recommend import BatchRecommender
from synthrec.recommender.train import ModelScorer
from synthrec.storage import parquet_bytes, read_files

KIND = "recommender"
PARTS = (
    "model.safetensors",
    "items.parquet",
    "item_index.safetensors",
    "users.parquet",
    "users.safetensors",
)


@dataclass
class Recommender:
    """Model F ready to serve: `recommend(...)` for one request, `score(...)` for evaluation."""

    model: RecommenderModel
    encoder: InteractionEncoder
    config: RecommenderConfig
    item_vectors: torch.Tensor  # (I+1, d)
    popularity: np.ndarray  # (I+1,) training interactions per item
    user_ids: pa.Array  # (U,)
    histories: np.ndarray  # (U, L) left-padded item indices
    user_cat: np.ndarray  # (U, Cu)
    user_num: np.ndarray  # (U, 2·Mu)
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.model.eval()
        self._user_index = {str(u): i for i, u in enumerate(self.user_ids.to_pylist())}
        self._scorer = ModelScorer(
            self.model, self.encoder.user_token, log_probs=self.config.loss == "softmax"
        )
        self._batch: BatchRecommender | None = None

    # ------------------------------------------------------------------ serving

    @property
    def metadata(self) -> dict[str, Any]:
        c = self.encoder.columns
        return {
            "format_version": model_dir.FORMAT_VERSION,
            "kind": KIND,
            "num_items": self.encoder.num_items,
            "num_users": len(self.user_ids),
            "dim": self.model.spec.dim,
            "max_len": self.model.spec.max_len,
            "columns": {
                "user": c.user,
                "item": c.item,
                "time": c.time,
                "user_features": list(c.user_features),
                "item_features": list(c.item_features),
                "query": c.query,
                "labels": list(c.labels) if self.model.ranker is not None else [],
            },
            "accepts_query": self.encoder.query_buckets > 0,
            "training": self.training,
        }

    def recommend(
        self,
        user_id: Any = None,
        history: list | None = None,
        query: str | None = None,
        k: int = 10,
        exclude_seen: bool = True,
    ) -> tuple[list, list[float], bool]:
        """Top-k (item ids, scores, cold_start). A known user's stored history is extended by
        `history`; an unknown user is a cold start, served from `history`/`query` by the model
        or, with neither, by popularity. Serving answers batches with the same code
        (`synthrec.recommender.recommend.BatchRecommender`)."""
        if self._batch is None:
            self._batch = BatchRecommender(self, next(self.model.parameters()).device)
        (answer,) = self._batch.rank_many([(user_id, history, query, k, exclude_seen)])
        if isinstance(answer, DataError):
            raise answer
        ids = self.encoder.item_ids.take(pa.array(answer.items - 1)).to_pylist()
        return ids, answer.scores, answer.cold_start

    def user_row(self, user_id: Any) -> int | None:
        """Row of a known user in `histories`, `user_cat` and `user_num`; None for a new one."""
        return None if user_id is None else self._user_index.get(str(user_id))

    # ------------------------------------------------------------------ evaluation

    def score(self, log: Log, group: np.ndarray, stop: np.ndarray) -> np.ndarray:
        """The metrics `Scorer` protocol (log encoded with `self.encoder`)."""
        return self._scorer.score(log, group, stop)


# ---------------------------------------------------------------------------- build / save / load


def build_recommender(
    model: RecommenderModel,
    encoder: InteractionEncoder,
    cfg: RecommenderConfig,
    known: Log,
    popularity: np.ndarray,
    training: dict[str, Any],
) -> Recommender:
    """Bundle a trained model with the known users' latest histories and item popularity."""
    model.eval()
    L = model.spec.max_len - 1
    n = known.lengths
    take = np.minimum(n, L)
    cols = np.arange(L)[None, :]
    src = (known.offsets[1:] - take)[:, None] + cols - (L - take)[:, None]  # right-aligned
    histories = np.where(
        cols >= (L - take)[:, None], known.items[np.clip(src, 0, max(len(known.items) - 1, 0))], PAD
    )
    with torch.no_grad():
        vectors = model.item_vectors().detach().clone()
    return Recommender(
        model,
        encoder,
        cfg,
        vectors,
        popularity.astype(np.float64),
        known.user_ids,
        histories.astype(np.int64),
        known.user_cat,
        known.user_num,
        dict(training),
    )


def recommender_files(rec: Recommender) -> dict[str, bytes]:
    state = {k: v.detach().cpu().contiguous() for k, v in rec.model.state_dict().items()}
    parts = {
        "model.safetensors": save_tensors(state),
        "items.parquet": parquet_bytes(pa.table({"item_id": rec.encoder.item_ids})),
        "item_index.safetensors": save_tensors(
            {
                "vectors": rec.item_vectors.cpu().contiguous(),
                "popularity": torch.from_numpy(rec.popularity),
            }
        ),
        "users.parquet": parquet_bytes(pa.table({"user_id": rec.user_ids})),
        "users.safetensors": save_tensors(
            {
                "history": torch.from_numpy(rec.histories),
                "user_cat": torch.from_numpy(rec.user_cat),
                "user_num": torch.from_numpy(rec.user_num),
            }
        ),
    }
    encoder = rec.encoder.to_dict()
    return model_dir.model_files(
        KIND,
        {"columns": encoder["columns"]},
        rec.config,
        {"model_spec": rec.model.spec.to_dict(), "encoder": encoder},
        {"training": rec.training},
        parts,
    )


def has_ranking_heads(uri: str, storage: StorageConfig | None = None) -> bool:
    """Whether the recommender directory at `uri` can rank candidates (/v1/rank), reading only
    its header."""
    header = json.loads(read_files(uri, [model_dir.HEADER], storage)[model_dir.HEADER])
    return int(header.get("state", {}).get("model_spec", {}).get("num_labels", 0)) > 0


def save_recommender(rec: Recommender, uri: str, storage: StorageConfig | None = None) -> None:
    model_dir.publish_model_dir(uri, recommender_files(rec), storage)


def load_recommender(uri: str, storage: StorageConfig | None = None) -> Recommender:
    return recommender_from_dir(read_recommender_dir(uri, storage))


def read_recommender_dir(uri: str, storage: StorageConfig | None = None) -> model_dir.ModelDir:
    """The checked model directory of a recommender: header, metadata and files, one read."""
    return model_dir.read_model_dir(uri, KIND, RecommenderConfig, PARTS, storage)


def recommender_from_dir(d: model_dir.ModelDir) -> Recommender:
    """A Recommender from a directory read once (serving hashes the same weight bytes)."""
    uri = d.uri
    with d.reading("items.parquet"):
        item_ids = _column(d.files["items.parquet"], "item_id")
    with d.reading("model.safetensors"):
        state = load_tensors(d.files["model.safetensors"])
        item_cat, item_num = state["items.item_cat"].numpy(), state["items.item_num"].numpy()
    with d.reading("config.json state.model_spec"):
        spec = ModelSpec.from_dict(d.part("model_spec"))
    with d.reading("config.json state.encoder"):
        encoder = InteractionEncoder.from_dict(d.part("encoder"), item_ids, item_cat, item_num)
    model = RecommenderModel(spec)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise ModelError(
            f"{uri}/model.safetensors: weights do not fit the model spec "
            f"({(lines[1:] or lines)[0]}); re-save the model"
        ) from None
    with d.reading("item_index.safetensors"):
        index = load_tensors(d.files["item_index.safetensors"])
        vectors, popularity = index["vectors"], index["popularity"].numpy()
    with d.reading("users.safetensors"):
        users = load_tensors(d.files["users.safetensors"])
        history, user_cat, user_num = (
            users[k].numpy() for k in ("history", "user_cat", "user_num")
        )
    with d.reading("users.parquet"):
        user_ids = _column(d.files["users.parquet"], "user_id")
    return Recommender(
        model,
        encoder,
        d.config,
        vectors,
        popularity,
        user_ids,
        history,
        user_cat,
        user_num,
        d.metadata.get("training", {}),
    )


def _column(data: bytes, name: str) -> pa.Array:
    table = pq.read_table(io.BytesIO(data))
    if name not in table.column_names:
        raise KeyError(name)
    return table.column(name).combine_chunks()
