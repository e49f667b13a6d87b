"""The whole evaluation: fidelity, utility, privacy, per-segment fidelity and a verdict.

`evaluate_synthetic` works on Arrow tables (the pipeline and jobs call it);
`run_evaluate` reads the tables from local paths or s3:// URIs and writes the report.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from synthrec.config import EvaluateConfig, VerdictConfig
from synthrec.errors import ConfigError
from synthrec.evaluate.columns import SHAPE_OF_ROLE, Column, Shape, check_inputs, encode
from synthrec.evaluate.fidelity import fidelity, pick
from synthrec.evaluate.privacy import evaluate_privacy
from synthrec.evaluate.sequences import sequence_columns, sequence_section
from synthrec.evaluate.utility import default_label, tstr_trtr
from synthrec.schema import Schema, apply_schema, infer_schema

STAGES = ("encode", "fidelity", "utility", "privacy", "segments", "sequences")
MIN_SEGMENT_ROWS = 20  # fewer rows on either side: the segment's fidelity is not scored
REAL, SYNTHETIC, HOLDOUT = 0, 1, 2


def evaluate_synthetic(
    real: pa.Table,
    synthetic: pa.Table,
    holdout: pa.Table | None = None,
    schema: Schema | None = None,
    cfg: EvaluateConfig | None = None,
    segments: dict | None = None,
    progress: Callable[..., None] | None = None,
) -> dict:
    """Metrics of `synthetic` against `real` (the generator's training rows) as a nested,
    JSON-ready dict: fidelity, utility, privacy, segments, sequences (per-user sequence
    metrics when the schema has user id, item id and time columns), verdict and meta.

    `holdout` (real rows the generator never saw) enables the DCR baseline and the
    membership attack and is the utility test set. `segments` names the conditioned or
    rebalanced columns (see `segment_plan`). `progress(done, stage=...)` is called after
    each of STAGES.
    """
    cfg = cfg or EvaluateConfig()
    if schema is None and cfg.roles:
        schema = infer_schema(real, cfg.roles)
    schema = check_inputs(real, synthetic, holdout, schema)
    label = check_settings(cfg, schema, segments)
    report = _Progress(progress)
    tables = [real, synthetic] + ([holdout] if holdout is not None else [])
    columns = encode([t.select(schema.names) for t in tables], schema)
    report("encode")

    fid = fidelity(
        pick(_session_as_id(columns, schema, cfg), REAL, SYNTHETIC),
        cfg.num_bins,
        cfg.correlation_threshold,
        cfg.association_threshold,
    )
    report("fidelity")
    if label is None:
        util: dict[str, Any] = {
            "label": None,
            "tstr_auc": None,
            "trtr_auc": None,
            "ratio": None,
            "note": "no binary label column; pass --label to measure utility",
        }
    else:
        util = tstr_trtr(
            columns,
            label,
            holdout is not None,
            exclude=cfg.utility_exclude,
            max_train_rows=cfg.utility_max_train_rows,
            test_fraction=cfg.utility_test_fraction,
            seed=cfg.seed,
        )
    report("utility")
    priv = evaluate_privacy(
        columns, holdout is not None, cfg.privacy_query_rows, cfg.privacy_reference_rows, cfg.seed
    )
    report("privacy")
    segs = (
        segment_fidelity(columns, segment_plan(segments, columns, cfg.max_segments), cfg)
        if segments
        else None
    )
    report("segments")
    seqs = sequence_section(real, synthetic, holdout, schema, cfg)
    report("sequences")

    metrics = {
        "fidelity": fid,
        "utility": util,
        "privacy": priv,
        "segments": segs,
        "sequences": seqs,
        "meta": {
            "rows": {
                "real": real.num_rows,
                "synthetic": synthetic.num_rows,
                "holdout": holdout.num_rows if holdout is not None else None,
            },
            "schema": schema.to_dict(),
            "seconds": report.seconds,
            "seed": cfg.seed,
            "definition": "fidelity as sdmetrics 0.32 single-table QualityReport, every row; "
            "user, item and session ids left out, like SDV's id columns",
        },
    }
    metrics["verdict"] = verdict(metrics, cfg.verdict)
    return clean(metrics)


def _session_as_id(columns: dict[str, Column], schema: Schema, cfg: EvaluateConfig) -> dict:
    """The event log's session column scored like the user and item ids: left out of the
    column shapes and pairs (its values are identifiers, new ones in any synthetic log; the
    sequence section scores what they carry, the sessions' lengths)."""
    found = sequence_columns(schema, cfg) if cfg.sequences else None
    session = (found or {}).get("session_col")
    if session is None:
        return columns
    return {**columns, session: dataclasses.replace(columns[session], shape=Shape.ID)}


class _Progress:
    """Times each stage and forwards `done, stage=name` to the caller's callback."""

    def __init__(self, callback: Callable[..., None] | None):
        self.callback, self.seconds, self._last = callback, {}, time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._last, 3)
        self._last = now
        if self.callback:
            self.callback(len(self.seconds), stage=stage)


# ---------------------------------------------------------------------------- verdict


def verdict(metrics: dict, limits: VerdictConfig) -> dict:
    """Pass/fail against `limits`; a check whose metric could not be measured is listed in
    `skipped` and does not fail the verdict."""
    priv, checks, skipped = metrics["privacy"], [], []

    def check(name: str, value: float | None, threshold: float | None, op: str) -> None:
        if threshold is None:
            return
        if value is None or (isinstance(value, float) and math.isnan(value)):
            skipped.append(name)
            return
        ok = value <= threshold if op == "<=" else value >= threshold
        checks.append(
            {"metric": name, "value": value, "op": op, "threshold": threshold, "passed": bool(ok)}
        )

    copy_limit = limits.max_exact_copy_rate
    if copy_limit is not None and priv.get("holdout_exact_copy_rate") is not None:
        copy_limit = max(
            copy_limit, priv["holdout_exact_copy_rate"]
        )  # real data coincides this often itself
    check("privacy.exact_copy_rate", priv.get("exact_copy_rate"), copy_limit, "<=")
    check(
        "privacy.dcr_share_closer_than_holdout_p5",
        priv.get("dcr_share_closer_than_holdout_p5"),
        limits.max_dcr_share,
        "<=",
    )
    check("privacy.mia_auc", priv.get("mia_auc"), limits.max_mia_auc, "<=")
    _user_checks(check, (metrics.get("sequences") or {}).get("privacy"), limits)
    check("fidelity.overall", metrics["fidelity"].get("overall"), limits.min_fidelity, ">=")
    check("utility.ratio", metrics["utility"].get("ratio"), limits.min_utility_ratio, ">=")
    privacy_checks = [c["passed"] for c in checks if c["metric"].startswith("privacy.")]
    return {
        "passed": all(c["passed"] for c in checks),
        "privacy_passed": all(privacy_checks),
        "checks": checks,
        "skipped": skipped,
    }


def _user_checks(check, priv: dict | None, limits: VerdictConfig) -> None:
    """User-level privacy of an event log (the sequences section), when it was measured:
    whole-sequence copies no more often than real users coincide, shared runs of >= 5 items
    no more often than held-out real users have them, the user-level membership attack."""
    if not priv:
        return
    copies = priv["exact_copies"]
    copy_limit = limits.max_exact_copy_rate
    if copy_limit is not None and copies.get("holdout") is not None:
        copy_limit = max(copy_limit, copies["holdout"])
    check("privacy.user_exact_copy_share", copies.get("synthetic"), copy_limit, "<=")
    runs = priv["longest_shared_run"]
    key = f"share_at_least_{runs['limit']}"
    held = (runs.get("holdout") or {}).get(key)
    excess = limits.max_shared_run_excess
    check(
        f"privacy.user_shared_run_{runs['limit']}_share",
        runs["synthetic"].get(key) if held is not None else None,  # no reference: skipped
        excess + held if excess is not None and held is not None else excess,
        "<=",
    )
    check("privacy.user_mia_auc", priv.get("membership_auc"), limits.max_user_mia_auc, "<=")


# ---------------------------------------------------------------------------- segments


def segment_plan(segments: dict, columns: dict[str, Column], max_segments: int) -> list[dict]:
    """Turn segment info into [{column, value, code, target_share}].

    Accepted (and mixed) forms: {column: [values]} or {column: None} (the `max_segments`
    most frequent real values); the generation manifest's {"conditions": {column: value}}
    and {"rebalance": {column: "uniform" | {value: probability}}}.
    """
    wanted: dict[str, dict[str, float | None]] = {}
    for key, spec in segments.items():
        if key == "conditions":
            for col, value in (spec or {}).items():
                wanted.setdefault(col, {})[str(value)] = None
        elif key == "rebalance":
            for col, target in (spec or {}).items():
                wanted.setdefault(col, {}).update(
                    {str(v): float(p) for v, p in target.items()}
                    if isinstance(target, dict)
                    else {"*uniform*": None}
                )
        else:
            values = (
                spec
                if isinstance(spec, (list, tuple))
                else ([spec] if spec is not None else ["*top*"])
            )
            wanted.setdefault(key, {}).update({str(v): None for v in values})
    plan = []
    for col_name, values in wanted.items():
        col = columns.get(col_name)
        if col is None or col.shape not in (Shape.DISCRETE, Shape.ID):
            allowed = ", ".join(
                n for n, c in columns.items() if c.shape in (Shape.DISCRETE, Shape.ID)
            )
            raise ConfigError(
                f"segment column '{col_name}' is not a categorical column; use one of: {allowed}"
            )
        plan += _segment_values(col, values, max_segments)
    return plan


def _segment_values(col: Column, values: dict[str, float | None], max_segments: int) -> list[dict]:
    counts = np.bincount(col.values[REAL], minlength=col.num_codes)[:-1]
    if "*top*" in values or "*uniform*" in values:
        top = [int(c) for c in np.argsort(-counts, kind="stable")[:max_segments] if counts[c] > 0]
        uniform = 1.0 / int((counts > 0).sum()) if "*uniform*" in values else None
        return [
            {"column": col.name, "value": col.categories[c], "code": c, "target_share": uniform}
            for c in top
        ]
    code_of = {str(v): i for i, v in enumerate(col.categories)}
    return [
        {"column": col.name, "value": v, "code": code_of.get(v), "target_share": t}
        for v, t in values.items()
    ]


def segment_fidelity(
    columns: dict[str, Column], plan: list[dict], cfg: EvaluateConfig
) -> list[dict]:
    """Row shares and fidelity of real vs synthetic rows within each segment."""
    out = []
    for seg in plan:
        col = columns[seg["column"]]
        real, syn = col.values[REAL], col.values[SYNTHETIC]
        code = seg["code"] if seg["code"] is not None else -1  # -1: a value the real data lacks
        masks = (real == code, syn == code)
        n_real, n_syn = int(masks[0].sum()), int(masks[1].sum())
        row = {
            "column": col.name,
            "value": seg["value"],
            "real_rows": n_real,
            "synthetic_rows": n_syn,
            "real_share": n_real / len(real),
            "synthetic_share": n_syn / len(syn),
            "target_share": seg["target_share"],
            "fidelity": None,
            "column_shapes": None,
            "column_pair_trends": None,
        }
        if min(n_real, n_syn) < MIN_SEGMENT_ROWS:
            row["note"] = f"fewer than {MIN_SEGMENT_ROWS} rows on a side; not scored"
        else:
            others = {n: c for n, c in columns.items() if n != col.name}
            fid = fidelity(
                pick(others, REAL, SYNTHETIC, masks),
                cfg.num_bins,
                cfg.correlation_threshold,
                cfg.association_threshold,
                details=False,
            )
            row.update(
                fidelity=fid["overall"],
                column_shapes=fid["column_shapes"],
                column_pair_trends=fid["column_pair_trends"],
            )
        out.append(row)
    return out


# ---------------------------------------------------------------------------- JSON


def clean(obj: Any) -> Any:
    """JSON-ready copy: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ---------------------------------------------------------------------------- job entry


class Inputs(NamedTuple):
    """The tables of one evaluation, read and checked against each other."""

    real: pa.Table
    synthetic: pa.Table
    holdout: pa.Table | None
    schema: Schema
    segments: dict | None
    dp: dict | None = None  # the model's epsilon_spent and delta (generate's manifest)


def load_inputs(cfg: EvaluateConfig) -> Inputs:
    """Read real/synthetic/holdout from `cfg` URIs (local or s3://) and check them, so bad
    input fails before any work starts. Segments default to the synthetic dataset manifest's
    conditions/rebalance."""
    from synthrec import storage

    check_config(cfg)
    storage.check_writable(cfg.out_uri, cfg.storage)
    real = storage.read_table(cfg.real_uri, cfg.storage)
    plan = storage.plan_read(cfg.synthetic_uri, cfg.storage)  # the manifest once: rows and segments
    synthetic = storage.read_plan(plan, cfg.storage)
    holdout = storage.read_table(cfg.holdout_uri, cfg.storage) if cfg.holdout_uri else None
    known = known_schema(cfg, real) if real.num_rows else None
    if known is not None:  # the schema given or carried by the real data: applied to all three
        real, synthetic, holdout = (
            apply_schema(t, known, w) if t is not None else None
            for t, w in ((real, "real"), (synthetic, "synthetic"), (holdout, "holdout"))
        )
    schema = check_inputs(real, synthetic, holdout, known)
    segments = cfg.segments if cfg.segments is not None else _manifest_segments(plan.manifest)
    check_settings(cfg, schema, segments)
    return Inputs(real, synthetic, holdout, schema, segments, _manifest_dp(plan.manifest))


def known_schema(cfg: EvaluateConfig, real: pa.Table) -> Schema | None:
    """The real table's schema: `cfg.schema_uri`, else its manifest's, with `cfg.roles` on top;
    None leaves roles to inference (as `check_inputs` does)."""
    from synthrec.data.eventlog import manifest_schema, schema_table

    if cfg.schema_uri:
        schema = schema_table(real, cfg.schema_uri, cfg.storage, where=cfg.real_uri)[1]
    else:
        schema = manifest_schema(cfg.real_uri, cfg.storage)
    if not cfg.roles:
        return schema
    roles = {c.name: c.role.value for c in schema.columns} if schema else {}
    applied = apply_schema(real, schema, "real") if schema else real
    inferred = infer_schema(applied, {**roles, **cfg.roles})
    ignore = tuple(dict.fromkeys([*(schema.ignore if schema else ()), *inferred.ignore]))
    return Schema(inferred.columns, schema.behaviour if schema else None, ignore)


def run_evaluate(
    cfg: EvaluateConfig, progress: Callable[..., None] | None = None, inputs: Inputs | None = None
) -> dict:
    """Evaluate the tables `cfg` names (or already loaded `inputs`) and write report.html and
    metrics.json under `cfg.out_uri`. Returns the metrics."""
    from synthrec.evaluate.report import write_report

    real, synthetic, holdout, schema, segments, dp = inputs or load_inputs(cfg)
    metrics = evaluate_synthetic(real, synthetic, holdout, schema, cfg, segments, progress)
    if dp:
        metrics["meta"]["differential_privacy"] = dp
    metrics["meta"]["inputs"] = {
        "real": cfg.real_uri,
        "synthetic": cfg.synthetic_uri,
        "holdout": cfg.holdout_uri,
    }
    write_report(
        metrics,
        real,
        synthetic,
        holdout,
        cfg.out_uri,
        storage_cfg=cfg.storage,
        max_categories=cfg.report_max_categories,
    )
    if progress:
        progress(len(STAGES) + 1, stage="report")
    return metrics


def check_settings(cfg: EvaluateConfig, schema: Schema, segments: dict | None = None) -> str | None:
    """Check the column names `cfg` and `segments` use against the schema, before any work;
    returns the label to predict."""
    unknown = [c for c in cfg.utility_exclude if c not in schema.names]
    if unknown:
        raise ConfigError(
            f"utility_exclude names unknown column(s) {', '.join(unknown)}; columns: "
            f"{', '.join(schema.names)}"
        )
    sequence_columns(schema, cfg)  # a named session or category column must exist
    coded = [c.name for c in schema.columns if SHAPE_OF_ROLE[c.role] in (Shape.DISCRETE, Shape.ID)]
    for key, spec in (segments or {}).items():
        for col in (spec or {}) if key in ("conditions", "rebalance") else [key]:
            if col not in coded:
                raise ConfigError(
                    f"segment column '{col}' is not a categorical column; use one of: "
                    f"{', '.join(coded)}"
                )
    return default_label(schema, cfg.label)


def check_config(cfg: EvaluateConfig) -> None:
    """Fail in milliseconds on a config that names no tables."""
    if not cfg.real_uri or not cfg.synthetic_uri:
        raise ConfigError(
            "evaluate needs both a real and a synthetic table URI: --real-uri and "
            "--synthetic-uri (real_uri and synthetic_uri in a config)"
        )


def _manifest_dp(manifest) -> dict | None:
    """epsilon_spent and delta of a DP model, as `synthrec generate` records them."""
    meta = manifest.metadata if manifest is not None else {}
    found = {k: meta[k] for k in ("epsilon_spent", "delta") if meta.get(k) is not None}
    return found or None


def _manifest_segments(manifest) -> dict | None:
    """conditions/rebalance recorded by `synthrec generate` in the dataset manifest, if any."""
    meta = manifest.metadata if manifest is not None else {}
    found = {k: meta[k] for k in ("conditions", "rebalance") if meta.get(k)}
    return found or None
