"""Scale curve (issue 21): the simulator's log at growing events x catalog sizes.

    PYTHONPATH=platform .venv/bin/python bench/scale.py [--max-gib 11] [--point-timeout-s 900]
        [--events 100000,1000000,10000000] [--items 10000,100000,1000000] [--skip-sequences]
        [--seq-items 10000,1000000] [--seq-max-events 1000000] [--seq-budget-s 60] [--resume]

Each point runs in its own process under a resident-memory watchdog (a thread reading the
process's RSS every 50 ms; above `--max-gib` the point stops and is reported "over memory"
instead of swapping) and a wall-clock timeout. Per point:

- row GAN: encoder fit seconds (Encoder.fit, all rows), encoding seconds (compact rows),
  training events/s (8 steps at the default batch after one warm-up step, one torch thread),
  sampling events/s (20,000 rows after a warm-up, calibration rounds off: they change
  weights, not the decoding cost), peak RSS of the whole point (simulator table included);
- sequence generator: fit wall seconds within a `--seq-budget-s` budget, peak RSS, training
  events/s of its maximum-likelihood epochs, sampling events/s (20,000 events);
- top-k: two sets of item vectors (d=64) at each catalog size: clustered (1,000 centres) and
  unclustered (Gaussian), one request at a time (the search itself, no HTTP, one thread):
  p50 ms of the exact float32 scan, the int8 two-stage search and the ivf (its lists read
  as calibrated, even where it would fall back to the exact scan), recall@10 of int8 and ivf
  against the exact scan, the ivf's build seconds (k-means, lists, calibration), its lists,
  calibrated nprobe and share of the catalog read, and the kind `auto` picks.

Results: bench/results/scale.{json,md} and scale.png (log-log curves); the fitted slopes of
log(time or memory) against log(events) are in the markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
TRAIN_STEPS, SAMPLE_ROWS, TOPK_QUERIES = 8, 20_000, 40
TOPK_KEYS = (  # per vector set; the unclustered set's keys carry a `random_` prefix
    "exact_p50_ms",
    "int8_p50_ms",
    "int8_recall_at_10",
    "ivf_p50_ms",
    "ivf_recall_at_10",
    "ivf_lists",
    "ivf_nprobe",
    "ivf_scan_fraction",
    "ivf_build_s",
    "auto_kind",
)
TOPK_CURVES = (  # (label, key) of the top-k p50 curves: slopes and plot
    ("exact", "exact_p50_ms"),
    ("int8", "int8_p50_ms"),
    ("ivf clustered", "ivf_p50_ms"),
    ("ivf unclustered", "random_ivf_p50_ms"),
)


# ------------------------------------------------------------------------- child process


def watchdog(max_gib: float) -> dict:
    """Start the RSS watchdog thread; the returned dict holds the peak seen (GiB)."""
    import psutil

    proc, state = psutil.Process(), {"peak_gib": 0.0}

    def watch() -> None:
        while True:
            gib = proc.memory_info().rss / 2**30
            state["peak_gib"] = max(state["peak_gib"], gib)
            if gib > max_gib:
                print(json.dumps({"status": f"over memory: {gib:.2f} GiB > {max_gib} GiB"}))
                sys.stdout.flush()
                os._exit(3)
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()
    return state


def simulated(events: int, items: int):
    from synthrec.config import SimulateConfig
    from synthrec.data.simulator import simulate, simulated_schema

    cfg = SimulateConfig(rows=events, num_items=items, num_users=max(1_000, events // 20), seed=0)
    return simulate(cfg), simulated_schema()


def row_gan_point(events: int, items: int) -> dict:
    import pyarrow.compute as pc

    from synthrec.config import GanConfig
    from synthrec.encoding import Encoder
    from synthrec.gan import Synthesizer
    from synthrec.gan.train import build_gan, build_sampler, train_epoch

    table, schema = simulated(events, items)
    out = {"distinct_items": pc.count_distinct(table["item_id"]).as_py()}
    cfg = GanConfig(id_calibration_rounds=0)
    t = time.perf_counter()
    encoder = Encoder.fit(table, schema, cfg.encoder, seed=cfg.seed)
    out["encoder_fit_s"] = time.perf_counter() - t
    t = time.perf_counter()
    rows = encoder.transform_compact(table, seed=cfg.seed)
    out["encode_s"] = time.perf_counter() - t
    out["width"] = encoder.output_dim
    del table
    state = build_gan(encoder, cfg, "cpu")
    sampler = build_sampler(state, encoder, rows)
    del rows
    train_epoch(state, sampler.shard, sampler, cfg.batch_size, seed=0, max_steps=1)
    t = time.perf_counter()
    train_epoch(state, sampler.shard, sampler, cfg.batch_size, seed=1, max_steps=TRAIN_STEPS)
    out["train_events_s"] = TRAIN_STEPS * cfg.batch_size / (time.perf_counter() - t)
    del sampler
    synth = Synthesizer.from_parts(encoder, cfg, state.generator.state_dict())
    synth.sample(2_000, seed=0)
    t = time.perf_counter()
    synth.sample(SAMPLE_ROWS, seed=1)
    out["sample_events_s"] = SAMPLE_ROWS / (time.perf_counter() - t)
    return out


def sequence_point(events: int, items: int, budget_s: float) -> dict:
    from synthrec.sequences import SequenceSynthesizer

    table, schema = simulated(events, items)
    t = time.perf_counter()
    seq = SequenceSynthesizer().fit(table, schema=schema, time_budget_s=budget_s)
    out = {"fit_s": time.perf_counter() - t}
    metrics = seq.metadata.get("metrics", {})
    rate = metrics.get("events_per_s") or metrics.get("train_events_per_s")
    if rate is not None:
        out["train_events_s"] = float(rate)
    seq.sample(events=2_000, seed=0)
    t = time.perf_counter()
    seq.sample(events=SAMPLE_ROWS, seed=1)
    out["sample_events_s"] = SAMPLE_ROWS / (time.perf_counter() - t)
    return out


def topk_point(items: int) -> dict:
    """The clustered set's figures under plain keys, the unclustered set's under `random_`."""
    import torch

    gen = torch.Generator().manual_seed(0)
    d = 64
    centres = torch.randn(1_000, d, generator=gen)
    clustered = centres[torch.randint(0, 1_000, (items,), generator=gen)]
    clustered += 0.5 * torch.randn(items, d, generator=gen)
    out = topk_figures(clustered, gen)
    out |= {
        f"random_{k}": v for k, v in topk_figures(torch.randn(items, d, generator=gen), gen).items()
    }
    return out


def topk_figures(vectors, gen) -> dict:
    import torch

    from synthrec.recommender import topk
    from synthrec.recommender.topk import ExactTopK, Int8TopK, IvfTopK

    items, d = vectors.shape
    states = vectors[torch.randint(0, items, (TOPK_QUERIES,), generator=gen)]
    states = states + torch.randn(TOPK_QUERIES, d, generator=gen)
    t = time.perf_counter()
    ivf = IvfTopK(vectors, max_scan_fraction=1.0)  # the lists answer: their cost is measured
    out: dict = {"ivf_build_s": time.perf_counter() - t, "ivf_lists": ivf.num_lists}
    out |= {"ivf_nprobe": ivf.calibrated_nprobe, "ivf_scan_fraction": ivf.scan_fraction}
    out["ivf_sample_recall"] = ivf.sample_recall
    found = {}
    for name, search in (("exact", ExactTopK(vectors)), ("int8", Int8TopK(vectors)), ("ivf", ivf)):
        search.search(states[:1], 10)  # warm-up
        ms, idx = [], []
        for i in range(TOPK_QUERIES):
            t = time.perf_counter()
            _, top = search.search(states[i : i + 1], 10)
            ms.append((time.perf_counter() - t) * 1e3)
            idx.append(top[0].numpy())
        out[f"{name}_p50_ms"] = float(np.median(ms))
        found[name] = idx
    for name in ("int8", "ivf"):
        hits = [len(np.intersect1d(a, b)) for a, b in zip(found["exact"], found[name])]
        out[f"{name}_recall_at_10"] = sum(hits) / (10 * len(hits))
    # what build_top_k(kind="auto") would choose for these vectors (topk.py's rule)
    if items < topk.AUTO_IVF_ITEMS:
        out["auto_kind"] = "exact"
    elif ivf.scan_fraction <= topk.IVF_MAX_SCAN_FRACTION:
        out["auto_kind"] = "ivf"
    else:
        out["auto_kind"] = "int8" if items >= topk.AUTO_INT8_ITEMS else "exact"
    return out


def run_child(args: argparse.Namespace) -> None:
    import torch

    state = watchdog(args.max_gib)
    torch.set_num_threads(1)  # per-core rates; on 2 shared cores a second thread stalls
    start = time.perf_counter()
    if args.point == "row_gan":
        out = row_gan_point(args.n_events, args.n_items)
    elif args.point == "sequence":
        out = sequence_point(args.n_events, args.n_items, args.seq_budget_s)
    else:
        out = topk_point(args.n_items)
    out |= {"status": "ok", "peak_gib": state["peak_gib"], "wall_s": time.perf_counter() - start}
    print(json.dumps(out))


# ------------------------------------------------------------------------ driver


def run_point(kind: str, events: int, items: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--point", kind, "--n-events", str(events)]
    cmd += ["--n-items", str(items), "--max-gib", str(args.max_gib)]
    cmd += ["--seq-budget-s", str(args.seq_budget_s)]
    head = {"kind": kind, "events": events, "items": items}
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=args.point_timeout_s, env=os.environ
        )
    except subprocess.TimeoutExpired:
        return head | {"status": f"timed out after {args.point_timeout_s} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return head | {"status": f"failed (exit {proc.returncode}): {proc.stderr[-300:]}"}
    return head | json.loads(lines[-1])


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Fitted exponent b of y ~ x^b (log-log least squares), None under two points."""
    pts = [(x, y) for x, y in zip(xs, ys) if y and y > 0]
    if len(pts) < 2:
        return None
    x, y = np.log10([p[0] for p in pts]), np.log10([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def fmt(v, digits: int = 1) -> str:
    if v is None:
        return "–"
    return f"{v:,.{digits}f}" if isinstance(v, float) else f"{v:,}"


def markdown(points: list[dict], meta: dict) -> str:
    lines = [
        f"Run on {meta['commit']} ({meta['date']}), {meta['cores']} cores shared, "
        f"memory limit {meta['max_gib']} GiB per point, one torch thread per point, "
        f"load average at the start {meta['load']}.",
        "",
        "| generator | events | items (distinct) | encoder fit s | encode s | peak GiB "
        "| train events/s | sample events/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        if p["kind"] == "topk":
            continue
        if p["status"] != "ok":
            lines.append(
                f"| {p['kind']} | {p['events']:,} | {p['items']:,} | {p['status']} | | | | |"
            )
            continue
        items = f"{p['items']:,}" + (f" ({p['distinct_items']:,})" if "distinct_items" in p else "")
        fit = p.get("encoder_fit_s", p.get("fit_s"))
        lines.append(
            f"| {p['kind']} | {p['events']:,} | {items} | {fmt(fit)} | {fmt(p.get('encode_s'))} "
            f"| {fmt(p['peak_gib'], 2)} | {fmt(p.get('train_events_s'), 0)} "
            f"| {fmt(p.get('sample_events_s'), 0)} |"
        )
    lines += [
        "",
        "| items | vectors | exact p50 ms | int8 p50 ms | int8 recall@10 | ivf p50 ms "
        "| ivf recall@10 | ivf lists, nprobe (read) | ivf build s | auto |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in points:
        if p["kind"] != "topk":
            continue
        if p["status"] != "ok":
            lines.append(f"| {p['items']:,} | {p['status']} | | | | | | | | |")
            continue
        for label, pre in (("clustered", ""), ("unclustered", "random_")):
            if f"{pre}exact_p50_ms" not in p:
                continue  # a point from before the ivf and the unclustered set
            g = {k: p.get(pre + k) for k in TOPK_KEYS}
            ivf = (
                f"{g['ivf_lists']:,}, {g['ivf_nprobe']:,} ({100 * g['ivf_scan_fraction']:.1f}%)"
                if g["ivf_lists"] is not None
                else "–"
            )
            lines.append(
                f"| {p['items']:,} | {label} | {fmt(g['exact_p50_ms'], 2)} "
                f"| {fmt(g['int8_p50_ms'], 2)} | {fmt(g['int8_recall_at_10'], 3)} "
                f"| {fmt(g['ivf_p50_ms'], 2)} | {fmt(g['ivf_recall_at_10'], 3)} | {ivf} "
                f"| {fmt(g['ivf_build_s'])} | {g['auto_kind'] or '–'} |"
            )
    lines += ["", "Fitted log-log slopes (y ~ x^b):", ""]
    for name, b in meta["slopes"].items():
        lines.append(f"- {name}: b = {fmt(b, 2) if b is not None else '–'}")
    return "\n".join(lines) + "\n"


def slopes(points: list[dict]) -> dict:
    ok = [p for p in points if p["status"] == "ok"]
    out = {}
    for kind in ("row_gan", "sequence"):
        for items in sorted({p["items"] for p in ok if p["kind"] == kind}):
            pts = sorted(
                (p for p in ok if p["kind"] == kind and p["items"] == items),
                key=lambda p: p["events"],
            )
            ev = [p["events"] for p in pts]
            fit_key = "encoder_fit_s" if kind == "row_gan" else "fit_s"
            out[f"{kind} {fit_key} vs events at {items:,} items"] = slope(
                ev, [p.get(fit_key) for p in pts]
            )
            out[f"{kind} peak GiB vs events at {items:,} items"] = slope(
                ev, [p["peak_gib"] for p in pts]
            )
    for kind in ("row_gan",):
        for events in sorted({p["events"] for p in ok if p["kind"] == kind}):
            pts = sorted(
                (p for p in ok if p["kind"] == kind and p["events"] == events),
                key=lambda p: p["items"],
            )
            out[f"{kind} sample events/s vs items at {events:,} events"] = slope(
                [p["items"] for p in pts], [p.get("sample_events_s") for p in pts]
            )
    tk = sorted((p for p in ok if p["kind"] == "topk"), key=lambda p: p["items"])
    for label, key in TOPK_CURVES:
        out[f"top-k {label} p50 vs items"] = slope(
            [p["items"] for p in tk], [p.get(key) for p in tk]
        )
    return out


def plot(points: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ok = [p for p in points if p["status"] == "ok"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    panels = [
        (axes[0, 0], "encoder_fit_s", "row GAN encoder fit (s)"),
        (axes[0, 1], "peak_gib", "row GAN peak RSS (GiB)"),
        (axes[1, 0], "sample_events_s", "row GAN sampling (events/s)"),
    ]
    for ax, key, title in panels:
        for items in sorted({p["items"] for p in ok if p["kind"] == "row_gan"}):
            pts = sorted(
                (p for p in ok if p["kind"] == "row_gan" and p["items"] == items),
                key=lambda p: p["events"],
            )
            ax.loglog(
                [p["events"] for p in pts], [p[key] for p in pts], "o-", label=f"{items:,} items"
            )
        ax.set_xlabel("events")
        ax.set_title(title)
        ax.legend(fontsize=8)
    ax = axes[1, 1]
    tk = sorted((p for p in ok if p["kind"] == "topk"), key=lambda p: p["items"])
    for label, key in TOPK_CURVES:
        pts = [p for p in tk if p.get(key)]
        ax.loglog([p["items"] for p in pts], [p[key] for p in pts], "o-", label=label)
    ax.set_xlabel("catalog items")
    ax.set_title("top-k p50 (ms), one request")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def grid(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    events = [int(x) for x in args.events.split(",")]
    items = [int(x) for x in args.items.split(",")]
    out = [("topk", 0, i) for i in items]
    out += [("row_gan", e, i) for e in events for i in items]
    if not args.skip_sequences:
        seq_items = [int(x) for x in args.seq_items.split(",")]
        out += [("sequence", e, i) for e in events if e <= args.seq_max_events for i in seq_items]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--point", choices=["row_gan", "sequence", "topk"])
    parser.add_argument("--n-events", type=int, default=0)
    parser.add_argument("--n-items", type=int, default=0)
    parser.add_argument("--events", default="100000,1000000,10000000")
    parser.add_argument("--items", default="10000,100000,1000000")
    parser.add_argument("--max-gib", type=float, default=11.0)
    parser.add_argument("--point-timeout-s", type=float, default=900)
    parser.add_argument("--seq-budget-s", type=float, default=60)
    parser.add_argument("--seq-max-events", type=int, default=1_000_000)
    parser.add_argument("--seq-items", default="10000,1000000")
    parser.add_argument("--skip-sequences", action="store_true")
    parser.add_argument(
        "--resume", action="store_true", help="keep the points a killed run already finished"
    )
    args = parser.parse_args()
    if args.point:
        run_child(args)
        return
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    RESULTS.mkdir(parents=True, exist_ok=True)
    partial = RESULTS / "scale.points.jsonl"  # one line per finished point: a killed run resumes
    done = {}
    if args.resume and partial.exists():
        for line in partial.read_text().splitlines():
            p = json.loads(line)
            done[(p["kind"], p["events"], p["items"])] = p
    elif partial.exists():
        partial.unlink()
    points = []
    for key in grid(args):
        t = time.monotonic()
        if key in done:
            points.append(done[key])
            continue
        points.append(run_point(*key, args))
        with partial.open("a") as f:
            f.write(json.dumps(points[-1]) + "\n")
        print(
            f"{key[0]} {key[1]:,} x {key[2]:,}: {points[-1]['status']} "
            f"({time.monotonic() - t:.0f} s)",
            flush=True,
        )
    meta = {
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cores": os.cpu_count(),
        "max_gib": args.max_gib,
        "load": load,
        "slopes": slopes(points),
    }
    (RESULTS / "scale.json").write_text(json.dumps({"meta": meta, "points": points}, indent=2))
    text = markdown(points, meta)
    (RESULTS / "scale.md").write_text(text)
    meta["plot"] = plot(points, RESULTS / "scale.png")
    print(text)
    print("plot:", RESULTS / "scale.png" if meta["plot"] else "matplotlib not importable")


if __name__ == "__main__":
    main()
