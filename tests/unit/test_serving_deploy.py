"""serve/config.yaml builds every application; `synthrec serve` fails fast on bad flags. No Ray cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synthrec.config import ServeConfig
from synthrec.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_serving_config_yaml_builds_every_app():
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve._private.utils import import_attr
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load((REPO / "serve" / "config.yaml").read_text())
    schema = ServeDeploySchema.model_validate(config)
    assert schema.http_options.host == "127.0.0.1"
    prefixes = {}
    for app in schema.applications:
        built = call_user_app_builder_with_args_if_necessary(import_attr(app.import_path), app.args)
        prefixes[app.name] = app.route_prefix
        deployment = built._bound_deployment
        if app.name == "synthrec-recommender":
            assert deployment._deployment_config.autoscaling_config.max_replicas == 4
            assert deployment._deployment_config.max_surge_percent == 100
    from synthrec.serving.app import ROUTE_PREFIXES

    assert prefixes == ROUTE_PREFIXES


def test_serving_builders_reject_bad_args():
    from synthrec.serving.app import build_generator, build_recommender

    with pytest.raises(ConfigError, match="generator_uri"):
        build_generator({})
    with pytest.raises(ConfigError, match="unknown key 'recommender_url'"):
        build_recommender({"recommender_url": "x"})
    with pytest.raises(ConfigError, match="min_replicas 5 is above max_replicas 2"):
        build_recommender(
            {
                "recommender_uri": "x",
                "recommender": {"autoscaling": {"min_replicas": 5, "max_replicas": 2}},
            }
        )


def test_serving_deployment_options_from_config():
    from synthrec.serving.app import deployment_options

    cfg = ServeConfig(recommender={"num_gpus": 1, "num_replicas": 3}, access_log=False)
    opts = deployment_options(cfg.recommender, cfg)
    assert opts["num_replicas"] == 3 and opts["ray_actor_options"] == {
        "num_cpus": 0.5,
        "num_gpus": 1.0,
    }
    assert opts["logging_config"] == {"encoding": "JSON", "enable_access_log": False}
    auto = ServeConfig(generator={"autoscaling": {"max_replicas": 8}})
    assert deployment_options(auto.generator, auto)["num_replicas"] == "auto"


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "--generator-uri, --recommender-uri or both"),
        (["--generator-uri", "/nonexistent/model"], "no published model directory"),
        (["--recommender-uri", "out/x", "--port", "99999"], "port"),
    ],
)
def test_serving_cli_fails_fast_with_one_line(args, message):
    proc = subprocess.run(
        [sys.executable, "-m", "synthrec.cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 2, proc.stderr
    assert message in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr


def test_serving_config_yaml_sets_the_ingress_flag_everywhere():
    """Serve reads it in the controller and in each replica: one place missing breaks HTTP."""
    config = yaml.safe_load((REPO / "serve" / "config.yaml").read_text())
    flag = {"RAY_SERVE_ENABLE_HA_PROXY": "1"}
    assert config["controller_options"]["runtime_env"]["env_vars"] == flag
    assert all(app["runtime_env"]["env_vars"] == flag for app in config["applications"])


def test_serving_local_ingress_env(monkeypatch):
    from synthrec.serving.app import _local_ingress_env

    for key in (
        "RAY_SERVE_ENABLE_HA_PROXY",
        "RAY_SERVE_HAPROXY_STATS_PORT",
        "RAY_SERVE_HAPROXY_METRICS_PORT",
    ):
        monkeypatch.delenv(key, raising=False)
    _local_ingress_env("haproxy")
    import os

    assert os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert os.environ["RAY_SERVE_HAPROXY_METRICS_PORT"] != "9101"  # SeaweedFS's fixed port
    _local_ingress_env("proxy")
    assert os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "0"
