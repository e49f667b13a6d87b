"""Training model F: loss, one step, one epoch, validation, and an in-process `fit`.

The same step and epoch functions run in this process (`fit`, the benchmark) and inside each
Ray Train worker (synthrec.distributed.recommender_train), which only adds sharding, DDP and
checkpoints. Loss per the design: L = mean over real rows + λ · mean over synthetic rows,
where a row is one (history, next item) target.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

from synthrec.config import RecommenderConfig
from synthrec.errors import DataError
from synthrec.recommender.data import (
    InteractionEncoder,
    Log,
    Windows,
    concat_windows,
    positive_rows,
    training_windows,
    windows,
)
from synthrec.recommender.metrics import Queries, query_ranks, ranking_metrics, split_leave_last_out
from synthrec.recommender.model import ModelSpec, RecommenderModel
from synthrec.schema import Schema

Batch = dict[str, torch.Tensor]


def build_model(
    encoder: InteractionEncoder,
    cfg: RecommenderConfig,
    num_labels: int = 0,
    num_positions: int = 0,
) -> RecommenderModel:
    """A fresh model F; `num_labels` > 0 adds the ranking heads (synthrec.recommender.ranking)."""
    spec = ModelSpec(
        num_items=encoder.num_items,
        item_cat_sizes=encoder.item_codec.cat_sizes,
        item_num_dim=encoder.item_codec.num_dim,
        user_cat_sizes=encoder.user_codec.cat_sizes,
        user_num_dim=encoder.user_codec.num_dim,
        query_buckets=encoder.query_buckets,
        dim=cfg.dim,
        num_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        max_len=cfg.max_len,
        dropout=cfg.dropout,
        num_labels=num_labels,
        num_positions=num_positions,
    )
    torch.manual_seed(cfg.seed)
    model = RecommenderModel(spec)
    model.set_item_features(torch.from_numpy(encoder.item_cat), torch.from_numpy(encoder.item_num))
    return model


# ---------------------------------------------------------------------------- data


@dataclass
class TrainingData:
    """What one training run needs, validated and encoded on the driver before any worker starts."""

    encoder: InteractionEncoder
    train: Log  # real rows the model learns from
    synthetic: Log | None  # synthetic rows, users renamed apart from real ones
    valid: Queries | None  # validation item per user (leave_last_out holdout)
    known: Log  # every real row: the histories a served model starts from
    popularity: np.ndarray  # (I+1,) real training interactions per item: the cold-start fallback
    synthetic_rows: int = 0  # rows of the synthetic table given (before keeping positives)

    @property
    def facts(self) -> dict:
        return {
            "real_train_rows": int(len(self.train.items)),
            "real_users": int(self.train.num_groups),
            "synthetic_rows": self.synthetic_rows,
            "synthetic_positive_rows": int(len(self.synthetic.items)) if self.synthetic else 0,
            "num_items": self.encoder.num_items,
            "columns": json.loads(self.encoder.describe()),
        }


def prepare_training(
    real: pa.Table | None,
    synthetic: pa.Table | None,
    cfg: RecommenderConfig,
    schema: Schema | None = None,
) -> TrainingData:
    """Fit the encoder on the real table (roles from `schema`, inferred without one), check
    the synthetic one against it, split, encode."""
    if real is None or real.num_rows == 0:
        raise DataError(
            "the real table is empty (0 rows); model F is fitted and judged on real interactions"
        )
    encoder = InteractionEncoder.fit(real, cfg, schema)
    if synthetic is not None:
        encoder.check_compatible(synthetic, "synthetic table")
    real = next_item_rows(real, encoder, cfg, "real table")
    synthetic_rows = synthetic.num_rows if synthetic is not None else 0
    if synthetic is not None:
        synthetic = next_item_rows(synthetic, encoder, cfg, "synthetic table")
    if cfg.holdout == "leave_last_out":
        split = split_leave_last_out(real, encoder)
        train, valid, known = encoder.encode(split.train, "real train rows"), split.valid, split.log
    else:
        known = encoder.encode(real, "real table")
        train, valid = known, None
    synth = (
        encoder.encode(synthetic, "synthetic table", user_prefix="synthetic:")
        if synthetic is not None
        else None
    )
    popularity = np.bincount(train.items, minlength=encoder.num_items + 1).astype(np.float64)
    popularity[0] = 0.0
    return TrainingData(encoder, train, synth, valid, known, popularity, synthetic_rows)


def next_item_rows(
    table: pa.Table, encoder: InteractionEncoder, cfg: RecommenderConfig, where: str
) -> pa.Table:
    """The rows the next-item head learns from: with label columns, the positive interactions
    (click or stronger, `positive_label`), unless `next_item_rows` is "all"."""
    if cfg.next_item_rows == "all" or not encoder.columns.labels:
        return table
    keep = positive_rows(table, encoder.columns, where)
    if not keep.any():
        c = encoder.columns
        raise DataError(
            f"{where}: no positive interactions ({', '.join(c.labels[c.positive_index :])} all "
            "0); the next-item head learns from positives; set next_item_rows: all to use every row"
        )
    return table.filter(pa.array(keep))


def training_arrays(
    encoder: InteractionEncoder,
    cfg: RecommenderConfig,
    real: Log | None,
    synthetic: Log | None = None,
) -> dict[str, np.ndarray]:
    """All training windows as named arrays (one row per window), with a `synthetic` flag."""
    parts, flags = [], []
    for log, flag in ((real, False), (synthetic, True)):
        if log is not None and len(log.items):
            w = training_windows(log, cfg.max_len, encoder.user_token)
            parts.append(w)
            flags.append(np.full(len(w), flag))
    if not parts:
        raise DataError("no training interactions: the real and synthetic data are both empty")
    w = concat_windows(parts)
    arrays = {
        "tokens": w.tokens,
        "targets": w.targets,
        "user_cat": w.user_cat,
        "user_num": w.user_num,
        "synthetic": np.concatenate(flags),
    }
    if w.query is not None:
        arrays["query"] = w.query
    return arrays


def iterate_batches(arrays: dict[str, np.ndarray], batch_size: int, seed: int) -> Iterator[Batch]:
    """Shuffled mini-batches of windows as tensors."""
    order = np.random.default_rng(seed).permutation(len(arrays["tokens"]))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield {k: torch.from_numpy(v[idx]) for k, v in arrays.items()}


# ---------------------------------------------------------------------------- loss


def row_losses(
    model: torch.nn.Module,
    batch: Batch,
    cfg: RecommenderConfig,
    generator: torch.Generator,
    vectors: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss per target row (N,), synthetic flag per row (N,)); `vectors` (I+1, d): the item
    tower's output when the caller already has it this step."""
    if vectors is None:
        users, vectors = model(
            batch["tokens"], batch["user_cat"], batch["user_num"], batch.get("query")
        )
    else:
        users = model.encode(
            batch["tokens"], batch["user_cat"], batch["user_num"], batch.get("query"), vectors
        )
    targets = batch["targets"]
    has = targets > 0  # (B, T)
    u = users[has]  # (N, d)
    y = targets[has]  # (N,) item index 1..I
    synthetic = batch["synthetic"][:, None].expand_as(targets)[has]
    num_items = vectors.shape[0] - 1
    if cfg.loss == "softmax":
        if cfg.num_negatives == 0 or cfg.num_negatives >= num_items:
            return F.cross_entropy(u @ vectors[1:].T, y - 1, reduction="none"), synthetic
        neg = torch.randint(1, num_items + 1, (cfg.num_negatives,), generator=generator).to(
            u.device
        )
        neg_logits = (u @ vectors[neg].T).masked_fill(
            neg[None, :] == y[:, None], float("-inf")
        )  # (N, K)
        pos_logits = (u * vectors[y]).sum(-1, keepdim=True)  # (N, 1)
        logits = torch.cat([pos_logits, neg_logits], dim=1)
        return F.cross_entropy(logits, torch.zeros_like(y), reduction="none"), synthetic
    k = max(1, cfg.num_negatives)
    neg = torch.randint(1, num_items + 1, (len(y), k), generator=generator).to(u.device)  # (N, K)
    pos_logits = (u * vectors[y]).sum(-1)
    neg_logits = torch.einsum("nd,nkd->nk", u, vectors[neg])
    neg_loss = (F.softplus(neg_logits) * (neg != y[:, None])).mean(dim=1)
    return F.softplus(-pos_logits) + neg_loss, synthetic


def weighted_loss(
    losses: torch.Tensor, synthetic: torch.Tensor, synthetic_weight: float
) -> torch.Tensor:
    """mean over real rows + λ · mean over synthetic rows (a missing part contributes 0)."""
    real, synth = losses[~synthetic], losses[synthetic]
    total = losses.new_zeros(())
    if len(real):
        total = total + real.mean()
    if len(synth):
        total = total + synthetic_weight * synth.mean()
    return total


def train_step(
    model, optimizer, batch: Batch, cfg: RecommenderConfig, generator: torch.Generator
) -> float:
    model.train()
    losses, synthetic = row_losses(model, batch, cfg, generator)
    loss = weighted_loss(losses, synthetic, cfg.synthetic_weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def train_epoch(
    model, optimizer, batches: Iterable[Batch], cfg: RecommenderConfig, generator: torch.Generator
) -> dict:
    total, steps, start = 0.0, 0, time.monotonic()
    for batch in batches:
        total += train_step(model, optimizer, batch, cfg, generator)
        steps += 1
    return {"loss": total / max(steps, 1), "steps": steps, "seconds": time.monotonic() - start}


def make_optimizer(model: torch.nn.Module, cfg: RecommenderConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


# ---------------------------------------------------------------------------- scoring


class ModelScorer:
    """Model F under the metrics `Scorer` protocol (eval mode, no grad, batched).

    With `log_probs` (right for a softmax-trained model), scores are log p(item | history):
    the same order within a query as the raw logits, but comparable across queries, which a
    pooled metric such as click AUC needs (softmax logits carry an arbitrary offset per query)."""

    def __init__(
        self,
        model: RecommenderModel,
        user_token: int,
        batch_size: int = 512,
        log_probs: bool = True,
    ):
        self.model, self.user_token, self.batch_size, self.log_probs = (
            model,
            user_token,
            batch_size,
            log_probs,
        )

    @torch.no_grad()
    def user_vectors(self, w: Windows) -> torch.Tensor:
        self.model.eval()
        vectors = self.model.item_vectors()
        device = vectors.device

        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).to(device)

        out = []
        for s in range(0, len(w), self.batch_size):
            part = slice(s, s + self.batch_size)
            query = tensor(w.query[part]) if w.query is not None else None
            h = self.model.encode(
                tensor(w.tokens[part]),
                tensor(w.user_cat[part]),
                tensor(w.user_num[part]),
                query,
                vectors,
            )
            out.append(h[:, -1])
        return torch.cat(out) if out else vectors.new_zeros(0, vectors.shape[1])

    @torch.no_grad()
    def score(self, log: Log, group: np.ndarray, stop: np.ndarray) -> np.ndarray:
        w = windows(log, group, stop, self.model.spec.max_len, self.user_token)
        scores = self.user_vectors(w) @ self.model.item_vectors().T  # (Q, I+1)
        if self.log_probs:
            scores[:, 1:] = torch.log_softmax(scores[:, 1:], dim=1)
            scores[:, 0] = float("-inf")
        return scores.float().cpu().numpy()


def validation_ndcg(
    model: RecommenderModel, user_token: int, queries: Queries, k: int = 10
) -> float:
    return ranking_metrics(query_ranks(ModelScorer(model, user_token), queries), k)[f"ndcg@{k}"]


# ---------------------------------------------------------------------------- in-process fit


@dataclass
class FitResult:
    model: RecommenderModel
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_valid_ndcg: float | None = None


class EarlyStopping:
    """Keeps the best state by validation NDCG@10; says stop after `patience` checks without
    gain."""

    def __init__(self, patience: int):
        self.patience, self.best, self.best_epoch, self.state, self.bad = patience, -1.0, 0, None, 0

    def update(self, model: torch.nn.Module, epoch: int, score: float) -> bool:
        if score > self.best:
            self.best, self.best_epoch, self.bad = score, epoch, 0
            self.state = copy.deepcopy(model.state_dict())
        else:
            self.bad += 1
        return self.bad >= self.patience


def fit(
    encoder: InteractionEncoder,
    cfg: RecommenderConfig,
    real: Log | None,
    synthetic: Log | None = None,
    valid: Queries | None = None,
    progress: Callable[..., None] | None = None,
) -> FitResult:
    """Train model F in this process; with `valid`, keep the best epoch and stop early."""
    arrays = training_arrays(encoder, cfg, real, synthetic)
    model = build_model(encoder, cfg)
    optimizer = make_optimizer(model, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    stopper = EarlyStopping(cfg.patience)
    history, start = [], time.monotonic()
    for epoch in range(1, (cfg.epochs or 10**9) + 1):
        stats = train_epoch(
            model,
            optimizer,
            iterate_batches(arrays, cfg.batch_size, cfg.seed + epoch),
            cfg,
            generator,
        )
        stats["epoch"] = epoch
        stop = False
        if valid is not None and epoch % cfg.eval_every == 0:
            stats["valid_ndcg@10"] = validation_ndcg(model, encoder.user_token, valid)
            stop = stopper.update(model, epoch, stats["valid_ndcg@10"])
        history.append(stats)
        if progress:
            progress(
                epoch,
                **{k: round(v, 4) for k, v in stats.items() if k in ("loss", "valid_ndcg@10")},
            )
        if stop or (cfg.time_budget_s and time.monotonic() - start > cfg.time_budget_s):
            break
    if stopper.state is not None:
        model.load_state_dict(stopper.state)
    model.eval()
    return FitResult(
        model,
        history,
        stopper.best_epoch or len(history),
        stopper.best if stopper.state is not None else None,
    )
