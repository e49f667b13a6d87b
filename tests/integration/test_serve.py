"""The Serve application over real HTTP on 127.0.0.1: every endpoint, every bad-input class,
auth off and on, and a model roll without a failed request.

One Serve instance for the module (on the session's local Ray); access logs off. The models
are real but tiny: a generator fitted for one epoch on 1,000 ML-100K rows and a recommender
from the recommender package's own save path.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import requests

from synthrec.local_s3 import free_port

pytestmark = pytest.mark.integration

SECRET = "t0p-secret-key-for-tests"
PRIVATE_URI = "s3://private-training-bucket/events"  # in the models' metadata; never served


@pytest.fixture(scope="module")
def models(tmp_path_factory, ml100k_dir) -> dict[str, str]:
    """Generator directories v1 and v2 (same weights, different version label) and a recommender."""
    from synthrec.artifacts import save_synthesizer
    from synthrec.config import GanConfig
    from synthrec.gan.synthesizer import Synthesizer

    root = tmp_path_factory.mktemp("models")
    table = pq.read_table(ml100k_dir / "events.parquet").slice(0, 1000)
    cfg = GanConfig(embedding_dim=8, generator_dims=[16], critic_dims=[16], batch_size=100, pac=10)
    synth = Synthesizer().fit(table, cfg=cfg, epochs=1)
    out = {}
    for version in ("gen-v1", "gen-v2"):
        meta = {"version": version, "data_uri": PRIVATE_URI, "run_name": "gan-run-private"}
        save_synthesizer(synth, str(root / version), metadata=meta)
        out[version] = str(root / version)
    out["rec"] = _fit_recommender(
        pq.read_table(ml100k_dir / "events.parquet").slice(0, 5000), root / "rec"
    )
    return out


def _fit_recommender(table: pa.Table, out: Path) -> str:
    import numpy as np

    from synthrec.config import RecommenderConfig
    from synthrec.recommender.artifacts import build_recommender, save_recommender
    from synthrec.recommender.data import InteractionEncoder
    from synthrec.recommender.train import fit

    cfg = RecommenderConfig(dim=16, num_layers=1, max_len=12, epochs=1, batch_size=256, seed=0)
    encoder = InteractionEncoder.fit(table, cfg)
    known = encoder.encode(table)
    model = fit(encoder, cfg, known).model
    popularity = np.bincount(known.items, minlength=encoder.num_items + 1)
    training = {"real_uri": PRIVATE_URI, "epochs": 1}
    save_recommender(build_recommender(model, encoder, cfg, known, popularity, training), str(out))
    return str(out)


@pytest.fixture(scope="module")
def server(ray_local, models):
    """Gateway, Generator (v1) and Recommender on a free loopback port, auth off."""
    from ray import serve

    from synthrec.config import ServeConfig
    from synthrec.serving.app import ROUTE_PREFIXES, build_apps

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    cfg = ServeConfig(
        generator_uri=models["gen-v1"],
        recommender_uri=models["rec"],
        access_log=False,
        api_key_env=None,
        api_key_required=False,  # loopback test server, auth off (the roll below turns it on)
        limits={"max_rows": 5_000, "max_k": 50},
        generator={"num_cpus": 0.2, "memory_gb": 0.25},
        recommender={"num_cpus": 0.2, "memory_gb": 0.25},
        gateway={"num_cpus": 0.1, "memory_gb": 0.1},
    )
    serve.run_many(
        [
            serve.RunTarget(app, name=name, route_prefix=ROUTE_PREFIXES[name])
            for name, app in build_apps(cfg).items()
        ]
    )
    yield {"url": f"http://127.0.0.1:{port}", "cfg": cfg}
    serve.shutdown()


def post(server, path: str, body=None, raw: bytes | None = None, **kw) -> requests.Response:
    if raw is not None:
        return requests.post(
            server["url"] + path, data=raw, headers={"content-type": "application/json"}, timeout=60
        )
    return requests.post(server["url"] + path, json=body, timeout=60, **kw)


def test_serve_health_models_and_docs(server, models):
    assert requests.get(server["url"] + "/healthz", timeout=10).json() == {"status": "ok"}
    info = requests.get(server["url"] + "/v1/models", timeout=30).json()
    assert info["generator"]["loaded"] and info["generator"]["version"] == "gen-v1"
    assert "genre" in info["generator"]["metadata"]["conditionable_columns"]
    assert info["recommender"]["loaded"] and info["recommender"]["metadata"]["num_items"] > 100
    assert len(info["recommender"]["version"]) == 16
    assert info["recommender"]["metadata"]["training"] == {"epochs": 1}
    text = requests.get(server["url"] + "/v1/models", timeout=30).text
    assert "private" not in text  # no training data URI, no run name
    assert models["gen-v1"] not in text and models["rec"] not in text  # no model URI
    paths = requests.get(server["url"] + "/openapi.json", timeout=10).json()["paths"]
    assert {"/v1/synthetic", "/v1/recommendations", "/v1/models", "/healthz"} <= set(paths)


def test_serve_synthetic_exact_rows_conditions_and_seed(server):
    body = {"rows": 1000, "conditions": {"genre": "Documentary"}, "seed": 7}
    first = post(server, "/v1/synthetic", body)
    assert first.status_code == 200, first.text
    rows = first.json()["rows"]
    assert len(rows) == 1000 and {r["genre"] for r in rows} == {"Documentary"}
    assert first.json()["model_version"] == "gen-v1"
    assert post(server, "/v1/synthetic", body).json()["rows"] == rows  # same seed, same rows
    assert post(server, "/v1/synthetic", {**body, "seed": 8}).json()["rows"] != rows


def test_serve_synthetic_arrow_and_csv(server):
    arrow = post(server, "/v1/synthetic", {"rows": 37, "seed": 1, "format": "arrow"})
    table = pa.ipc.open_stream(arrow.content).read_all()
    assert table.num_rows == 37 and "item_id" in table.column_names
    csv = post(server, "/v1/synthetic", {"rows": 37, "seed": 1, "format": "csv"})
    assert (
        csv.headers["content-type"].startswith("text/csv")
        and csv.headers["x-model-version"] == "gen-v1"
    )
    assert pacsv.read_csv(io.BytesIO(csv.content)).num_rows == 37


def test_serve_recommendations_known_cold_and_seen(server, models):
    from synthrec.serving.backends import RecommenderBackend

    user = RecommenderBackend.sample_users(models["rec"], 1)[0]
    known = post(server, "/v1/recommendations", {"user_id": user, "k": 10})
    assert known.status_code == 200, known.text
    body = known.json()
    scores = [i["score"] for i in body["items"]]
    assert (
        len(scores) == 10 and scores == sorted(scores, reverse=True) and body["cold_start"] is False
    )
    history = [i["item_id"] for i in body["items"][:3]]
    again = post(
        server, "/v1/recommendations", {"user_id": user, "history": history, "k": 10}
    ).json()
    assert not set(history) & {i["item_id"] for i in again["items"]}  # exclude_seen
    cold = post(
        server, "/v1/recommendations", {"user_id": "no-such-user", "history": history, "k": 5}
    ).json()
    assert cold["cold_start"] is True and len(cold["items"]) == 5
    popular = post(server, "/v1/recommendations", {"user_id": "no-such-user", "k": 5}).json()
    assert popular["cold_start"] is True and popular["model_version"] == body["model_version"]


@pytest.mark.parametrize(
    "path, body, raw, status, field",
    [
        ("/v1/recommendations", None, b'{"user_id": "1", "k": }', 400, "body"),  # malformed JSON
        (
            "/v1/recommendations",
            {"user_id": "1", "k": 51},
            None,
            422,
            "k",
        ),  # over the configured limit
        ("/v1/recommendations", {"user_id": 1}, None, 422, "user_id"),  # wrong type
        (
            "/v1/recommendations",
            {"history": ["no-such-item"]},
            None,
            422,
            "history",
        ),  # unknown item
        (
            "/v1/recommendations",
            {"user_id": "1", "query": "x"},
            None,
            422,
            "query",
        ),  # model has no query column
        ("/v1/recommendations", {}, None, 422, "body"),  # nobody to recommend for
        ("/v1/synthetic", None, b'{"rows": 10,', 400, "body"),  # malformed JSON
        (
            "/v1/synthetic",
            {"rows": 10, "conditions": {"colour": "red"}},
            None,
            422,
            "conditions",
        ),  # unknown column
        (
            "/v1/synthetic",
            {"rows": 10, "conditions": {"genre": "Opera"}},
            None,
            422,
            "conditions",
        ),  # unknown value
        ("/v1/synthetic", {"rows": 5_001}, None, 422, "rows"),  # over the configured limit
        ("/v1/synthetic", {"rows": "ten"}, None, 422, "rows"),  # wrong type
        (
            "/v1/synthetic",
            {"rows": 10, "rebalance": {"genre": {"Drama": 0.3}}},
            None,
            422,
            "rebalance",
        ),
        ("/v1/synthetic", {"rows": 10, "seeds": 1}, None, 422, "seeds"),  # unknown key
        ("/v1/synthetic", None, b'{"rows": 10, "conditions": {"rating": NaN}}', 422, None),
        ("/v1/synthetic", None, b'{"rows": 1, "conditions": {"\\ud800": 1}}', 422, None),
        ("/v1/recommendations", None, b'{"user_id": "\\udfff"}', 422, "user_id"),
    ],
)
def test_serve_bad_input_is_4xx_naming_the_field(server, path, body, raw, status, field):
    res = post(server, path, body, raw)
    assert res.status_code == status, res.text
    if field is None:  # a condition field: its name depends on the union member that failed
        assert res.json()["field"].startswith("conditions")
    else:
        assert res.json()["field"] == field


def test_serve_chunked_body_over_the_limit_is_413(server):
    def chunks():
        yield b'{"rows": 1, "seed": 1'
        for _ in range(40):
            yield b" " * 32_768  # 1.25 MiB in all, over the default 1 MiB limit
        yield b"}"

    res = requests.post(
        server["url"] + "/v1/synthetic",
        data=chunks(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert res.status_code == 413 and res.json()["field"] == "body", res.text


def test_serve_replicas_survive_bad_input(server):
    from ray import serve

    before = _replica_ids()
    for _ in range(3):
        post(server, "/v1/synthetic", raw=b"\xff\xfe not json")
        post(server, "/v1/synthetic", {"rows": -1, "conditions": {"genre": 3.5}})
        post(server, "/v1/recommendations", {"history": ["no-such-item"] * 3, "k": 10**9})
        post(server, "/v1/recommendations", raw=b'{"user_id": ["a"]}')
    assert post(server, "/v1/synthetic", {"rows": 5}).status_code == 200
    assert post(server, "/v1/recommendations", {"user_id": "1"}).status_code == 200
    assert _replica_ids() == before and len(before) == 2
    for app in ("synthrec-generator", "synthrec-recommender"):
        assert serve.status().applications[app].status == "RUNNING"


def _replica_ids() -> set[str]:
    import ray

    return {
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if "#Generator#" in a["name"] or "#Recommender#" in a["name"]
    }


@pytest.fixture(scope="module")
def rolled(server, models, tmp_path_factory):
    """Redeploy the generator app with v2 (and an API key file) while 4 clients keep posting."""
    from ray import serve

    from synthrec.serving.app import GENERATOR_APP, ROUTE_PREFIXES, build_generator

    key_file = tmp_path_factory.mktemp("secret") / "api-key"
    key_file.write_text(SECRET + "\n")
    statuses: list[int] = []
    versions: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    res = session.post(
                        server["url"] + "/v1/synthetic",
                        json={"rows": 10, "seed": 1},
                        timeout=60,
                        headers={"authorization": f"Bearer {SECRET}"},
                    )
                    statuses.append(res.status_code)
                    versions.append(res.json().get("model_version", "?") if res.ok else "-")
                except requests.RequestException:
                    statuses.append(-1)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    cfg = server["cfg"].model_copy(
        update={"generator_uri": models["gen-v2"], "api_key_file": str(key_file)}
    )
    serve.run(build_generator(cfg), name=GENERATOR_APP, route_prefix=ROUTE_PREFIXES[GENERATOR_APP])
    rolled_at = len(versions)  # serve.run returns once the roll is done
    deadline = time.monotonic() + 30  # keep posting after the roll: the new model must answer alone
    while time.monotonic() < deadline and len(versions) < rolled_at + 40:
        time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    return {"statuses": statuses, "versions": versions, "rolled_at": rolled_at}


def test_serve_model_roll_has_no_failed_requests(rolled):
    statuses, versions = rolled["statuses"], rolled["versions"]
    assert len(statuses) > 40
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    assert versions[0] == "gen-v1" and versions[-1] == "gen-v2"
    # Old and new replicas overlap during the surge; once the roll is done (plus the 4 requests
    # that may be in flight on the draining replica), only the new model answers.
    tail = versions[rolled["rolled_at"] + 4 :]
    assert len(tail) >= 30 and set(tail) == {"gen-v2"}


def test_serve_api_key_on(rolled, server):
    url = server["url"] + "/v1/synthetic"
    assert requests.post(url, json={"rows": 1}, timeout=30).status_code == 401
    wrong = requests.post(
        url, json={"rows": 1}, headers={"authorization": "Bearer guess"}, timeout=30
    )
    assert wrong.status_code == 401 and "guess" not in wrong.text
    ok = requests.post(
        url, json={"rows": 1}, headers={"authorization": f"Bearer {SECRET}"}, timeout=30
    )
    assert ok.status_code == 200 and ok.json()["model_version"] == "gen-v2"
    assert requests.get(server["url"] + "/healthz", timeout=10).status_code == 200


def test_serve_logs_never_hold_the_key(rolled, ray_local):
    logs = Path(ray_local._private.worker._global_node.get_logs_dir_path())  # this session's logs
    for path in logs.rglob("*"):
        if path.is_file() and path.stat().st_size < 50 << 20:
            assert SECRET.encode() not in path.read_bytes(), path


def test_serve_exports_ray_metrics(server, ray_local):
    """Counts, latency histograms and generated rows reach Ray's Prometheus endpoint."""
    node = ray_local._private.worker._global_node
    url = f"http://{node.node_ip_address}:{node.metrics_export_port}/metrics"
    post(server, "/v1/synthetic", {"rows": 3})
    # with the key: the `rolled` fixture, when it ran before, turned it on for the generator
    key = {"authorization": f"Bearer {SECRET}"}
    body = {"rows": 3, "conditions": {"genre": "Opera"}}
    unknown = post(server, "/v1/synthetic", body, headers=key)
    assert unknown.status_code == 422, unknown.text
    cold = post(server, "/v1/recommendations", {"user_id": "no-such-user", "k": 3}, headers=key)
    assert cold.status_code == 200 and cold.json()["cold_start"] is True, cold.text
    wanted = (
        "ray_synthrec_requests_total{",
        "ray_synthrec_request_latency_ms_bucket{",
        "ray_synthrec_rows_generated_total{",
        # the serving quality inputs: unknown-condition rejections and cold-start answers
        "ray_synthrec_rejected_requests_total{",
        "ray_synthrec_cold_start_answers_total{",
    )
    text, deadline = "", time.monotonic() + 45
    while time.monotonic() < deadline and not all(w in text for w in wanted):
        time.sleep(2)
        text = requests.get(url, timeout=10).text
    assert all(w in text for w in wanted), [w for w in wanted if w not in text]
    assert 'endpoint="/v1/synthetic"' in text and 'status="422"' in text
    rejected = [line for line in text.splitlines() if "synthrec_rejected_requests_total{" in line]
    assert any('field="conditions"' in line for line in rejected), rejected
    colds = [line for line in text.splitlines() if "synthrec_cold_start_answers_total{" in line]
    assert any('endpoint="/v1/recommendations"' in line for line in colds), colds


def _side_app(server, models, name: str, generator: dict, max_rows: int = 5_000):
    """An extra generator application on its own route prefix, auth off, for one test."""
    from ray import serve

    from synthrec.serving.app import build_generator

    cfg = server["cfg"].model_copy(
        update={"generator_uri": models["gen-v1"], "api_key_file": None, "api_key_required": False}
    )
    cfg.generator = {"num_cpus": 0.1, "memory_gb": 0.2, **generator}
    cfg.limits = {**cfg.limits.model_dump(), "max_rows": max_rows}
    serve.run(build_generator(cfg), name=name, route_prefix=f"/{name}")
    return f"{server['url']}/{name}"


def test_serve_backpressure_sampling_off_the_loop_and_a_bounded_queue(server, models):
    """While one large batch samples, the replica still answers (sampling runs off its event
    loop); two requests in progress and one queued per caller, the rest turned away at once
    with 503 and Retry-After."""
    from ray import serve

    url = _side_app(
        server,
        models,
        "bp",
        {"max_ongoing_requests": 2, "max_queued_requests": 1, "retry_after_s": 3},
        max_rows=300_000,
    )
    try:
        big: dict = {}

        def large() -> None:
            start = time.monotonic()
            big["res"] = requests.post(url, json={"rows": 300_000, "seed": 1}, timeout=120)
            big["took"] = time.monotonic() - start

        thread = threading.Thread(target=large)
        thread.start()
        time.sleep(0.5)  # the large request is sampling now
        start = time.monotonic()
        small = requests.post(url, json={"rows": 0}, timeout=60)  # 422 from the replica's loop
        small_took = time.monotonic() - start
        thread.join()
        assert small.status_code == 422 and big["res"].status_code == 200
        assert len(big["res"].json()["rows"]) == 300_000
        # Before: the loop sampled, so the 422 waited for the whole batch.
        assert small_took < big["took"] - 1.0 and small_took < 1.5, (small_took, big["took"])

        answers: list[requests.Response] = []

        def client() -> None:
            answers.append(requests.post(url, json={"rows": 5_000, "seed": 3}, timeout=120))

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(a.status_code for a in answers)
        assert set(codes) == {200, 503} and codes.count(200) >= 2, codes
        for busy in (a for a in answers if a.status_code == 503):
            assert busy.headers["retry-after"] == "3"
        ok = next(a for a in answers if a.ok)
        assert len(ok.json()["rows"]) == 5_000
    finally:
        serve.delete("bp")


def _replica_pids(app: str, deployment: str = "Generator") -> dict[int, str]:
    """pid -> process title of an app's replicas (Ray titles them ServeReplica:app:name)."""
    out = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f"ServeReplica:{app}:{deployment}" in title:
            out[int(proc.name)] = title
    return out


@pytest.mark.slow
def test_serve_replica_sigkilled_under_load_loses_only_requests_in_flight(server, models):
    """Two replicas; SIGKILL one mid-load: the other keeps answering, failures are at most the
    requests in flight at the kill, and Serve starts a replacement replica."""
    from ray import serve

    app = f"fault{uuid.uuid4().hex[:6]}"  # unique: the /proc scan must find only our replicas
    url = _side_app(server, models, app, {"num_replicas": 2})
    pids = _replica_pids(app)
    assert len(pids) == 2, pids
    victim = min(pids)
    lock = threading.Lock()
    in_flight, results, at_kill = [0], [], {}
    stop = threading.Event()

    def client(seed: int) -> None:
        with requests.Session() as session:
            for i in range(150):  # bounded: 2 x 150 requests at most
                if stop.is_set():
                    return
                with lock:
                    in_flight[0] += 1
                try:
                    res = session.post(url, json={"rows": 20, "seed": seed * 1000 + i}, timeout=30)
                    code = res.status_code
                except requests.RequestException:
                    code = -1
                with lock:
                    in_flight[0] -= 1
                    results.append((time.monotonic(), code))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(2)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(results) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        with lock:
            os.kill(victim, signal.SIGKILL)
            at_kill = {"time": time.monotonic(), "in_flight": in_flight[0], "done": len(results)}
        deadline = time.monotonic() + 40
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join()
        before = [c for t0, c in results if t0 < at_kill["time"]]
        after = [c for t0, c in results if t0 >= at_kill["time"]]
        failed = [c for c in after if c != 200]
        assert at_kill["done"] >= 40 and set(before) == {200}, before
        assert len(after) >= 100, len(after)  # the surviving replica carried the load
        assert len(failed) <= at_kill["in_flight"], (failed, at_kill)
        # Serve notices the dead replica and starts a new one: two replicas again, new pid.
        deadline, status = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            status = serve.status().applications[app].deployments["Generator"]
            alive = _replica_pids(app)
            if status.replica_states.get("RUNNING") == 2 and len(alive) == 2:
                break
            time.sleep(1)
        assert status.replica_states.get("RUNNING") == 2, status.replica_states
        assert victim not in alive and len(alive) == 2
        assert requests.post(url, json={"rows": 5}, timeout=30).status_code == 200
    finally:
        stop.set()
        serve.delete(app)


@pytest.mark.slow
def test_serve_cli_haproxy_ingress_with_env_key(models, tmp_path):
    """`synthrec serve` as users start it: its own local Ray, the default HAProxy ingress, the API
    key from SYNTHREC_API_KEY, a clean exit on SIGTERM, and the key in none of its output."""
    port, key = free_port(), "env-key-for-the-cli-test"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"SYNTHREC_API_KEY": key}
    log = tmp_path / "serve.log"
    # S3 credentials set only in the config: the replicas get them through the environment of
    # the Ray this command starts, never through pickled args or a (logged) runtime_env.
    s3_secret = "cli-test-s3-secret-8d2f41"
    config = tmp_path / "serve.yaml"
    config.write_text(f"storage: {{access_key_id: AKIDCLITEST, secret_access_key: {s3_secret}}}\n")
    started = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "synthrec.cli",
                "serve",
                "--generator-uri",
                models["gen-v1"],
                "--recommender-uri",
                models["rec"],
                "--port",
                str(port),
                "--no-access-log",
                "--config",
                str(config),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url, auth = f"http://127.0.0.1:{port}", {"authorization": f"Bearer {key}"}
    try:
        deadline, loaded = time.monotonic() + 150, {}
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                loaded = requests.get(url + "/v1/models", headers=auth, timeout=5).json()
                if all(m["loaded"] for m in loaded.values()) and "press Ctrl-C" in log.read_text():
                    break
            except (requests.RequestException, ValueError):
                pass
            time.sleep(1)
        assert proc.poll() is None and all(m["loaded"] for m in loaded.values()), log.read_text()[
            -2000:
        ]
        assert requests.get(url + "/v1/models", timeout=10).status_code == 401
        rec = requests.post(
            url + "/v1/recommendations",
            json={"user_id": "nobody", "k": 3},
            headers=auth,
            timeout=30,
        )
        assert rec.status_code == 200 and rec.json()["cold_start"] is True
        bad = requests.post(
            url + "/v1/synthetic",
            data=b'{"rows": 1,',
            timeout=30,
            headers={**auth, "content-type": "application/json"},
        )
        assert bad.status_code == 400
        assert "ingress: haproxy" in log.read_text()
        environs = [
            Path(f"/proc/{pid}/environ").read_bytes()
            for pid in _replica_pids("synthrec-generator", "Generator")
        ]
        assert any(f"AWS_SECRET_ACCESS_KEY={s3_secret}".encode() in e for e in environs)
        for session in Path("/tmp/ray").glob("session_2*"):  # the sessions started by this test
            if session.stat().st_mtime >= started - 1:
                for path in (session / "logs").rglob("*"):
                    if path.is_file() and path.stat().st_size < 50 << 20:
                        assert s3_secret.encode() not in path.read_bytes(), path
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(90)
    assert code == 130  # interrupted: Serve and the local Ray were shut down
    assert key not in log.read_text()


@pytest.fixture(scope="module")
def users_url(server, tmp_path_factory):
    """A tiny sequence model (users with their events) as its own generator app on /seq."""
    from logshapes import taobao_log
    from ray import serve

    from synthrec.config import SequenceConfig
    from synthrec.sequences import SequenceSynthesizer
    from synthrec.sequences.artifacts import save_sequence_model
    from synthrec.serving.app import build_generator

    cfg = SequenceConfig(
        d_model=16, n_heads=2, n_layers=1, window=8, epochs=2, users_epochs=2, adversarial_steps=0
    )
    synth = SequenceSynthesizer().fit(taobao_log(1500), cfg=cfg)
    uri = str(tmp_path_factory.mktemp("models") / "sequence")
    save_sequence_model(synth, uri, metadata={"version": "seq-v1"})
    serve_cfg = server["cfg"].model_copy(
        update={"generator_uri": uri, "api_key_file": None, "api_key_required": False}
    )
    serve_cfg.generator = {"num_cpus": 0.1, "memory_gb": 0.2}
    serve_cfg.limits = {**serve_cfg.limits.model_dump(), "max_users": 200}
    serve.run(build_generator(serve_cfg), name="seq", route_prefix="/seq")
    yield f"{server['url']}/seq"
    serve.delete("seq")


def test_serve_users_whole_users_with_their_events(users_url):
    from ray import serve

    body = {"users": 7, "seed": 3}
    first = requests.post(users_url, json=body, timeout=60)
    assert first.status_code == 200, first.text
    answer = first.json()
    users = answer["users"]
    assert answer["model_version"] == "seq-v1" and "rows" not in answer
    assert len(users) == 7 and len({u["user_id"] for u in users}) == 7
    for user in users:
        times = [e["timestamp"] for e in user["events"]]
        assert times and times == sorted(times)  # the user's events, in time order
        assert set(user["events"][0]) == {"item_id", "category_id", "behavior_type", "timestamp"}
    assert requests.post(users_url, json=body, timeout=60).json() == answer  # same seed

    flat = requests.post(users_url, json={**body, "unit": "rows"}, timeout=60).json()["rows"]
    assert len(flat) == sum(len(u["events"]) for u in users)
    assert [r["user_id"] for r in flat] == [u["user_id"] for u in users for _ in u["events"]]
    arrow = requests.post(users_url, json={**body, "format": "arrow"}, timeout=60)
    table = pa.ipc.open_stream(arrow.content).read_all()
    assert table.num_rows == 7 and table.column("events").to_pylist() == [
        u["events"] for u in users
    ]
    rows = requests.post(users_url, json={"rows": 50, "seed": 3}, timeout=60).json()["rows"]
    assert len(rows) == 50 and rows[0]["user_id"] == users[0]["user_id"]  # events, user after user
    info = serve.get_deployment_handle("Generator", app_name="seq").model_info.remote().result()
    assert info["metadata"]["kind"] == "sequence" and info["metadata"]["unit"] == "users"
    assert "category_id" in info["metadata"]["conditionable_columns"]


@pytest.mark.parametrize(
    "body, field, match",
    [
        ({"users": 201}, "users", "limit of 200"),
        ({"users": 3, "format": "csv"}, "format", "csv cannot nest"),
        ({"rows": 3, "unit": "users"}, "unit", "users=N"),
        ({"rows": 3, "users": 3}, "users", "not both"),
        ({"unit": "users"}, "rows", "users=N"),
        ({"users": 3, "conditions": {"category_id": 7}}, "conditions", "no catalog item"),
        ({"users": 3, "rebalance": {"colour": "uniform"}}, "rebalance", "colour"),
    ],
)
def test_serve_users_bad_requests_are_422_naming_the_field(users_url, body, field, match):
    res = requests.post(users_url, json=body, timeout=60)
    assert res.status_code == 422 and res.json()["field"] == field, res.text
    assert match in res.json()["detail"]


def test_serve_users_from_a_row_model_is_422_naming_the_unit(server):
    auth = {"authorization": f"Bearer {SECRET}"}  # the roll above may have turned auth on
    for body, field in (({"users": 3}, "users"), ({"rows": 3, "unit": "users"}, "unit")):
        res = post(server, "/v1/synthetic", body, headers=auth)
        assert res.status_code == 422 and res.json()["field"] == field, res.text
    res = post(server, "/v1/synthetic", {"users": 3}, headers=auth)
    assert "row model" in res.json()["detail"] and "rows=N" in res.json()["detail"]
