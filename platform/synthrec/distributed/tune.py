"""A bounded hyperparameter search for F on Ray Tune: Ray glue only, the math is
synthrec.recommender.ranking.

Each trial trains F (ranking heads and next-item head, the seed's loss) in one Tune worker
from the data prepared once on the driver (the object store holds one copy), and reports the
click GAUC per user on the real validation split after every epoch; ASHA stops the trials
that trail. The search covers λ (`synthetic_weight`), F's width and its learning rate; the
synthetic share and the generator's sampling temperature belong to the generator and are not
searched here. `save_tuning` publishes the chosen values as tuning.json (atomically, like a
model directory), to sit beside the model trained with them.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from synthrec.config import RecommenderConfig, StorageConfig
from synthrec.errors import DataError

METRIC = "valid_gauc"


@dataclass(frozen=True)
class TuneSpace:
    synthetic_weight: tuple[float, ...] = (0.0, 0.3, 1.0, 3.0)  # λ; 1 is the seed's
    dim: tuple[int, ...] = (32, 64)
    lr: tuple[float, float] = (3e-4, 3e-3)  # log-uniform bounds


def run_tune(
    real: pa.Table,
    synthetic: pa.Table | None,
    cfg: RecommenderConfig,
    space: TuneSpace = TuneSpace(),
    num_samples: int = 8,
    max_epochs: int = 10,
    cpus_per_trial: float = 1.0,
    storage_path: str | None = None,
) -> dict[str, Any]:
    """Search `space` with `num_samples` trials of at most `max_epochs` epochs (Ray must be
    up); returns the best values, their validation GAUC and every trial's result."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from synthrec.recommender.ranking import prepare_ranking

    data = prepare_ranking(real, synthetic, cfg)
    if data.valid is None or not data.encoder.columns.labels:
        raise DataError(
            "tuning scores F by click GAUC on the real validation split; the real table needs "
            "a label column (click) and rows over more than one moment in time"
        )
    trainable = tune.with_resources(
        tune.with_parameters(_trial, data=data, base=cfg.model_dump(mode="json")),
        {"cpu": cpus_per_trial},
    )
    param_space = {
        "synthetic_weight": tune.choice(list(space.synthetic_weight)),
        "dim": tune.choice(list(space.dim)),
        "lr": tune.loguniform(*space.lr),
        "epochs": max_epochs,
    }
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="max",
            num_samples=num_samples,
            scheduler=ASHAScheduler(max_t=max_epochs, grace_period=1, reduction_factor=2),
            search_alg=BasicVariantGenerator(random_state=cfg.seed),
        ),
        run_config=tune.RunConfig(
            name=f"tune-{uuid.uuid4().hex[:8]}",
            storage_path=storage_path or tempfile.mkdtemp(prefix="synthrec-tune-"),
            verbose=0,
        ),
    )
    results = tuner.fit()
    best = results.get_best_result()
    trials = [
        {
            **{k: r.config[k] for k in ("synthetic_weight", "dim", "lr")},
            METRIC: r.metrics.get(METRIC),
            "epochs": r.metrics.get("epoch"),
        }
        for r in results
        if r.metrics
    ]
    return {
        "best": {k: best.config[k] for k in ("synthetic_weight", "dim", "lr")},
        f"best_{METRIC}": best.metrics[METRIC],
        "trials": trials,
        "space": asdict(space),
        "num_samples": num_samples,
        "max_epochs": max_epochs,
        "scored_on": "real validation split (last 10% of the real rows in time), click GAUC",
    }


def save_tuning(result: dict[str, Any], uri: str, storage: StorageConfig | None = None) -> None:
    """Publish the search's result as `uri`/tuning.json."""
    from synthrec.storage import publish_files

    body = json.dumps(result, indent=2, default=float).encode()
    publish_files(uri, {"tuning.json": body}, storage, kind="tuning")


def _trial(config: dict[str, Any], data: Any, base: dict[str, Any]) -> None:
    """One trial: train F epoch by epoch, report the validation GAUC after each."""
    import torch
    from ray import tune

    from synthrec.recommender.ranking import (
        build_ranking_model,
        steps_per_epoch,
        streams,
        train_steps,
        validation_gauc,
    )
    from synthrec.recommender.train import make_optimizer

    torch.set_num_threads(1)
    cfg = RecommenderConfig.model_validate({**base, **config})
    model = build_ranking_model(data, cfg)
    optimizer = make_optimizer(model, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    real, synthetic = streams(data.real, cfg, cfg.seed), streams(data.synthetic, cfg, cfg.seed + 1)
    steps = steps_per_epoch(data, cfg)
    for epoch in range(1, cfg.epochs + 1):
        stats = train_steps(model, optimizer, real, synthetic, cfg, generator, steps)
        tune.report({METRIC: validation_gauc(model, data.valid), "epoch": epoch, **stats})
