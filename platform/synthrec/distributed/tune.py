"""A bounded hyperparameter search for F on Ray Tune: Ray glue only, the math is
synthrec.recommender.ranking.

`run_tune_command` (`synthrec tune`): read the real log and the synthetic rows (given, or
sampled from a generator once per searched temperature), search, train F with the chosen
values, publish it at out_uri and the search's record at <out_uri>-tuning (tuning.json).
Each trial trains F (ranking heads and next-item head, the seed's loss) in one Tune worker
from data prepared once on the driver (the object store holds one copy per temperature) and
reports the click GAUC per user on the real validation split (the last 10% of the real rows
in time) after every epoch; ASHA stops the trials that trail. The space: λ
(`synthetic_weight`), the share of the synthetic rows used, the generator's sampling
temperature, F's width and its learning rate.
"""

from __future__ import annotations

import functools
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from synthrec.config import RecommenderConfig, StorageConfig, TuneConfig
from synthrec.errors import ConfigError, DataError

METRIC = "valid_gauc"
KEYS = ("synthetic_weight", "synthetic_share", "temperature", "dim", "lr")
MODEL_KEYS = ("synthetic_weight", "dim", "lr")  # the ones that are RecommenderConfig's


@dataclass(frozen=True)
class TuneSpace:
    synthetic_weight: tuple[float, ...] = (0.0, 0.3, 1.0, 3.0)  # λ; 1 is the seed's
    dim: tuple[int, ...] = (32, 64)
    lr: tuple[float, float] = (3e-4, 3e-3)  # log-uniform bounds
    synthetic_share: tuple[float, ...] = (1.0,)  # of the synthetic rows, whole requests
    temperature: tuple[float, ...] = (1.0,)  # keys of the synthetic tables given

    @classmethod
    def from_config(cls, cfg: TuneConfig) -> TuneSpace:
        s = cfg.search
        return cls(
            tuple(s.synthetic_weight),
            tuple(s.dim),
            tuple(s.lr),
            tuple(s.synthetic_share),
            tuple(s.temperature),
        )


def prepare_search(
    real: pa.Table,
    synthetic: pa.Table | dict[float, pa.Table] | None,
    cfg: RecommenderConfig,
    space: TuneSpace,
) -> dict[float, Any]:
    """Prepared data per temperature (one encoder fitted on the real table); a single
    synthetic table (or none) stands for the space's one temperature."""
    from synthrec.recommender.ranking import prepare_ranking

    if not isinstance(synthetic, dict):
        if len(space.temperature) != 1:
            raise ConfigError(
                f"{len(space.temperature)} temperatures to search but one synthetic table; "
                "sample one table per temperature from a generator, or search one temperature"
            )
        synthetic = {space.temperature[0]: synthetic}
    missing = sorted(set(space.temperature) - set(synthetic))
    if missing:
        raise ConfigError(f"no synthetic table for the temperatures {missing}")
    first = prepare_ranking(real, synthetic[space.temperature[0]], cfg)
    if first.valid is None or not first.encoder.columns.labels:
        raise DataError(
            "tuning scores F by click GAUC on the real validation split; the real table needs "
            "a label column (click) and rows over more than one moment in time"
        )
    datas = {space.temperature[0]: first}
    for t in space.temperature[1:]:
        datas[t] = prepare_ranking(real, synthetic[t], cfg, encoder=first.encoder)
    return datas


def run_tune(
    real: pa.Table,
    synthetic: pa.Table | dict[float, pa.Table] | None,
    cfg: RecommenderConfig,
    space: TuneSpace = TuneSpace(),
    num_samples: int = 8,
    max_epochs: int = 10,
    cpus_per_trial: float = 1.0,
    storage_path: str | None = None,
    progress: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """Search `space` with `num_samples` trials of at most `max_epochs` epochs (Ray must be
    up); returns the best values, their validation GAUC and every trial's result."""
    datas = prepare_search(real, synthetic, cfg, space)
    return search(
        datas, cfg, space, num_samples, max_epochs, cpus_per_trial, storage_path, progress
    )


def search(
    datas: dict[float, Any],
    cfg: RecommenderConfig,
    space: TuneSpace,
    num_samples: int,
    max_epochs: int,
    cpus_per_trial: float,
    storage_path: str | None = None,
    progress: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """The Tune run over data prepared by `prepare_search`."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    trainable = tune.with_resources(
        tune.with_parameters(_trial, datas=datas, base=cfg.model_dump(mode="json")),
        {"cpu": cpus_per_trial},
    )
    param_space = {
        "synthetic_weight": tune.choice(list(space.synthetic_weight)),
        "synthetic_share": tune.choice(list(space.synthetic_share)),
        "temperature": tune.choice(list(space.temperature)),
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
            callbacks=[_reporter()(progress)] if progress else None,
        ),
    )
    results = tuner.fit()
    best = results.get_best_result()
    trials = [
        {
            **{k: r.config[k] for k in KEYS},
            METRIC: r.metrics.get(METRIC),
            "epochs": r.metrics.get("epoch"),
        }
        for r in results
        if r.metrics
    ]
    return {
        "best": {k: best.config[k] for k in KEYS},
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


def tuning_uri(out_uri: str) -> str:
    """Where `synthrec tune` records its search: beside the model, <out_uri>-tuning."""
    return out_uri.rstrip("/") + "-tuning"


def chosen_config(cfg: RecommenderConfig, best: dict[str, Any], epochs: int) -> RecommenderConfig:
    """F's config with the search's chosen values."""
    return cfg.model_copy(update={**{k: best[k] for k in MODEL_KEYS}, "epochs": epochs})


def _trial(config: dict[str, Any], datas: dict[float, Any], base: dict[str, Any]) -> None:
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
    cfg = RecommenderConfig.model_validate(
        {**base, **{k: config[k] for k in (*MODEL_KEYS, "epochs")}}
    )
    data = datas[config["temperature"]].with_synthetic_share(config["synthetic_share"], cfg.seed)
    model = build_ranking_model(data, cfg)
    optimizer = make_optimizer(model, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    real, synthetic = streams(data.real, cfg, cfg.seed), streams(data.synthetic, cfg, cfg.seed + 1)
    steps = steps_per_epoch(data, cfg)
    for epoch in range(1, cfg.epochs + 1):
        stats = train_steps(model, optimizer, real, synthetic, cfg, generator, steps)
        tune.report({METRIC: validation_gauc(model, data.valid), "epoch": epoch, **stats})


@functools.cache
def _reporter() -> type:
    """A Tune callback class that hands each trial's report to `progress` on the driver. Tune
    pickles callbacks with its experiment state: `progress` (a console) is left out then."""
    from ray.tune import Callback

    class Reporter(Callback):
        def __init__(self, progress: Callable[[dict], None]) -> None:
            self.progress: Callable[[dict], None] | None = progress

        def __getstate__(self) -> dict:
            return {**self.__dict__, "progress": None}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if self.progress is not None:
                self.progress(
                    {
                        "trial": trial.trial_id,
                        "epoch": result.get("epoch"),
                        METRIC: result.get(METRIC),
                        **{k: trial.config.get(k) for k in KEYS},
                    }
                )

    return Reporter


# ------------------------------------------------------------------------------ the command


def run_tune_command(
    cfg: TuneConfig, progress: Callable[[dict], None] | None = None
) -> dict[str, Any]:
    """`synthrec tune`: search, train F with the chosen values, publish F at cfg.out_uri and
    the search at <out_uri>-tuning; returns a summary."""
    from synthrec import storage
    from synthrec.distributed.common import ensure_ray
    from synthrec.distributed.recommender_train import read_real

    start = time.monotonic()
    record_uri = tuning_uri(cfg.out_uri)
    storage.check_writable(cfg.out_uri, cfg.storage)
    storage.check_writable(record_uri, cfg.storage)
    space = TuneSpace.from_config(cfg)
    real, schema = read_real(cfg)
    synthetic = _synthetic(cfg, real, schema)
    datas = prepare_search(real, synthetic, cfg.model, space)  # bad data fails before Ray
    ensure_ray(cfg.ray_address)
    s = cfg.search
    result = search(datas, cfg.model, space, s.num_samples, s.max_epochs, s.cpus_per_trial,
                    progress=progress)  # fmt: skip
    result["source"] = {
        "real_uri": cfg.real_uri,
        "synthetic_uri": cfg.synthetic_uri,
        "generator_uri": cfg.generator_uri,
    }
    model_uri = _publish_chosen(cfg, datas, result, schema)
    save_tuning(result, record_uri, cfg.storage)
    return {
        "model_uri": model_uri,
        "tuning_uri": record_uri,
        "best": result["best"],
        f"best_{METRIC}": result[f"best_{METRIC}"],
        "trials": result["trials"],
        "seconds": round(time.monotonic() - start, 1),
    }


def _synthetic(cfg: TuneConfig, real: pa.Table, schema) -> pa.Table | dict | None:
    """The given synthetic table, or one sampled table per searched temperature."""
    from synthrec.distributed.recommender_train import read_interactions
    from synthrec.schema import apply_schema

    if cfg.synthetic_uri:
        table = read_interactions(cfg.synthetic_uri, cfg.storage)
        return apply_schema(table, schema, cfg.synthetic_uri) if schema is not None else table
    if not cfg.generator_uri:
        return None
    from synthrec.generators import UserGenerator, load_generator

    gen = load_generator(cfg.generator_uri, cfg.storage)
    temperatures = cfg.search.temperature
    if not isinstance(gen, UserGenerator) and temperatures != [1.0]:
        raise ConfigError(
            f"{cfg.generator_uri} is a {gen.kind} model, which has no sampling temperature; "
            "search temperature [1.0] or give a sequence model"
        )
    rows = cfg.synthetic_rows or real.num_rows
    out = {}
    for t in temperatures:
        if isinstance(gen, UserGenerator):
            gen.synth.cfg = gen.synth.cfg.model_copy(update={"temperature": t})
        table = gen.sample_rows(rows, seed=cfg.model.seed)
        out[t] = apply_schema(table, schema, cfg.generator_uri) if schema is not None else table
    return out


def _publish_chosen(cfg: TuneConfig, datas: dict, result: dict, schema) -> str:
    """Train F on the chosen values (early stopping on the same validation split) and
    publish it with the search's choice in its training facts."""
    from synthrec.recommender.artifacts import build_recommender, save_recommender
    from synthrec.recommender.ranking import fit_ranking

    best = result["best"]
    model_cfg = chosen_config(cfg.model, best, cfg.search.max_epochs)
    data = datas[best["temperature"]].with_synthetic_share(best["synthetic_share"], model_cfg.seed)
    fit = fit_ranking(data, model_cfg)
    facts = {
        "tuning": {"best": best, f"best_{METRIC}": result[f"best_{METRIC}"]},
        "tuning_uri": tuning_uri(cfg.out_uri),
        "synthetic_weight": model_cfg.synthetic_weight,
        "real_uri": cfg.real_uri,
        "synthetic_uri": cfg.synthetic_uri,
        "generator_uri": cfg.generator_uri,
        "labels": list(data.encoder.columns.labels),
        "epochs": len(fit.history),
        "best_epoch": fit.best_epoch,
        "best_valid_gauc": fit.best_valid_gauc,
        "holdout": "last 10% of the real rows in time (validation click GAUC)",
        **({"schema": schema.to_dict()} if schema is not None else {}),
    }
    rec = build_recommender(fit.model, data.encoder, model_cfg, data.known, data.popularity, facts)
    save_recommender(rec, cfg.out_uri, cfg.storage)
    return cfg.out_uri
