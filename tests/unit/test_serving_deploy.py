"""serve/config.yaml builds every application; `synthrec serve` fails fast on bad flags.

No Ray cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synthrec.config import ServeConfig
from synthrec.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _rayservice_serve_config() -> dict:
    docs = yaml.safe_load_all((REPO / "k8s" / "rayservice.yaml").read_text())
    (service,) = [d for d in docs if d and d["kind"] == "RayService"]
    return yaml.safe_load(service["spec"]["serveConfigV2"])


@pytest.mark.parametrize(
    "source, host",
    [
        ("serve/config.yaml", "127.0.0.1"),
        ("k8s/rayservice.yaml", "0.0.0.0"),  # a cluster: HAProxy reaches replicas on all nodes
    ],
)
def test_serving_config_yaml_builds_every_app(source, host):
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve._private.utils import import_attr
    from ray.serve.schema import ServeDeploySchema

    if source == "serve/config.yaml":
        config = yaml.safe_load((REPO / source).read_text())
    else:
        config = _rayservice_serve_config()
    schema = ServeDeploySchema.model_validate(config)
    assert schema.http_options.host == host
    prefixes = {}
    for app in schema.applications:
        built = call_user_app_builder_with_args_if_necessary(import_attr(app.import_path), app.args)
        prefixes[app.name] = app.route_prefix
        deployment = built._bound_deployment
        config = deployment._deployment_config
        assert 0 < config.max_queued_requests <= 1_000, app.name  # bounded: 503 beyond it
        assert config.backpressure_config.status_code == 503
        assert config.backpressure_config.retry_after_s >= 1  # clients are told when to retry
        assert deployment.ray_actor_options["memory"] >= 1 << 28, app.name
        assert app.args.get("api_key_required", True), app.name  # fail closed
        if app.name == "synthrec-recommender":
            assert deployment._deployment_config.autoscaling_config.max_replicas >= 4
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
        "memory": 1 << 30,
    }
    assert opts["max_queued_requests"] == 64
    assert opts["backpressure_config"] == {"status_code": 503, "retry_after_s": 2}
    assert opts["logging_config"] == {"encoding": "JSON", "enable_access_log": False}
    auto = ServeConfig(generator={"autoscaling": {"max_replicas": 8}})
    assert deployment_options(auto.generator, auto)["num_replicas"] == "auto"


CREDENTIALS = {"access_key_id": "AKIDFORTESTONLY", "secret_access_key": "s3cr3t-for-test"}


def test_serving_builders_refuse_credentials_in_args():
    """Args are pickled into Serve's controller and every replica: never with a secret."""
    from synthrec.serving.app import build_apps, build_generator

    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID"):
        build_apps(ServeConfig(generator_uri="s3://b/gen", storage=CREDENTIALS))
    with pytest.raises(ConfigError, match="pickled"):  # serve/config.yaml args
        build_generator({"generator_uri": "x", "storage": {"secret_access_key": "s"}})


def test_serving_credentials_go_to_the_environment_of_a_ray_we_start(monkeypatch):
    import pickle

    from synthrec.serving.app import _credentials_to_environment, build_apps

    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    cfg = ServeConfig(generator_uri="s3://b/gen", recommender_uri="s3://b/r", storage=CREDENTIALS)
    with pytest.raises(ConfigError, match="running Ray"):
        _credentials_to_environment(cfg, starts_ray=False)  # joining a cluster: refused
    assert "AWS_SECRET_ACCESS_KEY" not in os.environ
    sent = _credentials_to_environment(cfg, starts_ray=True)
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "s3cr3t-for-test"  # the local Ray inherits it
    assert sent.storage.resolved()["secret_access_key"] == "s3cr3t-for-test"  # replicas find it
    for name, app in build_apps(sent).items():
        deployment = app._bound_deployment
        args = pickle.dumps((deployment.init_args, deployment.init_kwargs))
        assert b"s3cr3t-for-test" not in args and b"AKIDFORTESTONLY" not in args, name
        assert "runtime_env" not in deployment.ray_actor_options  # Ray logs runtime envs


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "--generator-uri, --recommender-uri or both"),
        (["--generator-uri", "/nonexistent/model"], "no published model directory"),
        (["--recommender-uri", "out/x", "--port", "99999"], "port"),
        (["--recommender-uri", "out/x", "--host", "0.0.0.0"], "refusing to serve beyond loopback"),
        (  # --insecure passes the auth check; the model directory is checked next
            ["--generator-uri", "/nonexistent/model", "--host", "0.0.0.0", "--insecure"],
            "no published model directory",
        ),
    ],
)
def test_serving_cli_fails_fast_with_one_line(args, message):
    env = {k: v for k, v in os.environ.items() if k != "SYNTHREC_API_KEY"}
    proc = subprocess.run(
        [sys.executable, "-m", "synthrec.cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
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
