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
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import requests

from synthrec.local_s3 import free_port

pytestmark = pytest.mark.integration

SECRET = "t0p-secret-key-for-tests"


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
        save_synthesizer(synth, str(root / version), metadata={"version": version})
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
    save_recommender(build_recommender(model, encoder, cfg, known, popularity, {}), str(out))
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
        limits={"max_rows": 5_000, "max_k": 50},
        generator={"num_cpus": 0.2},
        recommender={"num_cpus": 0.2},
        gateway={"num_cpus": 0.1},
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


def test_serve_health_models_and_docs(server):
    assert requests.get(server["url"] + "/healthz", timeout=10).json() == {"status": "ok"}
    models = requests.get(server["url"] + "/v1/models", timeout=30).json()
    assert models["generator"]["loaded"] and models["generator"]["version"] == "gen-v1"
    assert "genre" in models["generator"]["metadata"]["conditionable_columns"]
    assert models["recommender"]["loaded"] and models["recommender"]["metadata"]["num_items"] > 100
    assert len(models["recommender"]["version"]) == 16
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
    ],
)
def test_serve_bad_input_is_4xx_naming_the_field(server, path, body, raw, status, field):
    res = post(server, path, body, raw)
    assert res.status_code == status, res.text
    assert res.json()["field"] == field


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
    wanted = (
        "ray_synthrec_requests_total{",
        "ray_synthrec_request_latency_ms_bucket{",
        "ray_synthrec_rows_generated_total{",
    )
    text, deadline = "", time.monotonic() + 45
    while time.monotonic() < deadline and not all(w in text for w in wanted):
        time.sleep(2)
        text = requests.get(url, timeout=10).text
    assert all(w in text for w in wanted), [w for w in wanted if w not in text]
    assert 'endpoint="/v1/synthetic"' in text and 'status="422"' in text


@pytest.mark.slow
def test_serve_cli_haproxy_ingress_with_env_key(models, tmp_path):
    """`synthrec serve` as users start it: its own local Ray, the default HAProxy ingress, the API
    key from SYNTHREC_API_KEY, a clean exit on SIGTERM, and the key in none of its output."""
    port, key = free_port(), "env-key-for-the-cli-test"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"SYNTHREC_API_KEY": key}
    log = tmp_path / "serve.log"
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
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(90)
    assert code == 130  # interrupted: Serve and the local Ray were shut down
    assert key not in log.read_text()
