"""The only model-specific code of the serving layer: load a model directory once, answer requests.

No Ray and no HTTP here: the Serve deployments and the plain-uvicorn baseline call the same
methods. Input the model refuses becomes `RequestRejected` (a 422 naming the field).

`model_info` is public (GET /v1/models): it shows only whitelisted metadata keys, never the
model's or its training data's URIs or run names.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from synthrec.config import ServeConfig, StorageConfig, TopKKind
from synthrec.errors import ConditionError, ConfigError, DataError
from synthrec.serving.api import RequestRejected
from synthrec.serving.encode import encode_recommendations, encode_table
from synthrec.serving.schemas import (
    OutputFormat,
    RecommendationRequest,
    SyntheticRequest,
    Unit,
)
from synthrec.storage import read_files


class GeneratorBackend:
    """A loaded generator of either kind (synthrec.generators): a row GAN answers rows; a
    sequence model answers whole users with their events, nested (`unit: users`) or flat (one
    row per event). `generate` returns the encoded body, the row count and the version."""

    def __init__(self, uri: str, storage: StorageConfig | None = None, device: str = "cpu"):
        from synthrec.generators import load_generator

        self.uri = uri
        self.gen = load_generator(uri, storage, device=device)
        self.version = str(self.gen.metadata.get("version", "unknown"))

    def generate(self, request: SyntheticRequest) -> tuple[bytes, int, str]:
        unit = self._unit(request)
        args = dict(
            seed=request.seed,
            conditions=request.conditions or None,
            rebalance=request.rebalance or None,
        )
        try:
            if request.users is not None:
                table = self.gen.sample_users(request.users, **args)
            else:
                table = self.gen.sample_rows(request.rows, **args)
        except (ConditionError, ConfigError) as err:  # the sequence model's are ConfigErrors
            field = "rebalance" if str(err).startswith("rebalance") else "conditions"
            raise RequestRejected(str(err), field) from None
        body = self.gen.nest(table) if unit is Unit.users else table
        data = encode_table(body, request.format, self.version, key=unit.value)
        return data, table.num_rows, self.version

    def _unit(self, request: SyntheticRequest) -> Unit:
        """The answer's unit; a RequestRejected naming the field when the model cannot give it."""
        wants_users = request.users is not None or request.unit is Unit.users
        if self.gen.unit == "rows":
            if wants_users:
                field = "users" if request.users is not None else "unit"
                raise RequestRejected(
                    f"{field}: the loaded generator is a row model ({self.gen.kind}); it makes "
                    "rows, not users: ask for rows=N (unit rows)",
                    field,
                )
            return Unit.rows
        unit = request.unit or (Unit.users if request.users is not None else Unit.rows)
        if unit is Unit.users and request.format is OutputFormat.csv:
            raise RequestRejected(
                "format: csv cannot nest events under users; ask for format json or arrow, or "
                "unit rows for one row per event (each with its user's id)",
                "format",
            )
        return unit

    def model_info(self) -> dict[str, Any]:
        meta = public_metadata(self.gen.metadata, GENERATOR_PUBLIC)
        meta["kind"], meta["unit"] = self.gen.kind, self.gen.unit
        meta["conditionable_columns"] = self.gen.conditionable_columns()
        meta["columns"] = self.gen.columns()
        return {"loaded": True, "version": self.version, "metadata": meta}


class RecommenderBackend:
    """A loaded recommender; `recommend_many` answers each request with a body or a rejection."""

    def __init__(
        self,
        uri: str,
        storage: StorageConfig | None = None,
        device: str = "cpu",
        top_k: TopKKind = "exact",
    ):
        from synthrec.recommender.artifacts import read_recommender_dir, recommender_from_dir
        from synthrec.serving.scoring import BatchRecommender

        self.uri = uri
        # One manifest read: the files come from it (checked against its sha256), and the
        # version is the hash of the very weights loaded, whatever is published meanwhile.
        model_dir = read_recommender_dir(uri, storage)
        self.model = recommender_from_dir(model_dir)
        self.scorer = BatchRecommender(self.model, device, top_k)
        weights = model_dir.files["model.safetensors"]
        self.version = hashlib.sha256(weights).hexdigest()[:16]

    def recommend_many(
        self, requests: list[RecommendationRequest]
    ) -> list[bytes | RequestRejected]:
        answers = self.scorer.recommend_many(
            [(r.user_id, r.history, r.query, r.k, r.exclude_seen) for r in requests]
        )
        return [
            RequestRejected(str(a), _field_named_in(str(a)))
            if isinstance(a, DataError)
            else encode_recommendations(a.item_ids, a.scores, a.cold_start, self.version)
            for a in answers
        ]

    def model_info(self) -> dict[str, Any]:
        meta = public_metadata(self.model.metadata, RECOMMENDER_PUBLIC)
        meta["training"] = public_metadata(self.model.metadata.get("training", {}), TRAINING_PUBLIC)
        return {"loaded": True, "version": self.version, "metadata": meta}

    @staticmethod
    def sample_users(uri: str, count: int, storage: StorageConfig | None = None) -> list[str]:
        """Up to `count` known user ids of a model directory, evenly spaced (benchmarks, tests)."""
        import io

        import pyarrow.parquet as pq

        ids = pq.read_table(
            io.BytesIO(read_files(uri, ["users.parquet"], storage)["users.parquet"])
        ).column(0)
        step = max(1, len(ids) // count)
        return [str(u) for u in ids.to_pylist()[::step][:count]]


# What GET /v1/models may show. Everything else in a model's metadata (training data URIs,
# run names, fingerprints, per-epoch history) stays private: a new key is hidden until listed.
GENERATOR_PUBLIC = frozenset(
    {
        "created_at",
        "synthrec_version",
        "num_workers",
        "train_seconds",
        "metrics",
        "epsilon_spent",  # a DP model's budget (absent otherwise)
        "delta",
    }
)
RECOMMENDER_PUBLIC = frozenset(
    {"format", "version", "num_items", "num_users", "dim", "max_len", "columns", "accepts_query"}
)
TRAINING_PUBLIC = frozenset(
    {
        "num_workers",
        "gpu",
        "holdout",
        "synthetic_weight",
        "epochs",
        "best_epoch",
        "best_valid_ndcg@10",
        "train_seconds",
    }
)


def public_metadata(meta: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    """The whitelisted keys of `meta`; a nested dict (metrics) keeps only its numbers."""
    out: dict[str, Any] = {}
    for key in sorted(allowed & set(meta)):
        value = meta[key]
        if isinstance(value, dict) and key == "metrics":
            value = {k: v for k, v in value.items() if isinstance(v, (int, float))}
        out[key] = value
    return out


def _field_named_in(message: str) -> str | None:
    """The request field a model error is about, from the start of its message ("history: ...")."""
    for field in ("history", "query", "user_id", "k"):
        if message.startswith(field) or f" {field} " in message[:40]:
            return field
    return None


class _InProcess:
    """Async port over a backend in this process (plain uvicorn, no Ray). With `batch`,
    recommendations that queue while one batch runs are scored together, as @serve.batch
    (batch_wait_timeout_s=0) does in the Recommender replica."""

    def __init__(
        self,
        backend: GeneratorBackend | RecommenderBackend,
        batch: bool = False,
        max_batch_size: int = 32,
    ):
        self.backend, self.batch, self.max_batch_size = backend, batch, max_batch_size
        self._pending: list[tuple[RecommendationRequest, asyncio.Future]] = []

    async def generate(self, request: SyntheticRequest) -> tuple[bytes, int, str]:
        return await asyncio.to_thread(self.backend.generate, request)

    async def recommend(self, request: RecommendationRequest) -> bytes:
        if self.batch:
            future = asyncio.get_running_loop().create_future()
            self._pending.append((request, future))
            if (
                len(self._pending) == 1
            ):  # first in: run after the loop has taken in what else arrived
                asyncio.get_running_loop().call_soon(self._run_batch)
            result = await future
        else:
            result = self.backend.recommend_many([request])[0]
        if isinstance(result, RequestRejected):
            raise result
        return result

    async def rank(self, request) -> bytes:
        result = self.backend.rank_many([request])[0]
        if isinstance(result, RequestRejected):
            raise result
        return result

    def _run_batch(self) -> None:
        batch, self._pending = (
            self._pending[: self.max_batch_size],
            self._pending[self.max_batch_size :],
        )
        for (_, future), result in zip(batch, self.backend.recommend_many([r for r, _ in batch])):
            future.set_result(result)
        if self._pending:
            asyncio.get_running_loop().call_soon(self._run_batch)

    async def model_info(self) -> dict[str, Any]:
        return self.backend.model_info()


def build_local_api(cfg: ServeConfig, batch: bool = False):
    """The whole API in one process with the same routes and model code as the Serve apps.

    For the overhead baseline (bench/serve_load.py) and debugging; production goes through
    Serve. `batch` scores concurrent recommendations together, like the Serve deployment.
    """
    from synthrec.serving.api import build_api
    from synthrec.serving.auth import resolve_auth

    cfg, key = resolve_auth(cfg)  # as `synthrec serve`: open only on loopback or --insecure

    gen = (
        _InProcess(GeneratorBackend(cfg.generator_uri, cfg.storage)) if cfg.generator_uri else None
    )
    rec = (
        _InProcess(
            RecommenderBackend(cfg.recommender_uri, cfg.storage, top_k=cfg.top_k),
            batch,
            cfg.recommender.max_batch_size,
        )
        if cfg.recommender_uri
        else None
    )
    from synthrec.recommender.artifacts import has_ranking_heads
    from synthrec.serving.rank import RankerBackend

    ranker = (
        _InProcess(RankerBackend(cfg.recommender_uri, cfg.storage))
        if cfg.recommender_uri and has_ranking_heads(cfg.recommender_uri, cfg.storage)
        else None
    )
    return build_api(cfg, key, generator=gen, recommender=rec, ranker=ranker, mount="full")
