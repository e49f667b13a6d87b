"""Training F with its ranking heads and its next-item head: the seed's loss, exactly.

Each step draws a real batch and, when there is synthetic data, a synthetic batch, and
minimizes

    L = mean over the real batch of ℓ  +  λ · mean over the synthetic batch of ℓ

(λ = `synthetic_weight`). ℓ has two parts, each with its own real and synthetic batches:
- an impression's ranking loss: binary cross-entropy of each funnel stage where it is observed
  (click on every impression, cart | click where clicked, purchase | cart where carted),
  summed over the stages; the click logit carries the display-position bias in training;
- a positive interaction's next-item loss (synthrec.recommender.train.row_losses), so
  /v1/recommendations keeps working from the same user tower.
An epoch is one pass over the real impressions; the other batch streams cycle.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

from synthrec.config import RecommenderConfig
from synthrec.errors import DataError
from synthrec.recommender.data import InteractionEncoder, Log, discover_columns
from synthrec.recommender.impressions import Impressions, build_impressions
from synthrec.recommender.model import RecommenderModel
from synthrec.recommender.train import (
    EarlyStopping,
    build_model,
    iterate_batches,
    make_optimizer,
    next_item_rows,
    row_losses,
    training_arrays,
)
from synthrec.schema import Schema

Batch = dict[str, torch.Tensor]
VALID_SHARE = 0.1  # last share of the real rows in time: validation for early stopping


# ---------------------------------------------------------------------------- loss


def seed_loss(
    real: torch.Tensor | None, synthetic: torch.Tensor | None, weight: float
) -> torch.Tensor:
    """mean(real per-example losses) + λ · mean(synthetic per-example losses); a missing or
    empty part adds nothing."""
    parts = [(real, 1.0), (synthetic, weight)]
    total = None
    for losses, w in parts:
        if losses is not None and len(losses):
            term = w * losses.mean()
            total = term if total is None else total + term
    if total is None:
        raise DataError("a training step had no examples in either batch")
    return total


def impression_losses(
    model: RecommenderModel, batch: Batch, vectors: torch.Tensor | None = None
) -> torch.Tensor:
    """(N,) per impression: Σ over funnel stages observed for it of the stage's BCE."""
    vectors = model.item_vectors() if vectors is None else vectors  # (I+1, d), computed once
    state = model.user_state(
        batch["tokens"], batch["user_cat"], batch["user_num"], batch.get("query"), vectors
    )  # (R, d), one per request in the batch
    logits = model.rank_logits(
        state[batch["slot"]], batch["items"], batch["position"], vectors
    )  # (N, K)
    y = batch["labels"].float()
    observed = torch.cat([torch.ones_like(y[:, :1]), y[:, :-1]], dim=1)  # stage k needs k-1
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return (bce * observed).sum(dim=1)


def state_groups(imp: Impressions) -> np.ndarray:
    """(N,) the user state each impression is scored from. With a query it is the request's
    (the query joins the state); without one, every row is its own request, but the rows of a
    user between two of their positives share one history: one transformer pass for all."""
    if imp.query is None and len(imp):
        key = imp.user.astype(np.int64) * (len(imp.history_length) + 1)
        key += imp.history_length[imp.request]
        return np.unique(key, return_inverse=True)[1].reshape(-1)
    return imp.request


def impression_batches(
    imp: Impressions, batch_size: int, seed: int, groups: np.ndarray | None = None
) -> Iterator[Batch]:
    """Shuffled batches of about `batch_size` impressions; the impressions of one user state
    (`state_groups`) stay together, so its history is encoded once per batch."""
    groups = state_groups(imp) if groups is None else groups
    rng = np.random.default_rng(seed)
    rank = np.empty(int(groups.max()) + 1 if len(imp) else 0, dtype=np.int64)
    rank[rng.permutation(len(rank))] = np.arange(len(rank))
    order = np.argsort(rank[groups], kind="stable")
    for start in range(0, len(order), batch_size):
        yield impression_batch(imp, order[start : start + batch_size], groups=groups)


def impression_batch(
    imp: Impressions,
    idx: np.ndarray,
    with_position: bool = True,
    groups: np.ndarray | None = None,
) -> Batch:
    """The impressions `idx` with one history row per distinct user state among them
    (`groups`, default the requests); "slot" maps each impression to its state."""
    groups = imp.request if groups is None else groups
    _, first, slot = np.unique(groups[idx], return_index=True, return_inverse=True)
    requests = imp.request[idx][first]
    h = imp.history
    tokens = h.tokens[requests]  # (R, T), padded on the left
    width = max(1, int((tokens != 0).sum(axis=1).max())) if len(tokens) else tokens.shape[1]
    batch = {
        "tokens": tokens[:, tokens.shape[1] - width :],  # all-pad leading columns change nothing
        "user_cat": h.user_cat[requests],
        "user_num": h.user_num[requests],
        "slot": slot.reshape(-1),
        "items": imp.items[idx],
        "labels": imp.labels[idx],
    }
    if with_position:
        batch["position"] = imp.position[idx]
    if imp.query is not None:
        batch["query"] = imp.query[requests]
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}


# ---------------------------------------------------------------------------- data


@dataclass
class Source:
    """One source's training data: impressions for the heads, positives for next-item."""

    impressions: Impressions | None
    windows: dict[str, np.ndarray] | None  # training_arrays of the positive interactions


@dataclass
class RankingData:
    encoder: InteractionEncoder
    real: Source
    synthetic: Source | None
    valid: Impressions | None  # the last VALID_SHARE of real rows in time
    known: Log  # every real positive: the histories a served model starts from
    popularity: np.ndarray  # (I+1,) real positives per item
    notes: list[str] = field(default_factory=list)

    def shard(self, rank: int, world: int) -> RankingData:
        """This worker's share of the training data: every world-th request of impressions
        (a request's impressions stay together) and every world-th next-item window."""
        return replace(
            self,
            real=_shard(self.real, rank, world),
            synthetic=_shard(self.synthetic, rank, world) if self.synthetic else None,
        )

    def with_synthetic_share(self, share: float, seed: int) -> RankingData:
        """The same data with a seeded `share` of the synthetic requests (whole requests) and
        of its next-item windows: how much synthetic data a tuning trial trains on."""
        if self.synthetic is None or share >= 1.0:
            return self
        rng = np.random.default_rng(seed)
        imp, windows = self.synthetic.impressions, self.synthetic.windows
        if imp is not None and len(imp):
            keep = rng.random(int(imp.request.max()) + 1) < share  # (R,)
            imp = imp.subset(keep[imp.request])
        if windows is not None and len(windows["tokens"]):
            n = len(windows["tokens"])
            take = np.sort(rng.permutation(n)[: max(1, int(round(n * share)))])
            windows = {k: v[take] for k, v in windows.items()}
        return replace(self, synthetic=Source(imp, windows))


def _shard(src: Source, rank: int, world: int) -> Source:
    imp = src.impressions
    if imp is not None:
        imp = imp.subset(imp.request % world == rank)
    windows = {k: v[rank::world] for k, v in src.windows.items()} if src.windows else None
    return Source(imp, windows)


def prepare_ranking(
    real: pa.Table,
    synthetic: pa.Table | None,
    cfg: RecommenderConfig,
    valid_share: float = VALID_SHARE,
    encoder: InteractionEncoder | None = None,
) -> RankingData:
    """Fit the encoder on the real table (or take `encoder`, e.g. fitted on the whole catalog),
    hold out the real table's last rows in time for validation, and build impressions and
    next-item windows for both sources."""
    if real is None or real.num_rows == 0:
        raise DataError("the real table is empty (0 rows); model F is fitted on real rows")
    encoder = encoder or InteractionEncoder.fit(real, cfg)
    encoder.check_compatible(real, "real table")
    if synthetic is not None:
        encoder.check_compatible(synthetic, "synthetic table")
    notes = []
    if not encoder.columns.labels:
        notes.append(
            "no label column: the ranking heads are skipped and the next-item head trains alone"
        )
    times = real.column(encoder.columns.time).to_numpy()
    cutoff = np.quantile(times, 1.0 - valid_share) if valid_share > 0 else np.inf
    train_mask = times < cutoff
    positives = next_item_rows(real, encoder, cfg, "real table")
    train_pos = next_item_rows(real.filter(pa.array(train_mask)), encoder, cfg, "real train rows")
    known = encoder.encode(positives, "real positives")
    train_log = encoder.encode(train_pos, "real train positives")
    real_src, valid = Source(None, training_arrays(encoder, cfg, train_log)), None
    if encoder.columns.labels:
        imp = build_impressions(encoder, real, cfg.max_len, cfg.max_positions, "real table")
        real_src.impressions = imp.subset(train_mask[imp.rows])
        valid = imp.subset(~train_mask[imp.rows]) if (~train_mask).any() else None
    synth_src = None
    if synthetic is not None:
        synth_log = encoder.encode(
            next_item_rows(synthetic, encoder, cfg, "synthetic table"),
            "synthetic positives",
            user_prefix="synthetic:",
        )
        synth_src = Source(None, training_arrays(encoder, cfg, None, synth_log))
        if encoder.columns.labels:
            synth_src.impressions = build_impressions(
                encoder, synthetic, cfg.max_len, cfg.max_positions, "synthetic table", "synthetic:"
            )
    popularity = np.bincount(train_log.items, minlength=encoder.num_items + 1).astype(np.float64)
    popularity[0] = 0.0
    return RankingData(encoder, real_src, synth_src, valid, known, popularity, notes)


# ---------------------------------------------------------------------------- steps


def _cycle(make: Callable[[int], Iterator[Batch]], seed: int) -> Iterator[Batch]:
    for k in range(10**9):
        yield from make(seed + 7919 * k)


def streams(
    src: Source | None, cfg: RecommenderConfig, seed: int, world: int = 1
) -> dict[str, Iterator[Batch]]:
    """Endless shuffled batch streams of one source: "impressions" and "windows"; each of
    `world` workers takes batches of 1/world of the configured sizes."""
    out: dict[str, Iterator[Batch]] = {}
    if src is None:
        return out
    if src.impressions is not None and len(src.impressions):
        imp = src.impressions
        size = max(1, cfg.ranking_batch_size // world)
        groups = state_groups(imp)
        out["impressions"] = _cycle(lambda s: impression_batches(imp, size, s, groups), seed)
    if src.windows is not None and len(src.windows["tokens"]):
        arrays, size_w = src.windows, max(1, cfg.batch_size // world)
        out["windows"] = _cycle(lambda s: iterate_batches(arrays, size_w, s), seed + 1)
    return out


def step_loss(
    model: RecommenderModel,
    real: dict[str, Batch],
    synthetic: dict[str, Batch],
    cfg: RecommenderConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """The seed's loss of one step: per part (impressions, next-item windows), the mean over
    the real batch plus λ times the mean over the synthetic batch."""
    total = None
    vectors = model.item_vectors()  # (I+1, d): once per step for all four batches
    for part in ("impressions", "windows"):
        if part not in real and part not in synthetic:
            continue
        losses = {
            name: (
                impression_losses(model, b[part], vectors)
                if part == "impressions"
                else row_losses(model, b[part], cfg, generator, vectors)[0]
            )
            if part in b
            else None
            for name, b in (("real", real), ("synthetic", synthetic))
        }
        term = seed_loss(losses["real"], losses["synthetic"], cfg.synthetic_weight)
        total = term if total is None else total + term
    assert total is not None, "a step needs at least one batch"
    return total


# ---------------------------------------------------------------------------- fit


@dataclass
class RankingFit:
    model: RecommenderModel
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_valid_gauc: float | None = None


def wants_ranking_heads(
    table: pa.Table, cfg: RecommenderConfig, schema: Schema | None = None
) -> bool:
    """cfg.ranking_heads when set; else whether `table` is a search log: label columns
    (click...) and a query or display-position column. A user who trains on such a log expects
    /v1/rank to work; a ratings log with a derived click label keeps the next-item trainer."""
    if cfg.ranking_heads is not None:
        return cfg.ranking_heads
    columns = discover_columns(table, cfg, schema)
    return bool(columns.labels) and (columns.query is not None or columns.position is not None)


def build_ranking_model(data: RankingData, cfg: RecommenderConfig) -> RecommenderModel:
    """F with one head per label (none without labels) and a position bias when the log
    has a position column."""
    encoder = data.encoder
    num_labels = len(encoder.columns.labels)
    return build_model(
        encoder,
        cfg,
        num_labels=num_labels,
        num_positions=cfg.max_positions if encoder.columns.position and num_labels else 0,
    )


def steps_per_epoch(data: RankingData, cfg: RecommenderConfig) -> int:
    """Steps of one pass over the real impressions (the real windows without labels) at the
    global batch size; with several workers, each takes 1/world of every batch."""
    imp = data.real.impressions
    if imp is not None and len(imp):
        return -(-len(imp) // cfg.ranking_batch_size)
    return -(-len(data.real.windows["tokens"]) // cfg.batch_size)


def train_steps(
    model: RecommenderModel,
    optimizer: torch.optim.Optimizer,
    real: dict[str, Iterator[Batch]],
    synthetic: dict[str, Iterator[Batch]],
    cfg: RecommenderConfig,
    generator: torch.Generator,
    steps: int,
    after_backward: Callable[[], None] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """`steps` optimizer steps of the seed's loss; `after_backward` (e.g. a gradient
    all-reduce across workers) runs between backward and the optimizer step."""
    model.train()
    device = next(model.parameters()).device
    total, start = 0.0, time.monotonic()
    for step in range(1, steps + 1):
        loss = step_loss(
            model,
            {k: _to(next(v), device) for k, v in real.items()},
            {k: _to(next(v), device) for k, v in synthetic.items()},
            cfg,
            generator,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward is not None:
            after_backward()
        optimizer.step()
        total += float(loss.detach())
        if on_step is not None:
            on_step(step)
    return {"loss": total / max(steps, 1), "steps": steps, "seconds": time.monotonic() - start}


def _to(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def validation_gauc(model: RecommenderModel, valid: Impressions) -> float:
    """Click GAUC per user of the position-free scores on the validation impressions."""
    from synthrec.recommender.rank_metrics import gauc

    return gauc(RankScorer(model).predict(valid)[:, 0], valid.labels[:, 0], valid.user)


def fit_ranking(
    data: RankingData,
    cfg: RecommenderConfig,
    use_synthetic: bool = True,
    progress: Callable[..., None] | None = None,
) -> RankingFit:
    """Train F's heads together in this process; early stopping on validation click GAUC
    (per user) when there are labels and a validation split."""
    model = build_ranking_model(data, cfg)
    optimizer = make_optimizer(model, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    real = streams(data.real, cfg, cfg.seed)
    synthetic = streams(data.synthetic if use_synthetic else None, cfg, cfg.seed + 10_000)
    steps = steps_per_epoch(data, cfg)
    stopper = EarlyStopping(cfg.patience)
    history, start = [], time.monotonic()
    for epoch in range(1, (cfg.epochs or 10**9) + 1):
        stats = {
            "epoch": epoch,
            **train_steps(model, optimizer, real, synthetic, cfg, generator, steps),
        }
        stop = False
        if model.ranker is not None and data.valid is not None and epoch % cfg.eval_every == 0:
            stats["valid_gauc"] = validation_gauc(model, data.valid)
            stop = stopper.update(model, epoch, stats["valid_gauc"])
        history.append(stats)
        if progress:
            progress(epoch, **{k: round(v, 4) for k, v in stats.items() if k != "epoch"})
        if stop or (cfg.time_budget_s and time.monotonic() - start > cfg.time_budget_s):
            break
    if stopper.state is not None:
        model.load_state_dict(stopper.state)
    model.eval()
    kept = stopper.state is not None
    return RankingFit(
        model, history, stopper.best_epoch or len(history), stopper.best if kept else None
    )


# ---------------------------------------------------------------------------- scoring


class RankScorer:
    """Position-free funnel probabilities of impressions: (N, K) with column k =
    P(label_0 ... label_k) = Π_{j<=k} P(label_j | label_{j-1}) (click, cart, purchase)."""

    def __init__(self, model: RecommenderModel, batch_size: int = 4096):
        self.model, self.batch_size = model, batch_size

    @torch.no_grad()
    def predict(self, imp: Impressions) -> np.ndarray:
        self.model.eval()
        vectors = self.model.item_vectors()
        device = vectors.device
        out = np.empty((len(imp), imp.num_labels), dtype=np.float64)
        groups = state_groups(imp)
        order = np.argsort(groups, kind="stable")
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            b = _to(impression_batch(imp, idx, False, groups), device)  # no position
            state = self.model.user_state(
                b["tokens"], b["user_cat"], b["user_num"], b.get("query"), vectors
            )
            logits = self.model.rank_logits(state[b["slot"]], b["items"], None, vectors)
            out[idx] = torch.sigmoid(logits).double().cumprod(dim=1).cpu().numpy()
        return out
