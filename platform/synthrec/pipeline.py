"""The end-to-end pipeline: real data -> generator -> synthetic data -> report -> recommender ->
report. The generator is the row GAN or, with `generator: sequences` (or auto on a log with
user, item and time columns), the sequence model, whose flattened log is the synthetic data.

Each stage writes published outputs under `cfg.out_uri` and then a stage record
`_stages/<stage>.json` holding a key (a hash of the stage's settings and of the run ids of
its inputs). A re-run reuses a stage whose record matches and whose outputs are still
published, so a finished pipeline costs seconds to re-run, and a failed stage can be re-run
alone (`stages: [...]`) once its inputs exist.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from synthrec import storage
from synthrec.config import (
    PIPELINE_STAGES,
    GenerateConfig,
    PipelineConfig,
    RecommenderRunSection,
    RunSection,
    TrainGanConfig,
    TrainRecommenderConfig,
)
from synthrec.errors import DataError
from synthrec.schema import TIME_NAMES, time_column

Progress = Callable[..., None]


@dataclass
class Paths:
    root: str

    def __getattr__(self, name: str) -> str:
        rel = {
            "real": "data/real",
            "gan_train": "data/gan_train",
            "holdout": "data/holdout",
            "gan": "models/gan",
            "synthetic": "synthetic",
            "synthetic_report": "reports/synthetic",
            "recommender": "models/recommender",
            "recommender_report": "reports/recommender",
        }[name]
        return storage.join(self.root, rel)


@dataclass
class StageOutcome:
    name: str
    reused: bool
    seconds: float
    outputs: dict[str, Any] = field(default_factory=dict)


def run_pipeline(cfg: PipelineConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run (or reuse) every stage in order; returns URIs and headline metrics."""
    from synthrec.distributed.common import ensure_ray

    emit = progress or (lambda *a, **k: None)
    paths = Paths(cfg.out_uri)
    storage.check_writable(cfg.out_uri, cfg.storage)
    ensure_ray(cfg.ray_address)
    wanted = cfg.stages or list(PIPELINE_STAGES)
    outcomes: dict[str, StageOutcome] = {}
    for name in PIPELINE_STAGES:
        if name not in wanted:
            continue
        key = _stage_key(name, cfg, paths)
        record = _read_record(cfg, name)
        start = time.monotonic()
        if record and record["key"] == key and _outputs_exist(record["outputs"], cfg):
            outcomes[name] = StageOutcome(name, True, 0.0, record["outputs"])
            emit("stage", name=name, reused=True)
            continue
        emit("stage", name=name, reused=False)
        outputs = STAGE_FUNCS[name](cfg, paths, emit)
        _write_record(cfg, name, key, outputs)
        outcomes[name] = StageOutcome(name, False, time.monotonic() - start, outputs)
        emit("stage_done", name=name, seconds=outcomes[name].seconds)
    return {
        "out": cfg.out_uri,
        "stages": {n: o.__dict__ for n, o in outcomes.items()},
        "headline": _headline(outcomes),
    }


# ------------------------------------------------------------------------------ stages


def _stage_data(cfg: PipelineConfig, paths: Paths, emit: Progress) -> dict:
    from synthrec.data.eventlog import load_event_log
    from synthrec.data.simulator import run_simulate
    from synthrec.data.splits import leave_last_out

    real_uri = cfg.data_uri
    if real_uri is None:
        real_uri = paths.real
        run_simulate(
            cfg.simulate.model_copy(update={"out_uri": real_uri}),
            cfg.storage,
            progress=lambda rows: emit("rows", stage="data", done=rows, total=cfg.simulate.rows),
        )
    table, schema = load_event_log(real_uri, cfg.schema_uri, cfg.storage)
    user, item = _id_columns(schema)
    time_col = time_column(schema)
    if time_col is None:
        raise DataError(
            "the pipeline splits by time and needs a time column: one with role datetime, or a "
            f"numeric one named {'/'.join(TIME_NAMES)}; set a column's role to datetime in the "
            "schema"
        )
    # The GAN learns only what the recommender trains on: each user's last two interactions
    # (its validation and test items) are held out. Those rows are later in time than the rest,
    # so as a privacy reference they would make any generator look like it memorizes; the
    # reference is a random share of the training rows instead, withheld from the GAN.
    train, valid, test = leave_last_out(table, user, item, time_col)
    by_user = user if _generator_of(cfg, table, schema) == "sequences" else None
    train, holdout, split = _privacy_holdout(train, pa.concat_tables([valid, test]), cfg, by_user)
    # every split carries the schema, so later stages read roles, never re-infer them
    known = {"schema": schema.to_dict()}
    storage.write_dataset(
        train,
        paths.gan_train,
        cfg.storage,
        metadata={"split": f"leave_last_out train{split[0]}", **known},
    )
    storage.write_dataset(
        holdout, paths.holdout, cfg.storage, metadata={"split": split[1], **known}
    )
    return {
        "real": real_uri,
        "gan_train": paths.gan_train,
        "holdout": paths.holdout,
        "rows": table.num_rows,
        "sample_user": str(test[user][0].as_py()),
        "sample_condition": _common_value(schema, train),
    }


def _generator_of(cfg: PipelineConfig, table: pa.Table, schema) -> str:
    """The generator train_gan will choose (the same rule, read before the split)."""
    from synthrec.distributed.train_generator import choose_generator

    if cfg.gan.privacy is not None:  # DP training exists for the row GAN only
        return "rows"
    return choose_generator(cfg.generator, table, schema)[0]


def _privacy_holdout(
    train: pa.Table, later: pa.Table, cfg: PipelineConfig, user_col: str | None = None
) -> tuple[pa.Table, pa.Table, tuple[str, str]]:
    """(generator training rows, privacy/utility holdout, their split names): a seeded random
    share of `train`'s rows, or with `user_col` of its users with all their rows (a sequence
    generator's privacy is judged per user, against real people it never saw), or the
    per-user later rows `later` when the share is 0."""
    import numpy as np

    share = cfg.privacy_holdout_share
    rng = np.random.default_rng(cfg.gan.seed)
    if user_col is None:
        held = int(round(share * train.num_rows))
        unit, total = "rows", train.num_rows
    else:
        users = pc.unique(train.column(user_col))
        held = int(round(share * len(users)))
        unit, total = "users", len(users)
    if held == 0:
        return train, later, ("", "leave_last_out valid+test")
    if held == total:
        raise DataError(
            f"privacy_holdout_share={share} leaves no {unit} for the generator "
            f"({total} training {unit})"
        )
    if user_col is None:
        chosen = np.zeros(train.num_rows, dtype=bool)
        chosen[rng.choice(train.num_rows, held, replace=False)] = True
    else:
        picked = users.take(pa.array(np.sort(rng.choice(total, held, replace=False))))
        chosen = pc.is_in(train.column(user_col), value_set=picked).to_numpy(zero_copy_only=False)
    what = "" if user_col is None else " users"
    return (
        train.filter(pa.array(~chosen)),
        train.filter(pa.array(chosen)),
        (
            f" minus a random {share:g}{what}",
            f"random {share:g}{what} of leave_last_out train (seed {cfg.gan.seed})",
        ),
    )


def _stage_train_gan(cfg: PipelineConfig, paths: Paths, emit: Progress) -> dict:
    from synthrec.distributed.train_generator import resolve_generator, run_train_generator

    train_cfg = TrainGanConfig(
        data_uri=paths.gan_train,
        out_uri=paths.gan,
        generator=cfg.generator,
        init_model_uri=cfg.gan_init_uri,
        gan=cfg.gan,
        sequence=cfg.sequence,
        scaling=cfg.scaling,
        storage=cfg.storage,
        epochs=cfg.gan_epochs,
        time_budget_min=cfg.gan_time_budget_min,
        ray_address=cfg.ray_address,
        run=RunSection(checkpoint_uri=storage.join(cfg.out_uri, "runs/gan")),
    )
    choice = resolve_generator(train_cfg)
    emit("generator", stage="train_gan", generator=choice.generator, why=choice.why)
    summary = run_train_generator(
        train_cfg, lambda m: emit("epoch", stage="train_gan", **m), choice=choice
    )
    return {
        "model": paths.gan,
        "generator": choice.generator,
        "epochs": summary["epochs"],
        "fidelity_proxy": summary["last"].get("fidelity"),
    }


def _stage_generate(cfg: PipelineConfig, paths: Paths, emit: Progress) -> dict:
    """Ray Data generation: a row model's `synthetic_rows` rows, or a sequence model's
    `synthetic_users` whole users (default: as many as make about `synthetic_rows` events at
    the training log's mean user length), written flat, one row per event."""
    from synthrec.distributed.generate import run_generate

    sequence = _model_kind(paths.gan, cfg) == "sequence"
    users = _synthetic_users(cfg, paths) if sequence else None
    gen_cfg = GenerateConfig(
        model_uri=paths.gan,
        rows=None if sequence else cfg.synthetic_rows,
        users=users,
        out_uri=paths.synthetic,
        conditions=cfg.conditions,
        rebalance=cfg.rebalance,
        seed=cfg.gan.seed,
        concurrency=cfg.generate_concurrency,
        storage=cfg.storage,
        ray_address=cfg.ray_address,
    )
    total = users if sequence else cfg.synthetic_rows
    summary = run_generate(
        gen_cfg,
        progress=lambda done: emit(
            "rows", stage="generate", done=done, total=total, unit=gen_cfg.unit
        ),
    )
    out = {
        "synthetic": paths.synthetic,
        "rows": summary.rows,
        "rows_per_s": round(summary.rows_per_s),
    }
    if sequence:
        out["users"] = summary.users
    return out


def _model_kind(uri: str, cfg: PipelineConfig) -> str:
    from synthrec.model_dir import HEADER

    header = json.loads(storage.read_files(uri, [HEADER], cfg.storage)[HEADER])
    return header.get("kind", "row-gan")


def _synthetic_users(cfg: PipelineConfig, paths: Paths) -> int:
    if cfg.synthetic_users is not None:
        return cfg.synthetic_users
    from synthrec.sequences.artifacts import load_sequence_model

    return load_sequence_model(paths.gan, cfg.storage).users_for_events(cfg.synthetic_rows)


def _stage_evaluate(cfg: PipelineConfig, paths: Paths, emit: Progress) -> dict:
    from synthrec.evaluate import run_evaluate

    eval_cfg = cfg.evaluate.model_copy(
        update={
            "real_uri": paths.gan_train,
            "synthetic_uri": paths.synthetic,
            "holdout_uri": paths.holdout,
            "out_uri": paths.synthetic_report,
            "storage": cfg.storage,
        }
    )
    metrics = run_evaluate(
        eval_cfg, progress=lambda step, stage=None, **_: emit("evaluate", step=step, part=stage)
    )
    return {
        "report": storage.join(paths.synthetic_report, "report.html"),
        "metrics": storage.join(paths.synthetic_report, "metrics.json"),
        "fidelity": metrics["fidelity"]["overall"],
        "tstr_auc": metrics["utility"].get("tstr_auc"),
        "trtr_auc": metrics["utility"].get("trtr_auc"),
        "verdict": metrics.get("verdict", {}).get("passed"),
    }


def _stage_train_recommender(cfg: PipelineConfig, paths: Paths, emit: Progress) -> dict:
    from synthrec.distributed.recommender_train import run_train_recommender

    rec_cfg = TrainRecommenderConfig(
        real_uri=_real_uri(cfg, paths),
        synthetic_uri=paths.synthetic,
        schema_uri=cfg.schema_uri,
        out_uri=paths.recommender,
        model=cfg.recommender,  # synthetic_weight (λ) included, as configured
        scaling=cfg.scaling,
        storage=cfg.storage,
        ray_address=cfg.ray_address,
        run=RecommenderRunSection(checkpoint_uri=storage.join(cfg.out_uri, "runs/recommender")),
    )
    summary = run_train_recommender(
        rec_cfg, progress=lambda m: emit("epoch", stage="train_recommender", **m)
    )
    return {
        "model": paths.recommender,
        "epochs": summary["epochs"],
        # next-item trainer: NDCG@10; F with ranking heads (a search log): click GAUC
        **{k: summary[k] for k in ("best_valid_ndcg@10", "best_valid_gauc") if k in summary},
    }


def _stage_evaluate_recommender(cfg: PipelineConfig, paths: Paths, emit: Progress) -> dict:
    from synthrec.data.eventlog import load_event_log
    from synthrec.recommender.artifacts import load_recommender
    from synthrec.recommender.evaluation import evaluate_recommender

    rec = load_recommender(paths.recommender, cfg.storage)
    real, _ = load_event_log(_real_uri(cfg, paths), cfg.schema_uri, cfg.storage)
    report = evaluate_recommender(
        rec,
        real,
        progress=lambda part, **_: emit("evaluate", part=part),
    )
    metrics_uri = storage.join(paths.recommender_report, "metrics.json")
    storage.write_bytes(metrics_uri, json.dumps(report, indent=2).encode(), cfg.storage)
    f, pop = (
        report["ranking"]["F"]["overall"],
        report["ranking"].get("popularity", {}).get("overall", {}),
    )
    heads = report["ranking_heads"]  # F's click heads (a search log): GAUC per user
    return {
        "metrics": metrics_uri,
        "ndcg@10": f["ndcg@10"],
        "recall@10": f["recall@10"],
        "mrr": f["mrr"],
        "popularity_ndcg@10": pop.get("ndcg@10"),
        **(
            {
                "click_gauc": heads["F"]["gauc_user"],
                "item_ctr_click_gauc": heads.get("item_ctr", {}).get("gauc_user"),
            }
            if heads
            else {}
        ),
    }


STAGE_FUNCS: dict[str, Callable[[PipelineConfig, Paths, Progress], dict]] = {
    "data": _stage_data,
    "train_gan": _stage_train_gan,
    "generate": _stage_generate,
    "evaluate": _stage_evaluate,
    "train_recommender": _stage_train_recommender,
    "evaluate_recommender": _stage_evaluate_recommender,
}


# ------------------------------------------------------------------------------ helpers


def _real_uri(cfg: PipelineConfig, paths: Paths) -> str:
    return cfg.data_uri or paths.real


def _id_columns(schema) -> tuple[str, str]:
    from synthrec.schema import Role

    user, item = schema.column_of(Role.USER_ID), schema.column_of(Role.ITEM_ID)
    if not user or not item:
        raise DataError(
            "the pipeline needs a user_id and an item_id column (roles user_id, item_id); "
            f"columns: {', '.join(schema.names)}"
        )
    return user, item


def _common_value(schema, table) -> dict[str, str]:
    """The most frequent value of the first string categorical column (for example requests)."""
    import pyarrow.compute as pc

    from synthrec.schema import Kind, Role

    for spec in schema.by_role(Role.CATEGORICAL):
        if spec.kind == Kind.STRING:
            top = pc.value_counts(table[spec.name]).to_pylist()
            return {spec.name: max(top, key=lambda c: c["counts"])["values"]}
    return {}


_INPUTS = {
    "data": [],
    "train_gan": ["gan_train"],
    "generate": ["gan"],
    "evaluate": ["synthetic", "holdout"],
    "train_recommender": ["synthetic"],
    "evaluate_recommender": ["recommender"],
}
_SETTINGS = {
    "data": lambda c: [
        c.data_uri,
        c.schema_uri,
        # an edited schema file re-runs the data stage (only with one: other keys stay)
        *([_file_hash(c.schema_uri, c)] if c.schema_uri else []),
        c.simulate.model_dump() if c.data_uri is None else None,
        c.privacy_holdout_share,
        c.gan.seed,
        # the holdout is drawn by user for the sequence generator (rows keep their old key)
        *([c.generator] if c.generator != "rows" else []),
    ],
    "train_gan": lambda c: [
        c.gan.model_dump(),
        c.gan_epochs,
        c.gan_time_budget_min,
        c.scaling.num_workers,
        # only off the default, so the keys of existing row pipelines stay as they were
        *([c.generator, c.sequence.model_dump()] if c.generator != "rows" else []),
        *([c.gan_init_uri] if c.gan_init_uri else []),
    ],
    "generate": lambda c: [
        c.synthetic_rows,
        c.conditions,
        c.rebalance,
        c.gan.seed,
        *([c.synthetic_users] if c.synthetic_users else []),
    ],
    "evaluate": lambda c: [
        c.evaluate.model_dump(
            exclude={"real_uri", "synthetic_uri", "holdout_uri", "out_uri", "storage"}
        )
    ],
    "train_recommender": lambda c: [
        c.recommender.model_dump(),
        c.scaling.num_workers,
    ],
    "evaluate_recommender": lambda c: [],
}


def _file_hash(uri: str | None, cfg: PipelineConfig) -> str | None:
    if uri is None or not storage.exists(uri, cfg.storage):
        return None
    return hashlib.sha256(storage.read_bytes(uri, cfg.storage)).hexdigest()[:20]


def _stage_key(name: str, cfg: PipelineConfig, paths: Paths) -> str:
    """Hash of the stage's settings and of the run ids of the published inputs it reads."""
    inputs = []
    for attr in _INPUTS[name]:
        manifest = storage.read_manifest(getattr(paths, attr), cfg.storage)
        inputs.append(manifest.run_id if manifest else None)
    blob = json.dumps(
        {"settings": _SETTINGS[name](cfg), "inputs": inputs}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _record_uri(cfg: PipelineConfig, name: str) -> str:
    return storage.join(cfg.out_uri, "_stages", f"{name}.json")


def _read_record(cfg: PipelineConfig, name: str) -> dict | None:
    uri = _record_uri(cfg, name)
    if not storage.exists(uri, cfg.storage):
        return None
    try:
        return json.loads(storage.read_bytes(uri, cfg.storage))
    except ValueError:
        return None  # a damaged record only costs a re-run of its stage


def _write_record(cfg: PipelineConfig, name: str, key: str, outputs: dict) -> None:
    record = {"stage": name, "key": key, "outputs": outputs, "finished_at": time.time()}
    storage.write_bytes(
        _record_uri(cfg, name), json.dumps(record, indent=2, default=str).encode(), cfg.storage
    )


def _outputs_exist(outputs: dict, cfg: PipelineConfig) -> bool:
    """Published outputs (dataset/model folders) or report files named in a stage record still
    exist."""
    uris = [v for k, v in outputs.items() if k in _URI_KEYS and v]
    return all(storage.exists(uri, cfg.storage) for uri in uris)


_URI_KEYS = ("real", "gan_train", "holdout", "model", "synthetic", "report", "metrics")


def _headline(outcomes: dict[str, StageOutcome]) -> dict[str, Any]:
    pick = {
        "evaluate": ("fidelity", "tstr_auc", "trtr_auc", "verdict", "report"),
        "evaluate_recommender": (
            "ndcg@10",
            "recall@10",
            "mrr",
            "popularity_ndcg@10",
            "click_gauc",
            "item_ctr_click_gauc",
            "metrics",
        ),
        "train_gan": ("model", "generator", "epochs"),
        "generate": ("synthetic", "rows", "users", "rows_per_s"),
        "train_recommender": ("model", "best_valid_gauc", "best_valid_ndcg@10"),
    }
    return {  # a figure the stage does not make (click GAUC of a ratings log) is left out
        f"{stage}.{k}": outcomes[stage].outputs[k]
        for stage, keys in pick.items()
        if stage in outcomes
        for k in keys
        if outcomes[stage].outputs.get(k) is not None
    }
