"""report.html (self-contained: inline CSS, PNGs as base64) and metrics.json.

Figures use matplotlib's object API (`Figure` + Agg canvas), never pyplot, so no global
backend is touched. Every section is always present; one without data says why.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from synthrec.config import StorageConfig
from synthrec.evaluate.columns import Column, Shape, encode
from synthrec.evaluate.fidelity import CORRELATION
from synthrec.schema import Role, Schema

REAL_COLOR, SYN_COLOR, HOLD_COLOR = "#1f4e79", "#e07b39", "#6a9f3a"
SECTIONS = ("summary", "fidelity", "utility", "privacy", "segments", "sequences", "notes")


def write_report(
    metrics: dict,
    real: pa.Table,
    synthetic: pa.Table,
    holdout: pa.Table | None,
    out_uri: str,
    storage_cfg: StorageConfig | None = None,
    max_categories: int = 20,
) -> str:
    """Write report.html and metrics.json under `out_uri` (local folder or s3:// prefix);
    returns the report's URI. `metrics` is what `evaluate_synthetic` returned."""
    from synthrec import storage

    page = render_html(metrics, real, synthetic, holdout, max_categories)
    storage.write_bytes(
        storage.join(out_uri, "metrics.json"), json.dumps(metrics, indent=2).encode(), storage_cfg
    )
    report_uri = storage.join(out_uri, "report.html")
    storage.write_bytes(report_uri, page.encode(), storage_cfg)
    return report_uri


def render_html(
    metrics: dict,
    real: pa.Table,
    synthetic: pa.Table,
    holdout: pa.Table | None,
    max_categories: int = 20,
) -> str:
    """The report as one HTML string."""
    schema = Schema.from_dict(metrics["meta"]["schema"])
    columns = encode([real.select(schema.names), synthetic.select(schema.names)], schema)
    body = "\n".join(
        [
            _summary(metrics),
            _fidelity(metrics["fidelity"], columns, max_categories),
            _utility(metrics["utility"]),
            _privacy(metrics["privacy"], metrics["meta"].get("differential_privacy")),
            _segments(metrics.get("segments")),
            _sequences(metrics.get("sequences")),
            _notes(metrics),
        ]
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Synthetic data report</title>
<style>{CSS}</style></head><body>
<h1>Synthetic data report</h1>
{body}
</body></html>
"""


PAIR_HEADER = ["Pair", "Metric", "Score", "Real", "Synthetic", "Counted by sdmetrics"]
SEGMENT_HEADER = [
    "Segment",
    "Real rows",
    "Synthetic rows",
    "Real share",
    "Synthetic share",
    "Target share",
    "Fidelity",
]

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;
 margin:24px auto;padding:0 16px;color:#222}
h1{font-size:26px;margin-bottom:4px}
h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:36px}
table{border-collapse:collapse;margin:10px 0;font-size:14px}
th,td{padding:4px 10px;border-bottom:1px solid #eee;text-align:left}
th{background:#f4f6f8} td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#fff;background:#2e7d32;padding:2px 8px;border-radius:4px}
.fail{color:#fff;background:#c62828;padding:2px 8px;border-radius:4px}
.skip{color:#555;background:#e0e0e0;padding:2px 8px;border-radius:4px}
.verdict{font-size:22px;margin:12px 0}
.bar{display:inline-block;height:10px;background:#1f4e79;vertical-align:middle}
.note{color:#555;font-size:13px} img{max-width:100%;border:1px solid #eee;margin:8px 0}
.grid{display:flex;gap:24px;flex-wrap:wrap}
"""


# ---------------------------------------------------------------------------- helpers


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{c}</td>' if i >= numeric_from else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _bar(score: float | None) -> str:
    if score is None:
        return "n/a"
    return f'{score:.3f} <span class="bar" style="width:{max(score, 0) * 80:.0f}px"></span>'


def _png(fig: Figure, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(
        buf, format="png", dpi=100
    )  # layouts are tight already; "tight" bbox would draw twice
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _badge(passed: bool | None) -> str:
    if passed is None:
        return '<span class="skip">not checked</span>'
    return '<span class="pass">PASS</span>' if passed else '<span class="fail">FAIL</span>'


# ---------------------------------------------------------------------------- sections


def _summary(m: dict) -> str:
    v, rows = m["verdict"], m["meta"]["rows"]
    checks = [
        [
            html.escape(c["metric"]),
            _fmt(c["value"]),
            f"{c['op']} {_fmt(c['threshold'])}",
            _badge(c["passed"]),
        ]
        for c in v["checks"]
    ]
    checks += [[html.escape(name), "n/a", "", _badge(None)] for name in v["skipped"]]
    f, u, p = m["fidelity"], m["utility"], m["privacy"]
    headline = [
        ["Fidelity (overall, sdmetrics QualityReport)", _fmt(f["overall"])],
        ["Fidelity, every pair counted", _fmt(f["all_pairs"]["overall"])],
        ["Utility: TSTR / TRTR ROC AUC", f"{_fmt(u.get('tstr_auc'))} / {_fmt(u.get('trtr_auc'))}"],
        ["Privacy: exact-copy rate", _fmt(p.get("exact_copy_rate"), 4)],
        [
            "Privacy: DCR share closer than holdout p5",
            _fmt(p.get("dcr_share_closer_than_holdout_p5"), 4),
        ],
        ["Privacy: membership attack AUC", _fmt(p.get("mia_auc"))],
    ]
    inputs = m["meta"].get("inputs") or {}
    where = "".join(
        f"<li>{k}: <code>{html.escape(str(val))}</code> ({rows.get(k) or 0:,} rows)</li>"
        for k, val in inputs.items()
        if val
    ) or "".join(f"<li>{k}: {n:,} rows</li>" for k, n in rows.items() if n is not None)
    return f"""<section id="summary"><h2>Summary</h2>
<div class="verdict">Verdict: {_badge(v["passed"])}</div>
{_table(["Headline", "Value"], headline)}
{_table(["Check", "Value", "Threshold", "Result"], checks)}
<ul>{where}</ul></section>"""


def _fidelity(f: dict, columns: dict[str, Column], max_categories: int) -> str:
    cover = f["coverage"]["columns"]
    rows = [
        [
            html.escape(n),
            c["metric"],
            _bar(c["score"]),
            _fmt(cover.get(n, {}).get("score")),
            cover.get(n, {}).get("metric", ""),
        ]
        for n, c in f["columns"].items()
    ]
    props = [
        ["Column shapes", _fmt(f["column_shapes"])],
        [
            f"Column pair trends (sdmetrics thresholds: {f['num_pairs_counted']} of "
            f"{f['all_pairs']['num_pairs']} pairs)",
            _fmt(f["column_pair_trends"]),
        ],
        ["Column pair trends, every pair", _fmt(f["all_pairs"]["column_pair_trends"])],
        ["Overall (mean of the two properties)", _fmt(f["overall"])],
        ["Coverage (categories and ranges)", _fmt(f["coverage"]["overall"])],
    ]
    worst = sorted([p for p in f["pairs"] if p["score"] is not None], key=lambda p: p["score"])[:10]
    pair_rows = [
        [
            html.escape(" × ".join(p["columns"])),
            p["metric"].replace("Similarity", ""),
            _fmt(p["score"]),
            _fmt(p["real"]),
            _fmt(p["synthetic"]),
            "yes" if p.get("counted") else "no",
        ]
        for p in worst
    ]
    return f"""<section id="fidelity"><h2>Fidelity</h2>
{_table(["Property", "Score"], props)}
{_table(["Column", "Metric", "Score", "Coverage", "Coverage metric"], rows, numeric_from=9)}
<h3>Distributions: real vs synthetic</h3>
{_png(distribution_figure(columns, f["columns"], max_categories), "per-column distributions")}
<h3>Associations</h3>
<p class="note">Pearson r for two numeric columns, Cramér's V (0..1) otherwise; numerics binned as
in the score.</p>
{_png(association_figure(f["pairs"], list(f["columns"])), "association heatmaps")}
<h3>Weakest pairs</h3>
{_table(PAIR_HEADER, pair_rows, numeric_from=2)}
</section>"""


def _utility(u: dict) -> str:
    rows = [
        ["Label", html.escape(str(u.get("label")))],
        ["TRTR ROC AUC (train real, test real)", _fmt(u.get("trtr_auc"))],
        ["TSTR ROC AUC (train synthetic, test real)", _fmt(u.get("tstr_auc"))],
        ["Ratio TSTR / TRTR", _fmt(u.get("ratio"))],
        ["Test rows", _fmt(u.get("test_rows"))],
        ["Test set", _fmt(u.get("test"))],
        [
            "Training rows (real / synthetic)",
            f"{_fmt(u.get('train_rows_real'))} / {_fmt(u.get('train_rows_synthetic'))}",
        ],
    ]
    if u.get("excluded"):
        rows.append(["Columns excluded", html.escape(", ".join(u["excluded"]))])
    note = f'<p class="note">{html.escape(u["note"])}</p>' if u.get("note") else ""
    return f"""<section id="utility"><h2>Utility</h2>
<p class="note">HistGradientBoosting (100 iterations) on every other column; ids as integer
codes.</p>
{_table(["", "Value"], rows)}{note}</section>"""


def _privacy(p: dict, dp: dict | None = None) -> str:
    dcr = p.get("dcr", {})
    syn, hold = dcr.get("synthetic", {}), dcr.get("holdout", {})
    guarantee = (
        [["Differential privacy: ε spent / δ", f"{_fmt(dp['epsilon_spent'])} / {dp['delta']:.3g}"]]
        if dp
        else [["Differential privacy", "none (the model was trained without a DP budget)"]]
    )
    rows = guarantee + [
        [
            "Exact-copy rate (synthetic rows equal to a train row)",
            _fmt(p.get("exact_copy_rate"), 4),
        ],
        ["Holdout exact-copy rate (baseline)", _fmt(p.get("holdout_exact_copy_rate"), 4)],
        [
            "DCR median: synthetic → train / holdout → train",
            f"{_fmt(syn.get('median'))} / {_fmt(hold.get('median'))}",
        ],
        ["Holdout DCR 5th percentile", _fmt(p.get("holdout_dcr_p5"))],
        [
            "Share of synthetic rows closer than that (≈0.05 is private)",
            _fmt(p.get("dcr_share_closer_than_holdout_p5"), 4),
        ],
        [
            "NNDR median: synthetic / holdout",
            f"{_fmt(p.get('nndr', {}).get('synthetic_median'))} / "
            f"{_fmt(p.get('nndr', {}).get('holdout_median'))}",
        ],
        ["Membership attack AUC (0.5 = no leak)", _fmt(p.get("mia_auc"))],
    ]
    figure = _png(dcr_figure(p), "DCR histograms") if p.get("dcr_histogram") else ""
    note = f'<p class="note">{html.escape(p["note"])}</p>' if p.get("note") else ""
    return f"""<section id="privacy"><h2>Privacy</h2>
{_table(["", "Value"], rows)}{note}
<h3>Distance to closest train record</h3>{figure}</section>"""


def _segments(segs: list[dict] | None) -> str:
    if not segs:
        return """<section id="segments"><h2>Segments</h2>
<p class="note">No segment information (the data was not generated with conditions or rebalancing,
or
none was passed).</p></section>"""
    rows = [
        [
            html.escape(f"{s['column']} = {s['value']}"),
            f"{s['real_rows']:,}",
            f"{s['synthetic_rows']:,}",
            _fmt(s["real_share"]),
            _fmt(s["synthetic_share"]),
            _fmt(s["target_share"]),
            _bar(s["fidelity"]),
        ]
        for s in segs
    ]
    return f"""<section id="segments"><h2>Segments</h2>
{_table(SEGMENT_HEADER, rows)}
{_png(segment_figure(segs), "segment fidelity")}</section>"""


def _sequences(q: dict | None) -> str:
    """Per-user sequence figures (synthrec.evaluate.sequences) as two tables and a figure."""
    if not q or "events_per_user" not in q:
        why = (q or {}).get("note", "no sequence metrics in these metrics")
        return f"""<section id="sequences"><h2>Sequences</h2>
<p class="note">{html.escape(why)}</p></section>"""
    users, events, t, p = q["users"], q["events"], q["transitions"], q["privacy"]

    def dist(key: str, stat: str) -> list[str]:
        d = q.get(key) or {}
        real, syn = d.get("real", {}), d.get("synthetic", {})
        return [f"{_fmt(syn.get(stat))} ({_fmt(d.get('ks_complement'))})", _fmt(real.get(stat))]

    def hold(value: Any, digits: int = 3) -> str:
        return f"holdout {_fmt(value, digits)}" if value is not None else "n/a (no holdout)"

    pop = q["item_popularity"]
    fidelity = [
        [
            "Users / events",
            f"{users['synthetic']:,} / {events['synthetic']:,}",
            f"{users['real']:,} / {events['real']:,}",
        ],
        ["Events per user: median (KS complement)", *dist("events_per_user", "p50")],
        [
            "Seconds between a user's events: median (KS complement)",
            *dist("inter_event_seconds", "p50"),
        ],
        [
            f"Events per session ({html.escape(q['session_lengths']['definition'])}): mean (KS "
            "complement)",
            *dist("session_lengths", "mean"),
        ],
        [
            "Item popularity: TV distance (0 = same) / coverage of real items",
            f"{_fmt(pop['tv_distance'])} / {_fmt(pop['coverage'])}",
            "",
        ],
        [
            "(previous → next item) pairs found in the real log",
            _fmt(t["pair_share_in_real"]),
            hold(t["holdout_pair_share_in_real"]),
        ],
        [
            "Transition-matrix distance (0 = same)",
            _fmt(t["matrix_distance"]),
            hold(t["holdout_matrix_distance"]),
        ],
        [
            "Repeat rate (items a user had before)",
            _fmt(q["repeat_rate"]["synthetic"]),
            _fmt(q["repeat_rate"]["real"]),
        ],
    ]
    if q.get("category_entropy"):
        fidelity.append(
            [
                "Category entropy per user (bits): mean (KS complement)",
                *dist("category_entropy", "mean"),
            ]
        )
    runs, copies = p["longest_shared_run"], p["exact_copies"]
    syn_runs, hold_runs = runs["synthetic"], runs.get("holdout") or {}
    limit = f"share_at_least_{runs['limit']}"
    privacy = [
        [
            "Exact sequence copies of a training user",
            _fmt(copies["synthetic"], 4),
            hold(copies["holdout"], 4),
        ],
        [
            "Longest run shared with a training user: median / p90 / max",
            " / ".join(_fmt(syn_runs.get(k), 0) for k in ("p50", "p90", "max")),
            " / ".join(_fmt(hold_runs.get(k), 0) for k in ("p50", "p90", "max"))
            if hold_runs
            else "n/a (no holdout)",
        ],
        [
            f"Users sharing a run of ≥ {runs['limit']} items",
            _fmt(syn_runs.get(limit), 4),
            hold(hold_runs.get(limit), 4) if hold_runs else "n/a (no holdout)",
        ],
        [
            "Membership attack AUC: run / Jaccard (0.5 = no leak)",
            f"{_fmt(p['auc_run'])} / {_fmt(p['auc_jaccard'])}",
            "",
        ],
    ]
    note = f'<p class="note">{html.escape(q["note"])}</p>' if q.get("note") else ""
    header = ["", "Synthetic", "Real (holdout where named)"]
    return f"""<section id="sequences"><h2>Sequences</h2>
<p class="note">Each table grouped by user, events in time order. KS complement: 1 = same
distribution. Shared runs compare item sequences; held-out users show how often real people
coincide with the training users by chance.</p>
{_table(header, fidelity)}
<h3>User-level privacy</h3>
{_table(header, privacy)}{note}
{_png(sequence_figure(q["histograms"], runs.get("histogram")), "sequence distributions")}
</section>"""


def _notes(m: dict) -> str:
    p, secs = m["privacy"], m["meta"].get("seconds", {})
    sample = ", ".join(f"{k.replace('_', ' ')}: {v:,}" for k, v in (p.get("sample") or {}).items())
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in secs.items())
    return f"""<section id="notes"><h2>How to read this</h2><ul>
<li>Fidelity is defined as in sdmetrics 0.32's single-table QualityReport (KS / TV complement per
column;
correlation / contingency similarity per pair; pairs counted only where the real |r| &gt; 0.5 or
Cramér's V &gt; 0.3),
computed on every row. Ids and text are not scored.</li>
<li>Privacy distances: numeric columns scaled by the real range (a full-range difference is 1);
each differing categorical,
label or item-id value adds 1 to the squared distance; user ids (pseudonyms in a model's output)
and text are left out. Exact copies compare every other column.
Bounded samples: {html.escape(sample) or "n/a"}.</li>
<li>The membership attack guesses "member" for rows close to a synthetic row; a holdout drawn at
random from the same
population as the training rows makes it meaningful (a later time window inflates it).</li>
<li>Stage times: {html.escape(timing)}.</li></ul></section>"""


# ---------------------------------------------------------------------------- figures


def distribution_figure(columns: dict[str, Column], scores: dict, max_categories: int) -> Figure:
    """Real vs synthetic distribution of every column (`Report.figures()` builds it from a
    report; `columns` from `synthrec.evaluate.columns.encode`, `scores` is
    metrics["fidelity"]["columns"])."""
    shown = [c for c in columns.values() if c.shape != Shape.OTHER]
    ncols = 3
    nrows = max(1, -(-len(shown) // ncols))
    fig = Figure(figsize=(15, 3.3 * nrows))
    for i, col in enumerate(shown):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        score = scores.get(col.name, {}).get("score")
        title = col.name + (
            f"  ({scores[col.name]['metric'].replace('Complement', '')} {score:.3f})"
            if score is not None
            else ""
        )
        if col.shape == Shape.CONTINUOUS:
            _plot_numeric(ax, col)
        elif col.shape == Shape.DISCRETE:
            _plot_categories(ax, col, max_categories)
        else:
            _plot_popularity(ax, col)
            title = f"{col.name}: popularity by rank"
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=8)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles[:2], labels[:2], loc="upper right", ncols=2, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / nrows))
    return fig


def _plot_numeric(ax, col: Column) -> None:
    real, syn = (v[~np.isnan(v)] for v in col.values)
    both = np.r_[real, syn]
    if not len(both):
        return
    lo, hi = np.quantile(both, [0.005, 0.995])
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    sample = real[:50_000]
    if (
        len(sample) and np.all(sample == np.round(sample)) and hi - lo < 1e6
    ):  # integers: whole-number bins
        step = max(1.0, np.ceil((hi - lo + 1) / 40))
        bins = np.arange(np.floor(lo) - 0.5, hi + step, step)
    else:
        bins = np.linspace(lo, hi, 41)
    for values, color, name in ((real, REAL_COLOR, "real"), (syn, SYN_COLOR, "synthetic")):
        counts, _ = np.histogram(np.clip(values, bins[0], bins[-1]), bins)
        ax.stairs(
            counts / max(len(values), 1),
            bins,
            color=color,
            label=name,
            fill=name == "real",
            alpha=0.35 if name == "real" else 1.0,
            linewidth=1.6,
        )
    ax.set_ylabel("share of rows", fontsize=8)
    if col.role == Role.DATETIME:
        ax.xaxis.set_major_formatter(
            FuncFormatter(lambda x, _: str(np.datetime64(int(x), "ns"))[:10])
        )


def _plot_categories(ax, col: Column, max_categories: int) -> None:
    real = np.bincount(col.values[0], minlength=col.num_codes) / max(len(col.values[0]), 1)
    syn = np.bincount(col.values[1], minlength=col.num_codes) / max(len(col.values[1]), 1)
    order = np.argsort(-real, kind="stable")
    top = [c for c in order[:max_categories] if real[c] > 0 or syn[c] > 0]
    labels = [("null" if c == col.null_code else str(col.categories[c]))[:14] for c in top]
    r, s = list(real[top]), list(syn[top])
    rest = np.setdiff1d(np.arange(col.num_codes), top)
    if len(rest) and (real[rest].sum() > 0 or syn[rest].sum() > 0):
        labels.append(f"other ({len(rest)})")
        r.append(real[rest].sum())
        s.append(syn[rest].sum())
    x = np.arange(len(labels))
    ax.bar(x - 0.2, r, 0.4, color=REAL_COLOR, label="real", alpha=0.8)
    ax.bar(x + 0.2, s, 0.4, color=SYN_COLOR, label="synthetic", alpha=0.9)
    ax.set_xticks(
        x,
        labels,
        rotation=60 if len(labels) > 4 else 0,
        ha="right" if len(labels) > 4 else "center",
    )
    ax.set_ylabel("share of rows", fontsize=8)


def _plot_popularity(ax, col: Column) -> None:
    for values, color, name in (
        (col.values[0], REAL_COLOR, "real"),
        (col.values[1], SYN_COLOR, "synthetic"),
    ):
        counts = np.sort(np.bincount(values, minlength=col.num_codes))[::-1]
        counts = counts[counts > 0] / max(len(values), 1)
        ax.loglog(np.arange(1, len(counts) + 1), counts, color=color, label=name)
    ax.set_xlabel("rank", fontsize=8)
    ax.set_ylabel("share of rows", fontsize=8)


def association_matrices(pairs: list[dict], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(real, synthetic) square matrices over `names`: Pearson r or Cramér's V; 1 on diagonal."""
    at = {n: i for i, n in enumerate(names)}
    mats = [np.eye(len(names)), np.eye(len(names))]
    for p in pairs:
        i, j = at[p["columns"][0]], at[p["columns"][1]]
        for mat, key in zip(mats, ("real", "synthetic")):
            value = np.nan if p[key] is None else p[key]
            mat[i, j] = mat[j, i] = value
    return mats[0], mats[1]


def association_figure(pairs: list[dict], names: list[str]) -> Figure:
    """Pairwise association heatmaps, real and synthetic side by side (metrics["fidelity"]
    ["pairs"] and the column names)."""
    real, syn = association_matrices(pairs, names)
    fig = Figure(figsize=(17, 5.6))
    panels = (
        (real, "real", "RdBu_r", -1, 1),
        (syn, "synthetic", "RdBu_r", -1, 1),
        (np.abs(syn - real), "|synthetic − real| (scale 0..0.5)", "Reds", 0, 0.5),
    )
    for k, (mat, title, cmap, vmin, vmax) in enumerate(panels):
        ax = fig.add_subplot(1, 3, k + 1)
        im = ax.imshow(mat, cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_xticks(range(len(names)), names, rotation=70, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names if k == 0 else [""] * len(names), fontsize=8)
        ax.set_title(title, fontsize=11)
        if len(names) <= 16:
            for i in range(len(names)):
                for j in range(len(names)):
                    if not np.isnan(mat[i, j]):
                        ax.text(
                            j,
                            i,
                            f"{mat[i, j]:.2f}".lstrip("0").replace("-0", "-"),
                            ha="center",
                            va="center",
                            fontsize=6,
                        )
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    n_corr = sum(p["metric"] == CORRELATION for p in pairs)
    fig.suptitle(
        f"{n_corr} numeric pairs (Pearson r), {len(pairs) - n_corr} other pairs (Cramér's V)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def dcr_figure(p: dict) -> Figure:
    """Histograms of the distance to the closest real row (metrics["privacy"], which holds
    "dcr_histogram" when a holdout was given)."""
    hist = p["dcr_histogram"]
    edges = np.asarray(hist["edges"])
    fig = Figure(figsize=(10, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    for key, color, name in (
        ("synthetic", SYN_COLOR, "synthetic → train"),
        ("holdout", HOLD_COLOR, "holdout → train"),
    ):
        if key in hist:
            counts = np.asarray(hist[key], dtype=float)
            ax.stairs(counts / max(counts.sum(), 1), edges, color=color, label=name, linewidth=1.8)
    if p.get("holdout_dcr_p5") is not None:
        ax.axvline(
            p["holdout_dcr_p5"], color="#555", linestyle="--", label="holdout 5th percentile"
        )
    ax.set_xlabel("distance to closest train record (scaled units)")
    ax.set_ylabel("share of rows")
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def segment_figure(segs: list[dict]) -> Figure:
    """Fidelity per conditioned segment (metrics["segments"])."""
    labels = [f"{s['column']}={s['value']}"[:28] for s in segs]
    y = np.arange(len(segs))
    fig = Figure(figsize=(12, 0.9 + 0.32 * len(segs)))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ax1.barh(y, [s["fidelity"] or 0 for s in segs], color=REAL_COLOR)
    ax1.set_xlim(0, 1)
    ax1.set_title("fidelity within the segment", fontsize=10)
    ax1.set_yticks(y, labels, fontsize=8)
    ax1.invert_yaxis()
    ax2.barh(y - 0.2, [s["real_share"] for s in segs], 0.4, color=REAL_COLOR, label="real")
    ax2.barh(y + 0.2, [s["synthetic_share"] for s in segs], 0.4, color=SYN_COLOR, label="synthetic")
    targets = [(s["target_share"], i) for i, s in enumerate(segs) if s["target_share"] is not None]
    if targets:
        ax2.scatter(
            [t for t, _ in targets],
            [i for _, i in targets],
            marker="|",
            s=200,
            color="k",
            label="target",
        )
    ax2.set_yticks(y, [""] * len(segs))
    ax2.invert_yaxis()
    ax2.set_title("share of rows", fontsize=10)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


DURATION_TICKS = ((1, "1 s"), (60, "1 min"), (3_600, "1 h"), (86_400, "1 d"), (2_592_000, "30 d"))


def sequence_figure(h: dict, runs: dict | None) -> Figure:
    """Per-user sequence distributions (metrics["sequences"]["histograms"] and its runs
    histogram)."""
    panels = [
        ("events per user", h["events_per_user"], True),
        ("time between a user's events", h["log10_inter_event_seconds"], False),
        ("events per session", h["session_lengths"], True),
        ("item popularity by rank", h["item_rank"], None),
        ("longest run shared with a training user", runs, False),
        ("category entropy per user (bits)", h.get("category_entropy"), False),
    ]
    panels = [panel for panel in panels if panel[1]]
    fig = Figure(figsize=(15, 3.4 * -(-len(panels) // 3)))
    for i, (title, data, log_x) in enumerate(panels):
        ax = fig.add_subplot(-(-len(panels) // 3), 3, i + 1)
        if log_x is None:  # rank curves
            for key, color in (("real", REAL_COLOR), ("synthetic", SYN_COLOR)):
                ax.loglog(data[key]["rank"], data[key]["share"], color=color, label=key)
            ax.set_xlabel("rank", fontsize=8)
        else:
            edges = np.asarray(data["edges"])
            for key, color in (
                ("real", REAL_COLOR),
                ("synthetic", SYN_COLOR),
                ("holdout", HOLD_COLOR),
            ):
                if key in data:
                    counts = np.asarray(data[key], dtype=float)
                    ax.stairs(
                        counts / max(counts.sum(), 1),
                        edges,
                        color=color,
                        label=key,
                        fill=key == "real",
                        alpha=0.35 if key == "real" else 1.0,
                        linewidth=1.6,
                    )
            if log_x:
                ax.set_xscale("log")
        if title.startswith("time"):
            ticks = [
                (np.log10(1 + s), name)
                for s, name in DURATION_TICKS
                if np.log10(1 + s) <= edges[-1]
            ]
            ax.set_xticks([t for t, _ in ticks], [name for _, name in ticks])
        ax.set_ylabel("share", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- refresh loop


def render_refresh_page(refreshes: list[dict]) -> str:
    """The refresh loop over time: per refresh the partition's drift, the fresh synthetic
    set's fidelity and privacy verdict, candidate and production NDCG@10 and the decision."""
    rows = [
        [
            html.escape(r["id"]),
            _fmt(r["rows"]),
            _fmt(max((d["distance"] for d in r["drift"].values()), default=None)),
            _fmt(r["fidelity"]),
            _badge(r["privacy_passed"]),
            _fmt(r["candidate_ndcg@10"], 4),
            _fmt(r["production_ndcg@10"], 4),
            f"v{r['version']}" + (" (promoted)" if r["promoted"] else ""),
            html.escape(r["reason"]),
        ]
        for r in refreshes
    ]
    header = [
        "Refresh",
        "Rows",
        "Max drift",
        "Fidelity",
        "Privacy",
        "Candidate NDCG@10",
        "Production NDCG@10",
        "Version",
        "Decision",
    ]
    body = _table(header, rows) + (_refresh_figure(refreshes) if refreshes else "")
    drift = [
        [html.escape(r["id"]), html.escape(col), d["metric"], _fmt(d["distance"])]
        for r in refreshes
        for col, d in sorted(r["drift"].items())
    ]
    drift_html = (
        _table(["Refresh", "Column", "Metric", "Distance"], drift, numeric_from=3)
        if drift
        else '<p class="note">no drift yet: the first refresh has no previous period</p>'
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Refresh loop</title>
<style>{CSS}</style></head><body>
<h1>Refresh loop</h1>
<h2>Refreshes over time</h2>
{body}
<h2>Drift of the real data against the previous period</h2>
<p class="note">1 - KS complement (continuous) or 1 - TV complement (discrete) per column;
0 = the same distribution as the previous partition.</p>
{drift_html}
</body></html>
"""


def _refresh_figure(refreshes: list[dict]) -> str:
    steps = np.arange(1, len(refreshes) + 1)
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    for key, label, color in (
        ("candidate_ndcg@10", "candidate", SYN_COLOR),
        ("production_ndcg@10", "production", REAL_COLOR),
    ):
        values = [r[key] if r[key] is not None else np.nan for r in refreshes]
        left.plot(steps, values, marker="o", label=label, color=color)
    left.set(title="F's NDCG@10 on the newest slice", xlabel="refresh")
    left.legend()
    drift = [max((d["distance"] for d in r["drift"].values()), default=np.nan) for r in refreshes]
    right.plot(steps, drift, marker="o", color=HOLD_COLOR, label="max column drift")
    right.plot(
        steps,
        [r["fidelity"] for r in refreshes],
        marker="s",
        color=SYN_COLOR,
        label="synthetic fidelity",
    )
    right.set(title="Data", xlabel="refresh")
    right.legend()
    return _png(fig, "NDCG@10, drift and fidelity per refresh")
