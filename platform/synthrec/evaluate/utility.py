"""Utility: train on synthetic / test on real (TSTR) against train on real / test on real
(TRTR), ROC AUC of a HistGradientBoosting classifier for one binary label.

Test rows are the holdout when given; otherwise a seeded `test_fraction` of the real rows
(TRTR then trains on the rest, and TSTR is optimistic if the generator saw those rows).
Training uses at most `max_train_rows` seeded random rows of each side (documented bound).
Features: continuous columns as floats (NaN kept: the model handles missing values),
categoricals with at most 255 codes as native categories, ids and larger categoricals as
integer codes; text columns and `exclude` are dropped.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from synthrec.errors import ConfigError
from synthrec.evaluate.columns import Column, Shape
from synthrec.schema import Role, Schema

MAX_NATIVE_CATEGORIES = 255  # HistGradientBoosting's limit for a categorical feature
REAL, SYNTHETIC, HOLDOUT = 0, 1, 2


def default_label(schema: Schema, label: str | None) -> str | None:
    """The label to predict: `label` if given (checked), else the strongest behaviour label
    (a purchase, rarer than the clicks every event may be), else the schema's first label."""
    if label is None:
        if schema.behaviour is not None:
            return schema.behaviour.names[-1]
        labels = schema.by_role(Role.LABEL)
        return labels[0].name if labels else None
    if label not in schema.names:
        raise ConfigError(
            f"label column '{label}' is not in the data; columns: {', '.join(schema.names)}"
        )
    return label


def positive_codes(col: Column) -> np.ndarray:
    """Codes of the positive class: 1/True for numeric labels, else the last value in sort
    order ("yes" > "no", "true" > "false")."""
    values = [v for v in col.categories]
    if len(set(map(str, values))) > 2:
        raise ConfigError(f"label '{col.name}' has {len(values)} values; TSTR needs a binary label")
    ranked = sorted(values, key=lambda v: (str(type(v)), v))
    positive = ranked[-1] if ranked else None
    return np.array([v == positive and v is not None for v in col.categories] + [False])


def features(
    columns: dict[str, Column], label: str, table: int, rows: np.ndarray, exclude: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(X float64 (n, f), mask of native categorical features) for the rows of one table."""
    blocks, categorical = [], []
    for col in columns.values():
        if col.name == label or col.name in exclude or col.shape == Shape.OTHER:
            continue
        v = col.values[table][rows]
        if col.shape == Shape.CONTINUOUS:
            blocks.append(v)
            categorical.append(False)
        else:
            v = np.where(v == col.null_code, np.nan, v.astype(np.float64))
            blocks.append(v)
            categorical.append(
                col.shape == Shape.DISCRETE and col.null_code <= MAX_NATIVE_CATEGORIES
            )
    return np.column_stack(blocks), np.array(categorical, dtype=bool)


def tstr_trtr(
    columns: dict[str, Column],
    label: str,
    has_holdout: bool,
    *,
    exclude: list[str],
    max_train_rows: int,
    test_fraction: float,
    seed: int,
) -> dict:
    """TSTR and TRTR ROC AUC and their ratio, with the rows used."""
    rng = np.random.default_rng(seed)
    lab = columns[label]
    positive = positive_codes(lab)
    n_real = len(lab.values[REAL])
    if has_holdout:
        test_table, test_rows, real_train = (
            HOLDOUT,
            np.arange(len(lab.values[HOLDOUT])),
            np.arange(n_real),
        )
    else:
        perm = rng.permutation(n_real)
        cut = int(round(n_real * test_fraction))
        test_table, test_rows, real_train = REAL, np.sort(perm[:cut]), np.sort(perm[cut:])
    syn_train = np.arange(len(lab.values[SYNTHETIC]))
    # rows without a label teach and test nothing
    test_rows = test_rows[lab.values[test_table][test_rows] != lab.null_code]
    real_train = real_train[lab.values[REAL][real_train] != lab.null_code]
    syn_train = syn_train[lab.values[SYNTHETIC] != lab.null_code]
    real_train, syn_train = (
        _cap(real_train, max_train_rows, rng),
        _cap(syn_train, max_train_rows, rng),
    )

    y_test = positive[lab.values[test_table][test_rows]]
    x_test, cat = features(columns, label, test_table, test_rows, exclude)
    out = {
        "label": label,
        "test": "holdout" if has_holdout else f"{test_fraction:.0%} of real rows",
        "test_rows": int(len(test_rows)),
        "train_rows_real": int(len(real_train)),
        "train_rows_synthetic": int(len(syn_train)),
        "excluded": list(exclude),
    }
    if len(np.unique(y_test)) < 2:
        return out | {
            "tstr_auc": None,
            "trtr_auc": None,
            "ratio": None,
            "note": f"test rows hold one class of '{label}' only; AUC is undefined",
        }
    fits = [("trtr_auc", REAL, real_train), ("tstr_auc", SYNTHETIC, syn_train)]

    def fit_and_score(name: str, table: int, rows: np.ndarray) -> tuple[str, float | None]:
        y = positive[lab.values[table][rows]]
        if len(np.unique(y)) < 2:
            return name, None
        x, _ = features(columns, label, table, rows, exclude)
        model = HistGradientBoostingClassifier(
            max_iter=100,
            early_stopping=False,
            random_state=seed,
            categorical_features=cat if cat.any() else None,
        )
        model.fit(x, y)
        return name, float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]))

    # The two fits run side by side with one OpenMP thread each: on a small shared machine
    # that beats two threads per fit, whose barrier spin-waits cost 4x the CPU time.
    with threadpool_limits(1, user_api="openmp"), ThreadPoolExecutor(max_workers=2) as pool:
        aucs = dict(pool.map(lambda f: fit_and_score(*f), fits))
    out.update(aucs)
    for name, side in (("trtr_auc", "real"), ("tstr_auc", "synthetic")):
        if aucs[name] is None:
            out["note"] = f"{side} training rows hold one class of '{label}'; AUC is undefined"
    out["ratio"] = (
        aucs["tstr_auc"] / aucs["trtr_auc"]
        if aucs.get("tstr_auc") and aucs.get("trtr_auc")
        else None
    )
    if aucs.get("trtr_auc") and aucs["trtr_auc"] > 0.999:
        out["note"] = (
            f"'{label}' is (almost) determined by other columns; exclude them to measure utility"
        )
    return out


def _cap(rows: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    return rows if len(rows) <= cap else np.sort(rng.choice(rows, cap, replace=False))
