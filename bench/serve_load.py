"""Load test of the Serve application against the same handlers on plain uvicorn + FastAPI.

    .venv/bin/python bench/serve_load.py [--generator URI] [--recommender URI] [--seconds 8]

Loopback only (127.0.0.1), bounded in time and requests per measurement. Four servers run
side by side on the same model directories: plain uvicorn + FastAPI without Ray ("plain"),
the same with the Serve deployment's batching policy ("plain+batch"), and `synthrec serve`
(Ray Serve, each in its own local Ray) with its default HAProxy ingress ("serve") and with
Serve's Python proxy ("serve-proxy"). For POST /v1/recommendations (k=10), POST /v1/rank
(100 candidates) and POST /v1/synthetic (1,000 rows) at 1 and 16 concurrent keep-alive
clients it records p50/p99
latency, requests/s and errors (non-200 answers or broken connections), in interleaved rounds
that rotate the server order (so load from other processes on a shared machine hits all
servers alike), then prints a table with Serve's throughput as a share of each plain server's.

Without --recommender it builds a recommender directory over a 100,000-item catalog with a
click head (see `build_recommender_model`); without --generator it fits the default generator
architecture on 3,000 rows of ML-100K (one epoch). All servers load the same directories. The load
client is a minimal asyncio HTTP/1.1 client, so it takes little of the CPU the servers need.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
ML100K = REPO.parent / "shared" / "datasets" / "ml-100k" / "events.parquet"
RANK_CANDIDATES = 100  # items per /v1/rank request


# ---------------------------------------------------------------------------- load client


@dataclass
class Result:
    server: str
    endpoint: str
    clients: int
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    rps: float


async def _client(
    port: int,
    payloads: list[bytes],
    offset: int,
    stop_at: float,
    budget: list[int],
    latencies: list[float],
    errors: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    i = offset
    try:
        while budget[0] > 0 and time.perf_counter() < stop_at:
            budget[0] -= 1
            request = payloads[i % len(payloads)]
            i += 1
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if head[9:12] != b"200":
                errors.append(int(head[9:12]))
    except (ConnectionError, asyncio.IncompleteReadError) as err:
        errors.append(-1)
        print(f"  connection error: {err!r}", file=sys.stderr)
    finally:
        writer.close()


def http_post(path: str, body: dict, port: int) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data


def run_load(
    port: int, payloads: list[bytes], clients: int, seconds: float, max_requests: int
) -> tuple:
    """(latencies s, errors, elapsed s) of `clients` keep-alive connections sending in a loop."""
    latencies: list[float] = []
    errors: list[int] = []
    budget = [max_requests]

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(
            *[
                _client(port, payloads, c * 7, start + seconds, budget, latencies, errors)
                for c in range(clients)
            ]
        )
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    return latencies, errors, elapsed


# ---------------------------------------------------------------------------- models


def build_generator_model(out: Path) -> str:
    """The default GanConfig architecture fitted for one epoch on 3,000 ML-100K rows: serving cost
    depends on the network and encoder sizes, not on how long it trained."""
    import pyarrow.parquet as pq

    from synthrec.artifacts import save_synthesizer
    from synthrec.config import GanConfig
    from synthrec.gan.synthesizer import Synthesizer

    table = pq.read_table(ML100K).slice(0, 3000)
    cfg = GanConfig(seed=0)
    synth = Synthesizer().fit(table, cfg=cfg, epochs=1)
    save_synthesizer(synth, str(out))
    return str(out)


def build_recommender_model(
    out: Path, num_items: int, num_users: int = 10_000, rows: int = 300_000
) -> str:
    """A recommender directory over exactly `num_items` items, saved by the recommender package.

    The interactions are random (seeded), every item appears at least once, and the weights
    stay at their initialization: serving cost depends on the catalog and model sizes
    (default RecommenderConfig: dim 64, 2 layers, 50 positions), not on training. A random
    0/1 click column gives it a click head, so it also serves /v1/rank.
    """
    import pyarrow as pa

    from synthrec.config import RecommenderConfig
    from synthrec.recommender.artifacts import build_recommender, save_recommender
    from synthrec.recommender.data import InteractionEncoder
    from synthrec.recommender.train import build_model

    rng = np.random.default_rng(0)
    items = np.concatenate(
        [rng.permutation(num_items), rng.integers(0, num_items, rows - num_items)]
    )
    table = pa.table(
        {
            "user_id": pa.array(rng.integers(0, num_users, rows).astype(str)),
            "item_id": pa.array(items.astype(str)),
            "category": pa.array((items % 40).astype(str)),  # an item attribute, constant per item
            "timestamp": pa.array(np.sort(rng.integers(1_700_000_000, 1_702_000_000, rows))),
            "click": pa.array((rng.random(rows) < 0.1).astype(np.int64)),
        }
    )
    cfg = RecommenderConfig(item_features=["category"], user_features=[])
    encoder = InteractionEncoder.fit(table, cfg)
    known = encoder.encode(table)
    popularity = np.bincount(known.items, minlength=encoder.num_items + 1)
    model = build_model(encoder, cfg, num_labels=len(encoder.columns.labels))
    rec = build_recommender(model, encoder, cfg, known, popularity, {"note": "benchmark model"})
    save_recommender(rec, str(out))
    return str(out)


# ---------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_ready(
    port: int,
    timeout_s: float = 120,
    proc: subprocess.Popen | None = None,
    path: str = "/healthz",
    models: tuple[str, ...] = (),
) -> None:
    """Until GET `path` answers 200 and (from /v1/models) each of `models` is loaded."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"the server exited with code {proc.returncode} (its error is above)"
            )
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=5) as res:
                body = json.loads(res.read())
                if res.status == 200 and all(body[m]["loaded"] for m in models):
                    return
                time.sleep(0.5)
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"no server on {HOST}:{port} after {timeout_s} s")


def serve_plain(cfg_json: str, port: int, batch: bool) -> None:
    """Child process: the same FastAPI app, models in-process, one uvicorn worker."""
    import uvicorn

    from synthrec.config import ServeConfig, validate_config
    from synthrec.serving.backends import build_local_api

    app = build_local_api(validate_config(ServeConfig, json.loads(cfg_json)), batch=batch)
    uvicorn.run(app, host=HOST, port=port, log_level="warning", access_log=False)


def workloads(
    port: int, users: list[str], endpoints: list[str], item_ids: list[str]
) -> dict[str, list[bytes]]:
    """Requests per endpoint: k=10 for 2,048 known users in turn; 100 candidates (a seeded
    draw from the catalog) for each of those users; 1,000 rows, 16 seeds in turn."""
    loads = {}
    if "recommendations" in endpoints:
        loads["/v1/recommendations"] = [
            http_post("/v1/recommendations", {"user_id": u, "k": 10}, port) for u in users
        ]
    if "rank" in endpoints:
        rng = np.random.default_rng(0)
        loads["/v1/rank"] = [
            http_post(
                "/v1/rank",
                {"user_id": u, "items": rng.choice(item_ids, RANK_CANDIDATES, False).tolist()},
                port,
            )
            for u in users
        ]
    if "synthetic" in endpoints:
        loads["/v1/synthetic"] = [
            http_post("/v1/synthetic", {"rows": 1000, "seed": s}, port) for s in range(16)
        ]
    return loads


def start_plain(cfg, batch: bool) -> tuple[int, subprocess.Popen]:
    port = free_port()
    # As many math threads as Ray gives a replica (OMP_NUM_THREADS = its whole CPUs, at least 1),
    # so the ratio measures Serve's overhead rather than a threading difference.
    threads = str(max(1, int(max(cfg.generator.num_cpus, cfg.recommender.num_cpus))))
    command = [
        sys.executable,
        __file__,
        "--plain-server",
        cfg.model_dump_json(),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(
        command + (["--plain-batch"] if batch else []),
        env={**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads},
    )
    wait_ready(port, proc=proc)
    return port, proc


def start_serve(cfg, ingress: str, access_log: bool) -> tuple[int, subprocess.Popen]:
    """`synthrec serve` in a child process (its own local Ray), as a user would start it."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "synthrec.cli",
        "serve",
        "--port",
        str(port),
        "--ingress",
        ingress,
    ]
    for flag, uri in (
        ("--generator-uri", cfg.generator_uri),
        ("--recommender-uri", cfg.recommender_uri),
    ):
        command += [flag, uri] if uri else []
    proc = subprocess.Popen(
        command + ([] if access_log else ["--no-access-log"]),
        env={**os.environ, "SYNTHREC_API_KEY": ""},
    )
    models = tuple(
        m
        for m, uri in (("generator", cfg.generator_uri), ("recommender", cfg.recommender_uri))
        if uri
    )
    wait_ready(port, timeout_s=300, proc=proc, path="/v1/models", models=models)
    return port, proc


def bench_interleaved(
    ports: dict[str, int], loads: dict[str, dict[str, list[bytes]]], args
) -> list[Result]:
    """All servers stay up; each round measures every (endpoint, clients, server) for a slice of the
    time budget, rotating the server order, so load from other processes hits all servers alike."""
    acc: dict[tuple, list] = {}
    names = list(ports)
    for rnd in range(args.rounds):
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for endpoint in next(iter(loads.values())):
            for clients in args.clients:
                for name in order:
                    payloads = loads[name][endpoint]
                    run_load(
                        ports[name], payloads, clients, 0.5, max(clients * 3, 10)
                    )  # warm connections
                    lat, errors, elapsed = run_load(
                        ports[name],
                        payloads,
                        clients,
                        args.seconds / args.rounds,
                        max(args.max_requests // args.rounds, clients),
                    )
                    entry = acc.setdefault((name, endpoint, clients), [[], 0, 0.0])
                    entry[0] += lat
                    entry[1] += len(errors)
                    entry[2] += elapsed
        print(f"  round {rnd + 1}/{args.rounds} done", flush=True)
    results = []
    for (name, endpoint, clients), (lat, errors, elapsed) in sorted(
        acc.items(), key=lambda kv: (kv[0][1], kv[0][2], names.index(kv[0][0]))
    ):
        ms = np.asarray(lat) * 1e3 if lat else np.asarray([np.nan])
        results.append(
            Result(
                name,
                endpoint,
                clients,
                len(lat),
                errors,
                float(np.percentile(ms, 50)),
                float(np.percentile(ms, 99)),
                len(lat) / elapsed,
            )
        )
    return results


def print_table(results: list[Result]) -> None:
    """Markdown table; Serve's requests/s as a share of each plain server's at the same load."""
    base = {(r.server, r.endpoint, r.clients): r for r in results if r.server.startswith("plain")}
    print(
        "\n| endpoint | clients | server | p50 ms | p99 ms | req/s | errors | serve req/s vs plain "
        "| vs plain+batch |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ratios = []
        for name in ("plain", "plain+batch"):
            b = base.get((name, r.endpoint, r.clients))
            ratios.append(
                f"{r.rps / b.rps:.0%}" if r.server.startswith("serve") and b and b.rps else ""
            )
        print(
            f"| {r.endpoint} | {r.clients} | {r.server} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{r.rps:.1f} "
            f"| {r.errors} | {ratios[0]} | {ratios[1]} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--generator",
        help="generator model directory (default: fit one, see build_generator_model)",
    )
    parser.add_argument(
        "--recommender", help="recommender model directory (default: build a 100k-item one)"
    )
    parser.add_argument(
        "--num-items", type=int, default=100_000, help="catalog size of the built recommender"
    )
    parser.add_argument(
        "--seconds", type=float, default=8.0, help="per measurement, over all rounds (bounded)"
    )
    parser.add_argument(
        "--max-requests", type=int, default=4000, help="per measurement, over all rounds (bounded)"
    )
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds over the servers")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    parser.add_argument(
        "--servers",
        nargs="+",
        default=["plain", "plain+batch", "serve", "serve-proxy"],
        choices=["plain", "plain+batch", "serve", "serve-proxy"],
        help="plain+batch: uvicorn with the Serve deployment's batching policy; serve: "
        "synthrec serve (HAProxy ingress); serve-proxy: synthrec serve --ingress proxy",
    )
    parser.add_argument(
        "--endpoints",
        nargs="+",
        default=["recommendations", "rank", "synthetic"],
        choices=["recommendations", "rank", "synthetic"],
    )
    parser.add_argument(
        "--access-log", action="store_true", help="Serve access logs on (off in both by default)"
    )
    parser.add_argument("--json", help="write the results here as JSON")
    parser.add_argument("--plain-server", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--plain-batch", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_server:
        return serve_plain(args.plain_server, args.port, args.plain_batch)

    from synthrec.config import ServeConfig

    tmp = Path(tempfile.mkdtemp(prefix="synthrec-bench-"))
    print("preparing models ...", flush=True)
    gen = rec = None
    if "synthetic" in args.endpoints:
        gen = args.generator or build_generator_model(tmp / "generator")
    if {"recommendations", "rank"} & set(args.endpoints):
        rec = args.recommender or build_recommender_model(tmp / "recommender", args.num_items)
    users = _known_users(rec) if rec else []
    item_ids = _item_ids(rec) if "rank" in args.endpoints else []
    cfg = ServeConfig(
        generator_uri=gen, recommender_uri=rec, access_log=args.access_log, api_key_env=None
    )
    print(f"machine: {os.cpu_count()} CPUs; generator {gen}; recommender {rec}", flush=True)

    ports: dict[str, int] = {}
    procs: list[subprocess.Popen] = []
    try:
        for name in ("plain", "plain+batch"):
            if name in args.servers:
                port, proc = start_plain(cfg, batch=name == "plain+batch")
                ports[name] = port
                procs.append(proc)
        for name, ingress in (("serve", "haproxy"), ("serve-proxy", "proxy")):
            if name in args.servers:
                port, proc = start_serve(cfg, ingress, args.access_log)
                ports[name] = port
                procs.append(proc)
        loads = {
            name: workloads(port, users, args.endpoints, item_ids) for name, port in ports.items()
        }
        results = bench_interleaved(ports, loads, args)
    finally:
        for proc in procs:
            proc.terminate()  # synthrec serve shuts Serve and its Ray down on SIGTERM
            proc.wait(60)
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in results], indent=1))


def _known_users(uri: str, count: int = 2048) -> list[str]:
    from synthrec.serving.backends import RecommenderBackend

    return RecommenderBackend.sample_users(uri, count)


def _item_ids(uri: str) -> list[str]:
    """The catalog's item ids (candidates for /v1/rank)."""
    from synthrec.recommender.artifacts import load_recommender

    return [str(i) for i in load_recommender(uri).encoder.item_ids.to_pylist()]


if __name__ == "__main__":
    main()
