"""Replicas pick their device from what Ray granted: checked on a real Ray (in a child
process, beside the session's Ray) that declares one logical GPU, with actors given the
options a Serve `deployments:` override produces (ray_actor_options: {num_gpus: ...})."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
PLATFORM = Path(__file__).resolve().parents[2] / "platform"

CHILD = """
import json, ray
from synthrec.serving.app import replica_device
ray.init(num_cpus=1, num_gpus=1, include_dashboard=False, log_to_driver=False,
         object_store_memory=1 << 27)
probe = ray.remote(lambda: replica_device())
granted = ray.get(probe.options(num_cpus=0.1, num_gpus=1).remote())
denied = ray.get(probe.options(num_cpus=0.1, num_gpus=0).remote())
print(json.dumps({"granted": granted, "denied": denied}))
"""


def test_serving_device_comes_from_the_ray_grant(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PLATFORM), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("RAY_ADDRESS", None)  # its own Ray, never the session's
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"granted": "cuda", "denied": "cpu"}
