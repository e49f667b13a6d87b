"""A Serve replica loads its model where Ray put it: on cuda only when Ray granted it a GPU,
whether the GPU came from the app's args or from the serve config's `deployments:` overrides
(a real Ray granting a logical GPU: tests/integration/test_serve_device_grant.py)."""

from __future__ import annotations

import pytest

from synthrec.serving.app import replica_device


@pytest.mark.parametrize(
    ("gpu_ids", "device"),
    [([], "cpu"), (["0"], "cuda"), ([0, 1], "cuda")],
)
def test_serving_device_follows_the_granted_gpus(gpu_ids, device):
    assert replica_device(gpu_ids) == device


def test_serving_device_outside_ray_is_cpu():
    import ray

    before = ray.is_initialized()  # an earlier test in this process may have started one
    assert replica_device() == "cpu"  # this process holds no GPU grant
    assert ray.is_initialized() == before  # asking did not start a Ray
