"""How the sequence model is trained, one epoch at a time, in one process or on Ray Train.

`SequenceSynthesizer.fit` (in process) and the Ray Train worker (distributed/sequence_train.py)
run the same code: `prepare_fit` builds the network's spec, its first weights and the training
and validation windows once; `SequenceFit` holds one worker's model, optimizers and
early-stopping state and trains an epoch on its shard of the training windows:

- likelihood epochs: shuffled batches of `batch_size // world` windows, then the validation
  NLL of the held-out users (summed over the ranks' shares through `reduce`, so every rank
  sees the same figure and keeps the same best weights);
- once likelihood training is done (epoch cap, no better validation NLL for `patience`
  epochs, or its share of the time budget) the best weights come back and the optional
  adversarial phase runs in chunks of `ADVERSARIAL_CHUNK` steps (one chunk per epoch).

Everything random in an epoch is drawn from the seed the caller gives for that epoch, and
`state` / `SequenceFit(state=...)` keep everything else, so a run restored from a checkpoint
trains on exactly as an uninterrupted one. No Ray, no torch.distributed, no I/O here: a
distributed caller passes its wrapped (DDP) modules and its reducer.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from synthrec.config import SequenceConfig
from synthrec.errors import ConfigError
from synthrec.sequences import train as steps
from synthrec.sequences.encoding import (
    SESSION_FLAG,
    SequenceEncoder,
    Sequences,
    session_level_fields,
)
from synthrec.sequences.model import SequenceCritic, SequenceModel, SequenceSpec

ADVERSARIAL_CHUNK = 50  # adversarial steps per epoch (one checkpoint each)
ADVERSARIAL_SHARE = 0.3  # of a time budget, kept for the adversarial phase when there is one
VALID_BATCH = 256
Reduce = Callable[[float, float], tuple[float, float]]  # (sum, count) over all ranks


@dataclass
class FitData:
    """What every worker trains from (built once, on the driver or in process)."""

    spec: SequenceSpec
    init: dict[str, torch.Tensor]  # first weights: the catalog grid and popularity bias set
    train: steps.Windows
    valid: steps.Windows | None  # windows of the held-out users; None: no early stopping
    user_codes: np.ndarray  # (U, A) Sequences.user
    budget: Any = None  # privacy.Budget of a DP fit (its plan; steps are counted in training)


def prepare_fit(
    seqs: Sequences,
    enc: SequenceEncoder,
    item_counts: np.ndarray,
    cfg: SequenceConfig,
    item_attribute: np.ndarray | None = None,
    budget: Any = None,
) -> FitData:
    """Spec, first weights (from cfg.seed) and the windows of the training and held-out users.
    `budget` (a DP fit, synthrec.sequences.dp): no held-out users, the catalog grouped by
    attribute (if any) and catalog order instead of usage, no session-level fields read from
    the events, and the budget rides along to the workers."""
    num_items = len(item_counts)
    private = budget is not None
    torch.manual_seed(cfg.seed)
    attribute = item_attribute if cfg.catalog_clusters == "attribute" or private else None
    grid = steps.item_grid(seqs, num_items, cfg.seed, attribute=attribute, usage=not private)
    names = enc.event_field_names
    spec = SequenceSpec(
        num_items=num_items,
        num_clusters=grid.shape[0],
        cluster_size=grid.shape[1],
        gap_classes=enc.gap.num_classes,
        field_classes=[f.num_classes for f in enc.fields],
        user_classes=[f.num_classes for f in enc.users],
        session_field=names.index(SESSION_FLAG) if SESSION_FLAG in names else -1,
        session_level=[] if private else session_level_fields(seqs, names),
        d_model=cfg.d_model,
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        window=cfg.window,
        dropout=cfg.dropout,
    )
    model = SequenceModel(spec)
    set_grid(model, grid, item_counts)
    users = np.random.default_rng(cfg.seed).permutation(seqs.num_users)
    n_valid = int(round(cfg.valid_share * seqs.num_users)) if seqs.num_users >= 10 else 0
    n_valid = 0 if private else n_valid
    return FitData(
        spec=spec,
        init={k: v.detach().clone() for k, v in model.state_dict().items()},
        train=steps.make_windows(seqs, spec, np.sort(users[n_valid:])),
        valid=steps.make_windows(seqs, spec, np.sort(users[:n_valid])) if n_valid else None,
        user_codes=seqs.user,
        budget=budget,
    )


def set_grid(model: SequenceModel, grid: np.ndarray, counts: np.ndarray) -> None:
    head = model.item_head
    g = torch.from_numpy(grid)
    head.grid.copy_(g)
    valid = g < model.spec.num_items
    head.cluster_of[g[valid]] = torch.nonzero(valid, as_tuple=True)[0]
    head.slot_of[g[valid]] = torch.nonzero(valid, as_tuple=True)[1]
    with torch.no_grad():  # start from item popularity
        head.bias[:-1] = torch.from_numpy(np.log1p(counts).astype(np.float32))


def shard_rows(num_windows: int, rank: int, world: int, seed: int) -> np.ndarray:
    """This rank's training windows (a seeded split; every rank gets about as many)."""
    order = np.random.default_rng(seed).permutation(num_windows)
    return np.sort(np.array_split(order, world)[rank])


def per_rank(n: int, world: int) -> int:
    return max(1, n // world)


class SequenceFit:
    """One worker's training state. `rank`/`world` pick the shard; a single process is rank 0
    of 1. `model` is the network; callers that wrap it (DDP) pass the wrapper as `net`."""

    def __init__(
        self,
        data: FitData,
        cfg: SequenceConfig,
        device: torch.device,
        rank: int = 0,
        world: int = 1,
        state: dict[str, Any] | None = None,
    ):
        self.data, self.cfg, self.device = data, cfg, device
        self.rank, self.world = rank, world
        self.rows = shard_rows(len(data.train), rank, world, cfg.seed)
        self.model = SequenceModel(data.spec).to(device)
        self.model.load_state_dict(data.init)
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.epoch, self.phase = 0, "likelihood"
        self.best, self.best_state, self.best_epoch, self.bad = math.inf, None, 0, 0
        self.events, self.mle_seconds, self.adv_steps = 0, 0.0, 0
        self.critic = self.opt_c = None
        self.dp = None
        if data.budget is not None:
            from synthrec.sequences.dp import SequenceDp

            budget = copy.deepcopy(data.budget)
            self.dp = SequenceDp.build(budget, data.train, rank, world, cfg.seed, device)
        if state is not None:
            self._load(state)

    # -- likelihood ----------------------------------------------------------------------------
    def likelihood_epoch(
        self,
        seed: int,
        net: torch.nn.Module | None = None,
        deadline: float | None = None,
        on_step: Callable[[int], None] | None = None,
        reduce: Reduce | None = None,
    ) -> dict[str, float]:
        """One pass over this rank's shard in batches of batch_size // world windows, then the
        validation NLL. `deadline` (time.monotonic()) may end the pass early: only in one
        process, where no other rank waits for the same number of steps."""
        start, net = time.monotonic(), net or self.model
        win, cfg = self.data.train, self.cfg
        order = self.rows[np.random.default_rng(seed).permutation(len(self.rows))]
        order = order[: len(win) // self.world]  # as many steps on every rank (DDP)
        batch = per_rank(cfg.batch_size, self.world)
        sums: dict[str, float] = {}
        done = 0
        for lo in range(0, len(order), batch):
            rows = order[lo : lo + batch]
            b = steps.batch_of(win, rows, self.data.user_codes, self.device)
            for k, v in steps.mle_step(net, self.opt, b).items():
                sums[k] = sums.get(k, 0.0) + v
            done += 1
            self.events += int(win.valid[rows].sum())
            if on_step:
                on_step(done)
            if deadline and time.monotonic() > deadline:
                break
        self.epoch += 1
        metrics = {k: round(v / max(done, 1), 4) for k, v in sums.items()}
        if self.data.valid is not None:
            metrics["valid_nll"] = score = round(self.validation_nll(reduce), 4)
        else:  # no held-out users: the training NLL of all ranks, so all keep the same best
            total, count = sums.get("nll", 0.0) * done, float(done)
            total, count = reduce(total, count) if reduce else (total, count)
            score = total / count if count else math.inf
        if score < self.best - 1e-4:
            self.best, self.best_epoch, self.bad = score, self.epoch, 0
            self.best_state = copy.deepcopy(self.model.state_dict())
        else:
            self.bad += 1
        self.mle_seconds += time.monotonic() - start
        metrics["seconds"] = round(time.monotonic() - start, 2)
        return {"phase": "likelihood", "epoch": self.epoch, **metrics}

    def dp_likelihood_epoch(
        self,
        deadline: float | None = None,
        on_step: Callable[[int], None] | None = None,
        reduce: Callable[[dict], dict] | None = None,
    ) -> dict[str, float]:
        """One expected pass of user-level DP-SGD (round(1/q) steps), ending early when the
        budget is spent or at `deadline` (in one process only). `reduce` sums the clipped
        gradients across ranks; rank 0 adds the noise."""
        from synthrec.sequences.dp import dp_step, steps_per_epoch

        start, dp, cfg = time.monotonic(), self.dp, self.cfg
        users = len(np.unique(self.data.train.user))
        expected = dp.budget.sample_rate * users
        done = 0
        self.model.train()
        for _ in range(steps_per_epoch(users, cfg.batch_size)):
            if dp.budget.exhausted:
                break
            self.events += dp_step(
                self.model, self.opt, dp, self.data.train, self.data.user_codes, expected,
                self.device, add_step_noise=self.rank == 0, reduce=reduce,
            )  # fmt: skip
            done += 1
            if on_step:
                on_step(done)
            if deadline and time.monotonic() > deadline:
                break
        self.epoch += 1
        self.best_epoch = self.epoch
        self.mle_seconds += time.monotonic() - start
        return {
            "phase": "likelihood",
            "epoch": self.epoch,
            "steps": done,
            "epsilon_spent": round(dp.budget.spent(), 4),
            "budget_spent": float(dp.budget.exhausted),
            "seconds": round(time.monotonic() - start, 2),
        }

    def validation_nll(self, reduce: Reduce | None = None) -> float:
        """Mean NLL per event of this rank's share of the held-out windows, over all ranks."""
        valid = self.data.valid
        rows = np.array_split(np.arange(len(valid)), self.world)[self.rank]
        total, count = steps.nll_sums(
            self.model, valid, rows, self.data.user_codes, VALID_BATCH, self.device
        )
        if reduce is not None:
            total, count = reduce(total, count)
        return total / max(count, 1.0)

    def likelihood_done(self, max_epochs: int) -> bool:
        """The epoch cap is reached or the held-out NLL stopped improving."""
        early = self.data.valid is not None and self.bad >= self.cfg.patience
        spent = self.dp is not None and self.dp.budget.exhausted
        return self.epoch >= max_epochs or early or spent

    def end_likelihood(self) -> None:
        """Back to the best validated weights; the adversarial phase (if any) starts from them."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.phase = "adversarial" if self.cfg.adversarial_steps else "done"
        if self.phase == "adversarial":
            self._build_adversarial()

    # -- adversarial ---------------------------------------------------------------------------
    def _build_adversarial(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed + 1)  # the same critic on every rank
        self.critic = SequenceCritic(self.data.spec).to(self.device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.adversarial_lr)
        self.opt_c = torch.optim.AdamW(self.critic.parameters(), lr=1e-3)

    def adversarial_epoch(
        self,
        seed: int,
        net: torch.nn.Module | None = None,
        critic_net: torch.nn.Module | None = None,
        deadline: float | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> dict[str, float]:
        """Up to ADVERSARIAL_CHUNK steps on windows that start at a user's first event."""
        cfg, win = self.cfg, self.data.train
        start = time.monotonic()
        firsts = self.rows[win.first[self.rows]]
        rng = np.random.default_rng(seed)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        todo = min(ADVERSARIAL_CHUNK, cfg.adversarial_steps - self.adv_steps)
        batch = min(per_rank(cfg.batch_size, self.world), len(firsts))
        last: dict[str, float] = {}
        for step in range(1, todo + 1):
            rows = rng.choice(firsts, batch, replace=False)
            real = steps.batch_of(win, rows, self.data.user_codes, self.device)
            last = steps.adversarial_step(
                self.model,
                self.critic,
                self.opt,
                self.opt_c,
                real,
                cfg.adversarial_mle_weight,
                gen,
                net=net,
                critic_net=critic_net,
            )
            self.adv_steps += 1
            if on_step:
                on_step(step)
            if deadline and time.monotonic() > deadline:
                break
        self.epoch += 1
        if self.adv_steps >= cfg.adversarial_steps:
            self.phase = "done"
        metrics = {k: round(v, 4) for k, v in last.items()}
        metrics.update(steps=self.adv_steps, seconds=round(time.monotonic() - start, 2))
        return {"phase": "adversarial", "epoch": self.epoch, **metrics}

    # -- results and checkpoints -------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        return {
            "best_epoch": self.best_epoch,
            "best_valid_nll": None if self.data.valid is None else round(self.best, 4),
            "train_events_per_s": round(self.events / max(self.mle_seconds, 1e-9), 1),
            "likelihood_seconds": round(self.mle_seconds, 1),
            "adversarial_steps": self.adv_steps,
        }

    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs (tensors and JSON values)."""
        adversarial = self.critic is not None
        return {
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "epoch": self.epoch,
            "phase": self.phase,
            "best": None if math.isinf(self.best) else self.best,
            "best_state": self.best_state,
            "best_epoch": self.best_epoch,
            "bad": self.bad,
            "events": self.events,
            "mle_seconds": self.mle_seconds,
            "adv_steps": self.adv_steps,
            "critic": self.critic.state_dict() if adversarial else None,
            "opt_c": self.opt_c.state_dict() if adversarial else None,
            "privacy": None if self.dp is None else self.dp.budget.state_dict(),
        }

    def _load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if state["critic"] is not None:
            self._build_adversarial()
            self.critic.load_state_dict(state["critic"])
            self.opt_c.load_state_dict(state["opt_c"])
        self.opt.load_state_dict(state["opt"])
        self.epoch, self.phase = state["epoch"], state["phase"]
        self.best = math.inf if state["best"] is None else state["best"]
        self.best_state, self.best_epoch = state["best_state"], state["best_epoch"]
        self.bad, self.events = state["bad"], state["events"]
        self.mle_seconds, self.adv_steps = state["mle_seconds"], state["adv_steps"]
        if self.dp is not None:  # ConfigError when the checkpoint's plan is another one
            self.dp.budget.load_state_dict(state.get("privacy") or {})
        elif state.get("privacy"):
            raise ConfigError(
                "the run being resumed trained with differential privacy; resume it with its "
                "own privacy config, or start a new run under another --run-name"
            )


def final_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights to publish from a `SequenceFit.state()`: the best validated ones when the
    run stopped during likelihood training (a time budget), else the model as trained."""
    if state["phase"] == "likelihood" and state["best_state"] is not None:
        return state["best_state"]
    return state["model"]
