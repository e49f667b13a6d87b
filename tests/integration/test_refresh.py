"""The refresh loop against SeaweedFS S3: two refreshes (the first from scratch, the second
warm-started from production) with Serve following `@production`, a rejected candidate whose
refresh is SIGKILLed mid-stage and re-run, a promotion and a rollback that Serve follows
without a failed request, a schema change and an empty partition."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pyarrow as pa
import pytest
import requests
import yaml

from synthrec import storage
from synthrec.cli import main
from synthrec.config import RefreshConfig, SimulateConfig
from synthrec.errors import SchemaError
from synthrec.registry import CANDIDATE, PRODUCTION, Registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = {
    "generator": "rows",
    "gan": {"generator_dims": [32], "critic_dims": [32], "embedding_dim": 16, "batch_size": 200},
    "gan_epochs": 1,
    "scratch_gan_epochs": 2,
    "synthetic_rows": 1_000,
    "recommender_epochs": 1,
    "recommender": {"epochs": 2, "dim": 16, "num_layers": 1, "max_len": 10},
    "scaling": {"num_workers": 1, "cpus_per_worker": 1},
    "evaluate": {"privacy_query_rows": 500},
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def partitions(ray_local, s3_server, tmp_path_factory):
    """The simulated search log cut by time into three partitions, on S3."""
    import uuid

    from synthrec.data.simulator import run_simulate

    bucket = s3_server.create_bucket(f"refresh-{uuid.uuid4().hex[:10]}")
    sim = str(tmp_path_factory.mktemp("sim") / "log")
    run_simulate(
        SimulateConfig(
            rows=6_000, num_users=200, num_items=300, num_categories=6, num_brands=20,
            num_queries=40, rows_per_file=1_000, out_uri=sim,
        )
    )  # fmt: skip
    table = storage.read_table(sim)
    table = table.take(pa.array(np.argsort(table["timestamp"].to_numpy(), kind="stable")))
    uris = []
    for k, rows in enumerate(np.array_split(np.arange(table.num_rows), 3)):
        uri = f"s3://{bucket}/incoming/period-{k}"
        storage.write_dataset(table.take(pa.array(rows)), uri)
        uris.append(uri)
    return {"bucket": bucket, "uris": uris, "table": table}


def _cfg(partitions, k: int, **extra) -> RefreshConfig:
    out = f"s3://{partitions['bucket']}/loop"
    return RefreshConfig(out_uri=out, partition_uri=partitions["uris"][k], **{**TINY, **extra})


@pytest.fixture(scope="module")
def served(ray_local):
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(scope="module")
def loop(partitions, served):
    """Refresh 1 (scratch, promoted: nothing to beat), Serve on @production, refresh 2."""
    from synthrec.config import ServeConfig
    from synthrec.serving.follow import AliasFollower, resolve_recommender, roll_recommender

    first = main_refresh(_cfg(partitions, 0))
    root = _cfg(partitions, 0).out_uri
    ref = "synthrec-recommender@production"
    serving = resolve_recommender(ref, root)
    cfg = ServeConfig(
        recommender_uri=serving.model_uri,
        access_log=False,
        api_key_env=None,
        api_key_required=False,
        recommender={"num_cpus": 0.2, "memory_gb": 0.25},
    )
    cfg = roll_recommender(cfg, serving.model_uri)  # the first deploy is a roll from nothing
    follower = AliasFollower(cfg, ref, root, serving, interval_s=3600)
    second = main_refresh(_cfg(partitions, 1))
    return {"first": first, "second": second, "root": root, "follower": follower}


def main_refresh(cfg: RefreshConfig, events: list | None = None) -> dict:
    from synthrec.refresh import run_refresh

    sink = events if events is not None else []
    return run_refresh(cfg, progress=lambda kind, **e: sink.append((kind, e)))


def test_refresh_first_promotes_second_warm_starts_from_production(loop, partitions):
    first, second = loop["first"], loop["second"]
    assert first["status"] == "promoted" and first["version"] == 1
    assert first["warm_start"] is False and first["drift"] == {}
    assert second["warm_start"] is True and second["start_version"] == 1
    assert second["version"] == 2
    # promoted exactly when the candidate beat production by the margin (0)
    beat = second["candidate_ndcg@10"] >= second["production_ndcg@10"]
    assert second["promoted"] is beat, second["reason"]
    assert set(second["drift"]) >= {"category", "price", "click"}  # not the time column
    assert "timestamp" not in second["drift"]
    with Registry(loop["root"]) as reg:
        v1, v2 = reg.get(1), reg.get(2)
        assert v2.tags["parent_version"] == "1"
        lineage = json.loads(v2.tags["data_manifests"])
        assert set(lineage) == {"partition", "real_all", "synthetic"} and all(lineage.values())
        assert reg.run_metrics(v2.run_id)["loss"]  # rank 0's per-epoch metrics on MLflow
    from synthrec.recommender.artifacts import load_recommender

    warm = load_recommender(v2.model_uri).training["warm_start"]
    assert warm["from"] == v1.model_uri and 0.3 < warm["copied_share"] <= 1.0
    page = storage.read_bytes(f"{loop['root']}/refresh/report.html").decode()
    assert page.count("<tr>") >= 3 and "Drift of the real data" in page
    prom = storage.read_bytes(f"{loop['root']}/refresh/metrics.prom").decode()
    assert "synthrec_refresh_total 2.0" in prom


def test_refresh_killed_mid_stage_resumes_to_the_same_registry_state(
    loop, partitions, ray_local, tmp_path
):
    """Refresh 3 with an unreachable margin, SIGKILLed during F's training, re-run: the
    finished stages are reused and the registry ends as an uninterrupted run's would: one
    new version (3, candidate), production untouched, the rejection said."""
    from synthrec.refresh import _partition_key, read_state, refresh_id_of

    cfg = _cfg(partitions, 2, margin=1.0)
    with Registry(loop["root"]) as reg:
        production = reg.alias(PRODUCTION).version
    key = _partition_key(cfg, storage.read_table(cfg.partition_uri))
    rid = refresh_id_of(key, read_state(cfg))
    config = tmp_path / "refresh.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude={"storage"})))
    address = ray_local.get_runtime_context().gcs_address
    cmd = [sys.executable, "-m", "synthrec.cli", "refresh", "--config", str(config),
           "--address", address]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    marker = f"{cfg.out_uri}/refreshes/{rid}/_stages/generator.json"
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and not storage.exists(marker) and proc.poll() is None:
        time.sleep(0.5)
    time.sleep(3)  # into F's training
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert storage.exists(marker), "the kill must land after the generator stage"
    assert not storage.exists(f"{cfg.out_uri}/refreshes/{rid}/_stages/decide.json")

    events: list = []
    result = main_refresh(cfg, events)
    reused = {e["name"] for k, e in events if k == "stage" and e.get("reused") and "part" not in e}
    assert {"plan", "data", "generator"} <= reused
    assert result["status"] == "kept production" and "margin 1.0" in result["reason"]
    with Registry(loop["root"]) as reg:
        versions = reg.versions()
        assert [v.version for v in versions] == [1, 2, 3]
        assert [v.tags["refresh_id"] for v in versions].count(rid) == 1
        assert reg.alias(PRODUCTION).version == production
        assert reg.alias(CANDIDATE).version == 3
    again = main_refresh(cfg)
    assert again["status"] == "already done" and again["version"] == 3


def test_refresh_promote_and_rollback_are_followed_by_serve(loop, served, partitions):
    """Promote 3 by hand, then roll back: Serve follows both, no request fails meanwhile."""
    follower, root = loop["follower"], loop["root"]
    follower.poll()  # catch up with refresh 2's decision
    body = {"user_id": str(partitions["table"]["user_id"][0]), "k": 5}
    statuses: list[int] = []
    versions: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    res = session.post(served + "/v1/recommendations", json=body, timeout=60)
                    statuses.append(res.status_code)
                    versions.append(res.json().get("model_version", "?") if res.ok else "-")
                except requests.RequestException:
                    statuses.append(-1)

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    with Registry(root) as reg:
        before = reg.alias(PRODUCTION).version
    assert main(["models", "promote", "3", "--root-uri", root]) == 0
    assert follower.poll() and follower.serving.version == 3
    seen_promoted = len(versions)
    assert main(["models", "rollback", "--root-uri", root]) == 0
    assert follower.poll() and follower.serving.version == before
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join()
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    assert len(set(versions)) >= 2 and seen_promoted > 0
    with Registry(root) as reg:
        assert reg.alias(PRODUCTION).version == before


def test_refresh_bad_partitions(loop, partitions):
    table = partitions["table"].slice(0, 500)
    changed = table.drop_columns(["brand"])
    changed = changed.set_column(
        changed.schema.get_field_index("price"), "price", table["price"].cast(pa.string())
    )
    uri = f"s3://{partitions['bucket']}/incoming/changed"
    storage.write_dataset(changed, uri)
    cfg = _cfg(partitions, 0).model_copy(update={"partition_uri": uri})
    with pytest.raises(SchemaError, match=r"removed: brand; retyped: price \(double -> string\)"):
        main_refresh(cfg)
    with Registry(loop["root"]) as reg:
        assert len(reg.versions()) == 3


def test_refresh_empty_partition_is_nothing_to_do(partitions):
    empty = f"s3://{partitions['bucket']}/incoming/empty.parquet"
    storage.write_bytes(empty, storage.parquet_bytes(partitions["table"].slice(0, 0)))
    cfg = _cfg(partitions, 0).model_copy(
        update={"partition_uri": empty, "out_uri": f"s3://{partitions['bucket']}/other-loop"}
    )
    result = main_refresh(cfg)
    assert result == {
        "status": "nothing to do",
        "reason": f"{empty} has no rows; production is unchanged",
    }
    assert not storage.exists(f"{cfg.out_uri}/refresh/state.json")
