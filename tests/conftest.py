"""Shared fixtures: one local Ray and one SeaweedFS S3 server for the whole test run.

Both start lazily, on the first test that asks for them, and stop at the end.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

# Before Ray is imported anywhere: loopback only, no auth for the test cluster, quiet.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import pytest

REPO = Path(__file__).resolve().parents[1]
ML100K = REPO.parent / "shared" / "datasets" / "ml-100k"


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """The real MovieLens-100K folder; tests skip only where ../shared is missing."""
    if not (ML100K / "events.parquet").exists():
        pytest.skip("../shared/datasets/ml-100k is missing")
    return ML100K


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 endpoint (SeaweedFS) on 127.0.0.1; its env is exported for the run."""
    from synthrec.local_s3 import LocalS3

    server = LocalS3().start()
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh bucket per test; returns its name."""
    return s3_server.create_bucket(f"t-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def ray_local(s3_server):
    """One local Ray sized for 2 cores. Depends on the S3 fixture so workers inherit its env.

    Ray's processes inherit this process's environment; passing the keys as runtime_env
    env_vars as well would write them into Ray's runtime_env agent log.
    """
    import ray
    from ray.data import DataContext

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=1 << 30,
    )
    DataContext.get_current().execution_no_progress_timeout_s = 120
    yield ray
    try:
        from ray import serve

        serve.shutdown()
    except Exception:
        pass
    ray.shutdown()
