"""Data-parallel training of the sequence generator on Ray Train: Ray glue only, the math is
synthrec.sequences (fitting.py holds the epoch every worker runs).

Driver: read the log, check it has user, item and time columns, fit the sequence encoder and
the users-table GAN (here, in this process: the users table has one row per user, it trains
in seconds, and the driver needs the fitted GAN anyway for the event-count calibration and the
model directory; a Train run of its own would cost more to start than to train), cut the
training and held-out windows and the first weights once (`prepare_fit`), put them in the
object store, run the Train skeleton (train_loop.py), publish a "sequence" model directory.

Worker (`SequenceTask`): its shard of the training windows, the network wrapped in DDP, a
batch of batch_size / world_size windows per step; likelihood epochs until the epoch cap, the
held-out users' NLL (summed over all ranks, so all ranks see the same figure) stops improving
for `patience` epochs, or the likelihood share of the time budget is spent — the ranks agree
on that — then the best weights and the optional adversarial phase (the critic in DDP too).

User-level DP (sequence.privacy, or gan.privacy with --generator sequences; the math in
synthrec.sequences.dp): the driver runs the leak check and plans the budget before anything
is fitted, trains the users GAN under its share, and keeps the plan in the run's folder so a
resume under another privacy config fails there, before any worker starts. Each rank takes
its own share of the users (not of the windows), draws its Poisson sample from a secret
generator, clips each sampled user's gradient; the clipped sums are all-reduced and rank 0
alone adds the step's noise (no DDP wrapper: the summed, noised gradient is set by hand).
Checkpoints carry the accountant's steps, so a resumed run spends no extra budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from synthrec.config import SequenceConfig, TrainGanConfig
from synthrec.distributed.train_loop import (
    LoopConfig,
    WorkerContext,
    agree_stop,
    epoch_seed,
    run_summary,
    run_training,
    start_run,
    sum_across_workers,
)
from synthrec.distributed.warm import sequence_init
from synthrec.errors import ConfigError

DP_PLAN = "dp-plan"  # a DP run's privacy plan, in the run's folder

# ------------------------------------------------------------------------------ driver side


def sequence_config(cfg: TrainGanConfig) -> SequenceConfig:
    """The run's sequence config: gan.privacy (--epsilon) becomes its privacy when the
    sequence section has none; a DP run has no adversarial phase."""
    from synthrec.sequences.dp import private_config

    return private_config(cfg.sequence, cfg.sequence.privacy or cfg.gan.privacy)


def prepare(cfg: TrainGanConfig, loaded: tuple | None = None, seq: SequenceConfig | None = None):
    """Read and check the log, fit the encoder: fails before any worker starts.
    `loaded`: (table, schema) already read by the caller. -> (synthesizer, sequences, users)."""
    from synthrec.data.eventlog import load_event_log
    from synthrec.data.relational import relational_view
    from synthrec.sequences import SequenceSynthesizer
    from synthrec.sequences.encoding import require_sequence_log

    seq = seq or sequence_config(cfg)
    if seq.batch_size < cfg.scaling.num_workers:
        raise ConfigError(
            f"sequence.batch_size {seq.batch_size} is smaller than num_workers "
            f"{cfg.scaling.num_workers}; raise the batch size or use fewer workers"
        )
    table, schema = loaded or load_event_log(cfg.data_uri, cfg.schema_uri, cfg.storage)
    log = relational_view(table, schema)
    require_sequence_log(log)
    synth = SequenceSynthesizer()
    seqs, users = synth.prepare(log, schema, seq, epochs=cfg.epochs or seq.epochs)
    return synth, seqs, users


def check_plan(cfg: TrainGanConfig, name: str, budget) -> None:
    """Keep a DP run's plan in its folder; on resume, a ConfigError (before any worker
    starts) when this config plans another budget."""
    import json

    from synthrec import storage
    from synthrec.distributed.train_loop import runs_uri

    uri = storage.join(runs_uri(cfg), name, DP_PLAN)
    if cfg.run.resume and storage.read_manifest(uri, cfg.storage) is not None:
        state = json.loads(storage.read_files(uri, None, cfg.storage)["budget.json"])
        budget.load_state_dict({**state, "steps": 0})  # ConfigError when the plans differ
        return
    files = {"budget.json": json.dumps(budget.state_dict()).encode()}
    storage.publish_files(uri, files, cfg.storage, kind="dp-plan")


def run_train_sequences(
    cfg: TrainGanConfig,
    progress: Callable[[dict], None] | None = None,
    loaded: tuple | None = None,
) -> dict[str, Any]:
    """Train the sequence generator with Ray Train and publish it at cfg.out_uri."""
    import ray

    from synthrec.distributed.common import ensure_ray
    from synthrec.sequences.artifacts import save_sequence_model
    from synthrec.sequences.fitting import ADVERSARIAL_SHARE, final_weights, prepare_fit
    from synthrec.sequences.model import SequenceModel

    start = time.monotonic()
    seq = sequence_config(cfg)
    name = start_run("sequences", cfg)
    synth, seqs, users = prepare(cfg, loaded, seq)
    budget_plan = synth.plan.budget if synth.plan is not None else None
    if budget_plan is not None:
        check_plan(cfg, name, budget_plan)
    budget = cfg.time_budget_min * 60 if cfg.time_budget_min else None
    users_budget = budget * seq.users_budget_share if budget else None
    emit = progress or (lambda m: None)
    synth.fit_users(users, users_budget, "cpu", lambda **m: emit({**m, "phase": "users"}))
    data = prepare_fit(
        seqs, synth.encoder, synth.item_counts, seq, synth.cluster_attribute(), budget_plan
    )
    warm_share = sequence_init(cfg, data.init)  # warm start from a parent, before any worker
    if len(data.train) < cfg.scaling.num_workers:
        raise ConfigError(
            f"{len(data.train)} training windows cannot be shared by {cfg.scaling.num_workers} "
            "workers; use fewer workers (or a smaller sequence.window)"
        )
    ensure_ray(cfg.ray_address)
    now, left = time.time(), (budget - (time.monotonic() - start) if budget else None)
    adv_share = ADVERSARIAL_SHARE if seq.adversarial_steps else 0.0
    task = SequenceWorkerConfig(
        seq=seq,
        data=ray.put(data),
        max_epochs=cfg.epochs or seq.epochs,
        mle_deadline=now + max(left, 0.0) * (1 - adv_share) if budget else None,
        threads=max(1, int(cfg.scaling.cpus_per_worker)),
    )
    deadline = now + max(left, 0.0) if budget else None
    loop = LoopConfig(None, deadline, cfg.run.checkpoint_every, seq.seed)
    run = run_training(task, loop, cfg, name, "sequence training", progress)

    state = run.task_state
    if budget_plan is not None:  # the steps the run took, for the metadata
        budget_plan.load_state_dict(state["privacy"])
    model = SequenceModel(data.spec)
    model.load_state_dict(final_weights(state))
    likelihood = [h for h in run.history if h.get("phase") == "likelihood"]
    metrics = {
        "epochs": len(likelihood),
        "best_epoch": state["best_epoch"],
        "best_valid_nll": state["best"] if data.valid is not None else None,
        # rank 0's events and seconds; every rank trains as many windows
        "train_events_per_s": round(
            state["events"] * cfg.scaling.num_workers / max(state["mle_seconds"], 1e-9), 1
        ),
        "adversarial_steps": state["adv_steps"],
        "run_name": name,
        "num_workers": cfg.scaling.num_workers,
        "data_uri": cfg.data_uri,
        "history": run.history,
        **(
            {"warm_start": {"from": cfg.init_model_uri, "copied_share": round(warm_share, 4)}}
            if warm_share is not None
            else {}
        ),
    }
    synth.finish(model, seqs, time.monotonic() - start, metrics)
    save_sequence_model(synth, cfg.out_uri, cfg.storage)
    return run_summary(run, "sequences", cfg.out_uri, name, start)


# ------------------------------------------------------------------------------ worker side


@dataclass(frozen=True)
class SequenceWorkerConfig:
    """What every sequence worker gets: the typed config at the top of its loop."""

    seq: SequenceConfig
    data: Any  # ObjectRef of sequences.fitting.FitData (spec, first weights, windows)
    max_epochs: int  # likelihood epochs cap
    mle_deadline: float | None  # time.time() after which likelihood training ends
    threads: int  # torch threads per worker

    def build(self, worker: WorkerContext, state: dict[str, Any] | None) -> SequenceTask:
        return SequenceTask(self, worker, state)


class SequenceTask:
    """One worker's sequence model: the same first weights on every rank (from the driver),
    shuffling and adversarial draws from (seed, rank, epoch)."""

    def __init__(self, cfg: SequenceWorkerConfig, worker: WorkerContext, state: dict | None):
        import ray
        import torch

        from synthrec.sequences.fitting import SequenceFit

        torch.set_num_threads(cfg.threads)
        self.cfg, self.worker = cfg, worker
        self.fit = SequenceFit(
            ray.get(cfg.data), cfg.seq, worker.device, worker.rank, worker.world, state
        )
        # a DP run sets each step's gradient by hand (clipped, summed, noised once): no DDP
        self.net = self._wrap(self.fit.model) if self.fit.dp is None else self.fit.model
        self.critic_net = self._wrap(self.fit.critic) if self.fit.critic is not None else None

    @property
    def epoch(self) -> int:
        return self.fit.epoch

    def train_epoch(self, on_step: Callable[[int], None] | None) -> dict[str, float]:
        fit, worker = self.fit, self.worker
        seed = epoch_seed(self.cfg.seq.seed, worker.rank, fit.epoch + 1, stream=1)
        if fit.phase == "adversarial":
            return fit.adversarial_epoch(seed, self.net, self.critic_net, on_step=on_step)
        if fit.dp is not None:
            metrics = fit.dp_likelihood_epoch(on_step=on_step, reduce=self._reduce_grads)
        else:
            metrics = fit.likelihood_epoch(seed, self.net, on_step=on_step, reduce=self._reduce)
        late = self.cfg.mle_deadline is not None and time.time() >= self.cfg.mle_deadline
        if agree_stop(fit.likelihood_done(self.cfg.max_epochs) or late, worker):
            fit.end_likelihood()
            if fit.critic is not None:
                self.critic_net = self._wrap(fit.critic)
        return metrics

    def stop_vote(self) -> bool:
        return self.fit.phase == "done"

    def state(self) -> dict[str, Any]:
        return self.fit.state()

    def _wrap(self, module):
        """DDP over all ranks (the buffers are the catalog grid: constant, never broadcast;
        the last event field's input embedding feeds no loss, hence find_unused_parameters)."""
        if self.worker.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP

        device = self.worker.device
        ids = [device.index] if device.type == "cuda" else None
        return DDP(module, device_ids=ids, broadcast_buffers=False, find_unused_parameters=True)

    def _reduce_grads(self, summed: dict) -> dict:
        """Sum a DP step's clipped gradients (name -> tensor) over the ranks, as one tensor."""
        return summed if self.worker.world == 1 else sum_across_workers(summed)

    def _reduce(self, total: float, count: float) -> tuple[float, float]:
        """Sum (total, count) over the ranks."""
        if self.worker.world == 1:
            return total, count
        import torch
        import torch.distributed as dist

        pair = torch.tensor([total, count], dtype=torch.float64, device=self.worker.device)
        dist.all_reduce(pair)
        return float(pair[0]), float(pair[1])
