"""k8s/rayservice.yaml deploys the Serve app that exists: every application's import_path
names a builder in the installed package, its args are a valid ServeConfig, and its routes
are the ones the app serves."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

from synthrec.config import ServeConfig, validate_config
from synthrec.serving.app import ROUTE_PREFIXES

REPO = Path(__file__).resolve().parents[2]


def _serve_config() -> dict:
    docs = yaml.safe_load_all((REPO / "k8s" / "rayservice.yaml").read_text())
    (service,) = [d for d in docs if d and d["kind"] == "RayService"]
    return yaml.safe_load(service["spec"]["serveConfigV2"])


def test_k8s_rayservice_apps_resolve_to_the_package_builders():
    apps = _serve_config()["applications"]
    assert {a["name"]: a["route_prefix"] for a in apps} == ROUTE_PREFIXES
    for app in apps:
        module, _, name = app["import_path"].partition(":")
        builder = getattr(importlib.import_module(module), name)
        assert callable(builder), app["import_path"]
        cfg = validate_config(ServeConfig, app["args"], source=f"rayservice {app['name']}")
        assert cfg.api_key_required and cfg.api_key_env == "SYNTHREC_API_KEY"
        assert builder(app["args"]) is not None  # builds the Application (no Ray needed)
