"""The continuous loop: one refresh per new partition of real events.

    plan        production version (and its generator) this refresh starts from; a schema
                that differs from production's fails here, naming the columns
    data        the partition published; the real log so far (earlier partitions + this one);
                drift of each column against the previous partition
    generator   the pipeline's data / train_gan / generate / evaluate stages on the partition,
                the generator warm-started from production's (bounded epochs): the fresh
                synthetic set is the new period's behaviour (recency by construction)
    recommender F fine-tuned from production's weights on the real log so far + the fresh
                synthetic set, with the seed's loss (real + λ · synthetic)
    compare     candidate and production ranked on the newest held-out slice: each user of
                the partition's last interaction, never trained on by either
    register    a registry version with its lineage (alias `candidate`)
    decide      `production` moves to it only when it wins by `margin` and the synthetic set
                passes the privacy verdict; otherwise production stays and the reason is kept

Every stage writes a record `<out>/refreshes/<id>/_stages/<stage>.json` keyed by its inputs;
the refresh id hashes the partition's content, the previous refresh and the settings, so a
crashed refresh re-run with the same partition reuses what it finished and ends in the same
registry state. `<out>/refresh/state.json` lists finished refreshes (the monitoring page and
the Prometheus textfile `<out>/refresh/metrics.prom` are written from it).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from synthrec import storage
from synthrec.config import (
    PipelineConfig,
    RecommenderRunSection,
    RefreshConfig,
    TrainRecommenderConfig,
)
from synthrec.errors import DataError, SchemaError

Progress = Callable[..., None]
STAGES = ("plan", "data", "generator", "recommender", "compare", "register", "decide")
GENERATOR_STAGES = ["data", "train_gan", "generate", "evaluate"]


def run_refresh(cfg: RefreshConfig, progress: Progress | None = None) -> dict[str, Any]:
    """One refresh (see the module docstring); -> its outcome (also kept in state.json).

    A partition with no rows returns {"status": "nothing to do", ...} and changes nothing."""
    emit = progress or (lambda *a, **k: None)
    storage.check_writable(cfg.out_uri, cfg.storage)
    _require_partition(cfg)
    partition = storage.read_table(cfg.partition_uri, cfg.storage)
    if partition.num_rows == 0:
        return {
            "status": "nothing to do",
            "reason": f"{cfg.partition_uri} has no rows; production is unchanged",
        }
    state = read_state(cfg)
    partition_key = _partition_key(cfg, partition)
    done = next((r for r in state["refreshes"] if r.get("partition_key") == partition_key), None)
    if done is not None:
        emit("done_before", id=done["id"])
        return {**done, "status": "already done"}
    refresh_id = refresh_id_of(partition_key, state)
    try:
        outcome = _run_stages(cfg, refresh_id, partition, state, emit)
    except Exception as err:
        state["failures_in_a_row"] = state.get("failures_in_a_row", 0) + 1
        state["last_failure"] = {"id": refresh_id, "at": time.time(), "error": str(err)[:500]}
        _write_state(cfg, state)
        raise
    state["refreshes"].append({**outcome, "partition_key": partition_key})
    state["failures_in_a_row"] = 0
    _write_state(cfg, state)
    _write_monitoring(cfg, state)
    return {**outcome, "status": "promoted" if outcome["promoted"] else "kept production"}


# ------------------------------------------------------------------------------ stages


def _run_stages(cfg: RefreshConfig, refresh_id: str, partition: pa.Table, state, emit) -> dict:
    ctx = {"cfg": cfg, "id": refresh_id, "root": storage.join(cfg.out_uri, "refreshes", refresh_id)}
    ctx["partition"], ctx["state"] = partition, state
    outputs: dict[str, dict] = {}
    for name in STAGES:
        key = _key(name, ctx, outputs)
        record = _read_record(ctx, name)
        if record and record["key"] == key:
            outputs[name] = record["outputs"]
            emit("stage", name=name, reused=True)
            continue
        emit("stage", name=name, reused=False)
        start = time.monotonic()
        # as JSON round-trips it, so later keys match those of a resumed run
        outputs[name] = json.loads(json.dumps(STAGE_FUNCS[name](ctx, outputs, emit), default=str))
        _write_record(ctx, name, key, outputs[name])
        emit("stage_done", name=name, seconds=time.monotonic() - start)
    plan, data, decide = outputs["plan"], outputs["data"], outputs["decide"]
    return {
        "id": refresh_id,
        "finished_at": time.time(),
        "partition_uri": cfg.partition_uri,
        "partition": data["partition"],
        "real_all": data["real_all"],
        "rows": data["rows"],
        "drift": data["drift"],
        "start_version": plan["production"],
        "warm_start": plan["warm"],
        "fidelity": outputs["generator"]["fidelity"],
        "privacy_passed": outputs["generator"]["verdict"],
        "candidate_ndcg@10": outputs["compare"]["candidate"],
        "production_ndcg@10": outputs["compare"]["production"],
        "version": outputs["register"]["version"],
        "promoted": decide["promoted"],
        "reason": decide["reason"],
    }


def _stage_plan(ctx, outputs, emit) -> dict:
    """Production version this refresh starts from, and whether the schema allows a warm start."""
    from synthrec.registry import PRODUCTION, Registry

    cfg = ctx["cfg"]
    with Registry(cfg.out_uri, cfg.registry, cfg.storage) as reg:
        prod = reg.alias(PRODUCTION)
    columns = _columns(ctx["partition"])
    changed = _schema_changes(json.loads(prod.tags["columns"]), columns) if prod else []
    if changed and not cfg.allow_schema_change:
        raise SchemaError(
            f"{cfg.partition_uri}: its columns differ from production version {prod.version}'s: "
            f"{'; '.join(changed)}; fix the partition, or pass --allow-schema-change to train "
            "a new generator and F from scratch on it"
        )
    warm = prod is not None and not changed
    return {
        "production": prod.version if prod else None,
        "production_uri": prod.model_uri if prod else None,
        "production_generator": prod.tags.get("generator_uri") if prod else None,
        "warm": warm,
        "schema_changes": changed,
        "columns": columns,
    }


def _stage_data(ctx, outputs, emit) -> dict:
    from synthrec.data.eventlog import load_event_log
    from synthrec.evaluate.drift import column_drift

    cfg, state, root = ctx["cfg"], ctx["state"], ctx["root"]
    new, schema = load_event_log(cfg.partition_uri, cfg.schema_uri, cfg.storage)
    meta = {"schema": schema.to_dict()}
    partition_uri = storage.join(root, "data", "partition")
    storage.write_dataset(new, partition_uri, cfg.storage, metadata={**meta, "split": "partition"})
    previous = state["refreshes"][-1] if state["refreshes"] else None
    drift: dict[str, dict] = {}
    real_all = new
    if previous is not None and not outputs["plan"]["schema_changes"]:
        before = storage.read_table(previous["partition"], cfg.storage)
        drift = column_drift(before, new, schema)
        real_all = pa.concat_tables(
            [storage.read_table(previous["real_all"], cfg.storage), new], promote_options="none"
        )
    all_uri = storage.join(root, "data", "real_all")
    storage.write_dataset(real_all, all_uri, cfg.storage, metadata={**meta, "split": "real so far"})
    return {
        "partition": partition_uri,
        "real_all": all_uri,
        "rows": new.num_rows,
        "rows_so_far": real_all.num_rows,
        "drift": drift,
    }


def _stage_generator(ctx, outputs, emit) -> dict:
    """The pipeline's generator stages on the partition (their own keys and records)."""
    from synthrec.pipeline import run_pipeline

    pipe = _pipeline_config(ctx, outputs)
    result = run_pipeline(pipe, progress=lambda kind, **e: emit(kind, **{"part": "generator", **e}))
    stages = result["stages"]
    evaluate = stages["evaluate"]["outputs"]
    metrics = json.loads(storage.read_bytes(evaluate["metrics"], ctx["cfg"].storage))
    return {
        "model": stages["train_gan"]["outputs"]["model"],
        "synthetic": stages["generate"]["outputs"]["synthetic"],
        "report": evaluate["report"],
        "fidelity": evaluate["fidelity"],
        # the privacy checks only: fidelity and utility are judged by F's scores below
        "verdict": metrics.get("verdict", {}).get("privacy_passed"),
        "epsilon": _epsilon(stages["train_gan"]["outputs"]["model"], ctx["cfg"]),
    }


def _pipeline_config(ctx, outputs) -> PipelineConfig:
    cfg, plan = ctx["cfg"], outputs["plan"]
    warm = plan["warm"] and plan["production_generator"]
    return PipelineConfig(
        out_uri=storage.join(ctx["root"], "pipeline"),
        data_uri=outputs["data"]["partition"],
        generator=cfg.generator,
        gan=cfg.gan,
        sequence=cfg.sequence,
        gan_epochs=cfg.gan_epochs if warm else cfg.scratch_gan_epochs,
        gan_time_budget_min=None,
        gan_init_uri=plan["production_generator"] if warm else None,
        privacy_holdout_share=cfg.privacy_holdout_share,
        synthetic_rows=cfg.synthetic_rows,
        evaluate=cfg.evaluate,
        scaling=cfg.scaling,
        generate_concurrency=cfg.generate_concurrency,
        stages=GENERATOR_STAGES,
        storage=cfg.storage,
        ray_address=cfg.ray_address,
    )


def _stage_recommender(ctx, outputs, emit) -> dict:
    from synthrec.distributed.common import ensure_ray
    from synthrec.distributed.recommender_train import run_train_recommender

    cfg, plan = ctx["cfg"], outputs["plan"]
    model = cfg.recommender
    if model.ranking_heads is None:  # the loop fine-tunes F's next-item model, whatever the log
        model = model.model_copy(update={"ranking_heads": False})
    if plan["warm"]:  # fine-tuning: a bounded number of epochs from production's weights
        model = model.model_copy(update={"epochs": cfg.recommender_epochs, "time_budget_s": None})
    rec_cfg = TrainRecommenderConfig(
        real_uri=outputs["data"]["real_all"],
        synthetic_uri=outputs["generator"]["synthetic"],
        out_uri=storage.join(ctx["root"], "models", "recommender"),
        init_model_uri=plan["production_uri"] if plan["warm"] else None,
        model=model,
        scaling=cfg.scaling,
        storage=cfg.storage,
        ray_address=cfg.ray_address,
        run=RecommenderRunSection(checkpoint_uri=storage.join(ctx["root"], "runs", "recommender")),
    )
    ensure_ray(cfg.ray_address)
    summary = run_train_recommender(
        rec_cfg, progress=lambda m: emit("epoch", stage="recommender", **m)
    )
    return {
        "model": rec_cfg.out_uri,
        "epochs": summary["epochs"],
        "history": summary["history"],
        "params": rec_cfg.model.model_dump(mode="json"),
        "best_valid_ndcg@10": summary["best_valid_ndcg@10"],
    }


def _stage_compare(ctx, outputs, emit) -> dict:
    """NDCG@10 of candidate and production on each partition user's last interaction."""
    from synthrec.recommender.artifacts import load_recommender

    cfg, plan = ctx["cfg"], outputs["plan"]
    candidate = load_recommender(outputs["recommender"]["model"], cfg.storage)
    production = load_recommender(plan["production_uri"], cfg.storage) if plan["warm"] else None
    real_all = storage.read_table(outputs["data"]["real_all"], cfg.storage)
    partition = storage.read_table(outputs["data"]["partition"], cfg.storage)
    enc = candidate.encoder
    users = pc.unique(partition.column(enc.columns.user))
    slice_ = real_all.filter(pc.is_in(real_all.column(enc.columns.user), value_set=users))
    if production is not None:  # rows of items production never saw cannot be ranked by it
        known = pc.is_in(slice_.column(enc.columns.item), value_set=production.encoder.item_ids)
        slice_ = slice_.filter(known)
    scores = {"candidate": _ndcg(candidate, slice_)}
    scores["production"] = _ndcg(production, slice_) if production is not None else None
    return {**scores, "users": len(users), "rows": slice_.num_rows}


def _ndcg(rec, table: pa.Table) -> float:
    from synthrec.recommender.evaluation import evaluate_recommender

    report = evaluate_recommender(rec, table, baselines=False)
    return round(float(report["ranking"]["F"]["overall"]["ndcg@10"]), 6)


def _stage_register(ctx, outputs, emit) -> dict:
    """A registry version for the candidate (found again, not duplicated, on a re-run)."""
    from synthrec.registry import Registry

    cfg, plan, gen = ctx["cfg"], outputs["plan"], outputs["generator"]
    rec, data = outputs["recommender"], outputs["data"]
    with Registry(cfg.out_uri, cfg.registry, cfg.storage) as reg:
        found = reg.find("refresh_id", ctx["id"])
        if found is not None:
            return {"version": found.version, "model_uri": found.model_uri}
        run_id = reg.log_run(f"refresh-{ctx['id']}", {"model": rec["params"]}, rec["history"])
        lineage = {
            "refresh_id": ctx["id"],
            "parent_version": str(plan["production"]) if plan["warm"] else "none",
            "data_manifests": {k: _run_id(data[k], cfg) for k in ("partition", "real_all")}
            | {"synthetic": _run_id(gen["synthetic"], cfg)},
            "generator_uri": gen["model"],
            "config_hash": _hash(cfg.model_dump(mode="json", exclude={"storage"})),
            "columns": plan["columns"],
            "metrics": {
                "ndcg@10": outputs["compare"]["candidate"],
                "production_ndcg@10": outputs["compare"]["production"],
                "fidelity": gen["fidelity"],
            },
            "privacy_passed": str(gen["verdict"]),
            **({"epsilon": str(gen["epsilon"])} if gen["epsilon"] is not None else {}),
        }
        version = reg.register(rec["model"], lineage, run_id=run_id)
    return {"version": version.version, "model_uri": version.model_uri}


def _stage_decide(ctx, outputs, emit) -> dict:
    from synthrec.registry import Registry

    cfg, scores = ctx["cfg"], outputs["compare"]
    version, verdict = outputs["register"]["version"], outputs["generator"]["verdict"]
    cand, prod = scores["candidate"], scores["production"]
    if verdict is False:
        promoted = False
        reason = "the fresh synthetic set failed the privacy verdict; production kept"
    elif prod is None:
        promoted = True
        reason = f"no production version to beat (start or schema change); NDCG@10 {cand:.4f}"
    elif cand >= prod + cfg.margin:
        promoted = True
        reason = f"candidate NDCG@10 {cand:.4f} >= production {prod:.4f} + margin {cfg.margin}"
    else:
        promoted = False
        reason = (
            f"candidate NDCG@10 {cand:.4f} < production {prod:.4f} + margin {cfg.margin}; "
            "production kept"
        )
    if promoted:
        with Registry(cfg.out_uri, cfg.registry, cfg.storage) as reg:
            reg.promote(version)
    emit("decision", promoted=promoted, reason=reason, version=version)
    return {"promoted": promoted, "reason": reason}


STAGE_FUNCS = {
    "plan": _stage_plan,
    "data": _stage_data,
    "generator": _stage_generator,
    "recommender": _stage_recommender,
    "compare": _stage_compare,
    "register": _stage_register,
    "decide": _stage_decide,
}


# ------------------------------------------------------------------------------ keys, records


def _partition_key(cfg: RefreshConfig, partition: pa.Table) -> str:
    """Hash of the partition's content and the settings: the same partition is refreshed once."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, partition.schema) as writer:
        writer.write_table(partition)
    content = hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()
    settings = cfg.model_dump(mode="json", exclude={"storage", "partition_uri", "ray_address"})
    return _hash({"content": content, "settings": settings})


def refresh_id_of(partition_key: str, state: dict) -> str:
    """A refresh's id: its partition key and the refresh before it (the loop's order)."""
    previous = state["refreshes"][-1]["id"] if state["refreshes"] else None
    return _hash({"partition": partition_key, "previous": previous})


def _key(name: str, ctx, outputs: dict) -> str:
    """A stage's key: the refresh id and the outputs of the stages before it."""
    before = {n: outputs[n] for n in STAGES[: STAGES.index(name)]}
    return _hash({"id": ctx["id"], "stage": name, "before": before})


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _record_uri(ctx, name: str) -> str:
    return storage.join(ctx["root"], "_stages", f"{name}.json")


def _read_record(ctx, name: str) -> dict | None:
    uri, cfg = _record_uri(ctx, name), ctx["cfg"]
    if not storage.exists(uri, cfg.storage):
        return None
    try:
        return json.loads(storage.read_bytes(uri, cfg.storage))
    except ValueError:
        return None  # a damaged record costs a re-run of its stage


def _write_record(ctx, name: str, key: str, outputs: dict) -> None:
    record = {"stage": name, "key": key, "outputs": outputs, "finished_at": time.time()}
    data = json.dumps(record, indent=1, default=str).encode()
    storage.write_bytes(_record_uri(ctx, name), data, ctx["cfg"].storage)


# ------------------------------------------------------------------------------ state


def state_uri(out_uri: str) -> str:
    return storage.join(out_uri, "refresh", "state.json")


def read_state(cfg: RefreshConfig) -> dict[str, Any]:
    uri = state_uri(cfg.out_uri)
    if not storage.exists(uri, cfg.storage):
        return {"refreshes": [], "failures_in_a_row": 0}
    return json.loads(storage.read_bytes(uri, cfg.storage))


def _write_state(cfg: RefreshConfig, state: dict) -> None:
    data = json.dumps(state, indent=1, default=str).encode()
    storage.write_bytes(state_uri(cfg.out_uri), data, cfg.storage)
    storage.write_bytes(
        storage.join(cfg.out_uri, "refresh", "metrics.prom"), prometheus_text(state), cfg.storage
    )


def prometheus_text(state: dict) -> bytes:
    """Refresh gauges in Prometheus' text format (for node_exporter's textfile collector);
    serve/alerts.yml alerts on them."""
    refreshes = state["refreshes"]
    not_promoted = 0
    for r in reversed(refreshes):
        if r["promoted"]:
            break
        not_promoted += 1
    last_ok = refreshes[-1]["finished_at"] if refreshes else 0
    last = refreshes[-1] if refreshes else {}
    gauges = {
        "synthrec_refresh_failures_in_a_row": state.get("failures_in_a_row", 0),
        "synthrec_refresh_not_promoted_in_a_row": not_promoted,
        "synthrec_refresh_last_success_timestamp_seconds": last_ok,
        "synthrec_refresh_total": len(refreshes),
        "synthrec_refresh_candidate_ndcg_at_10": last.get("candidate_ndcg@10") or 0,
        "synthrec_refresh_max_drift": max(
            (d["distance"] for d in last.get("drift", {}).values()), default=0
        ),
    }
    lines = [f"# TYPE {k} gauge\n{k} {float(v)!r}" for k, v in gauges.items()]
    return ("\n".join(lines) + "\n").encode()


def _write_monitoring(cfg: RefreshConfig, state: dict) -> None:
    from synthrec.evaluate.report import render_refresh_page

    page = render_refresh_page(state["refreshes"])
    storage.write_bytes(
        storage.join(cfg.out_uri, "refresh", "report.html"), page.encode(), cfg.storage
    )


# ------------------------------------------------------------------------------ helpers


def _columns(table: pa.Table) -> dict[str, str]:
    return {f.name: str(f.type) for f in table.schema}


def _schema_changes(before: dict[str, str], now: dict[str, str]) -> list[str]:
    """What differs between production's columns and the partition's, one phrase each."""
    added = [c for c in now if c not in before]
    removed = [c for c in before if c not in now]
    retyped = [f"{c} ({before[c]} -> {now[c]})" for c in now if c in before and before[c] != now[c]]
    return [
        f"{what}: {', '.join(cols)}"
        for what, cols in (("added", added), ("removed", removed), ("retyped", retyped))
        if cols
    ]


def _run_id(uri: str, cfg: RefreshConfig) -> str | None:
    manifest = storage.read_manifest(uri, cfg.storage)
    return manifest.run_id if manifest else None


def _epsilon(model_uri: str, cfg: RefreshConfig) -> float | None:
    """ε of a DP-trained generator (its manifest-published metadata), else None."""
    if cfg.gan.privacy is None:
        return None
    from synthrec.model_dir import METADATA

    meta = json.loads(storage.read_files(model_uri, [METADATA], cfg.storage)[METADATA])
    return meta.get("epsilon_spent")


def _require_partition(cfg: RefreshConfig) -> None:
    """A partition URI that does not exist: a DataError naming it."""
    if not storage.exists(cfg.partition_uri, cfg.storage):
        raise DataError(f"partition {cfg.partition_uri} does not exist; check the URI")
