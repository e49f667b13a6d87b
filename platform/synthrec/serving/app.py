"""Ray Serve applications: Generator and Recommender (each its own FastAPI ingress) and a Gateway.

Three Serve applications share one HTTP front (HAProxy by default, or Serve's Python proxy;
see `_local_ingress_env`), routed by prefix:

    /v1/synthetic        -> app synthrec-generator,   deployment Generator
    /v1/recommendations  -> app synthrec-recommender, deployment Recommender
    /  (/v1/models, /healthz, /docs, /openapi.json) -> app synthrec-gateway, deployment Gateway

A model deployment is itself the ingress of its route, so a request crosses one hop (proxy ->
model replica) instead of two (proxy -> gateway -> model): on 2 cores the extra hop doubled
the latency. Each model app scales, rolls and is redeployed on its own: changing
recommender_uri redeploys only synthrec-recommender. Models load once, in `__init__`.

Fail closed and bounded: a replica without its API key refuses to start (auth.py); each
deployment queues at most `max_queued_requests` (more answer 503 with Retry-After); model
work runs on one worker thread per replica, so the event loop keeps answering (and
rejecting) while a large batch samples. Secrets never travel in deployment args (pickled
into Serve's controller and every replica) nor in a runtime_env (Ray writes runtime envs,
values included, to runtime_env_agent.log): S3 credentials reach replicas only through the
environment of the Ray processes or the nodes' IAM role (`_credentials_to_environment`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray import serve
from ray.serve import Application

from synthrec.config import ReplicaSection, ServeConfig, validate_config
from synthrec.errors import ConfigError, ModelError
from synthrec.recommender.artifacts import has_ranking_heads
from synthrec.serving.api import RequestRejected, build_api
from synthrec.serving.auth import load_api_key, resolve_auth
from synthrec.serving.metrics import ServeMetrics
from synthrec.serving.rank_app import RANK_PREFIX, RANKER_APP, build_ranker
from synthrec.serving.schemas import RecommendationRequest, SyntheticRequest
from synthrec.storage import read_manifest

GATEWAY_APP, GENERATOR_APP, RECOMMENDER_APP = (
    "synthrec-gateway",
    "synthrec-generator",
    "synthrec-recommender",
)
ROUTE_PREFIXES = {
    GATEWAY_APP: "/",
    GENERATOR_APP: "/v1/synthetic",
    RECOMMENDER_APP: "/v1/recommendations",
}
OPTIONAL_PREFIXES = {RANKER_APP: RANK_PREFIX}  # deployed when the recommender can rank
logger = logging.getLogger("ray.serve")  # Serve writes this logger to the replica's log file


@serve.deployment(name="Generator")
@serve.ingress()
class GeneratorDeployment:
    """Loads a generator model directory once; serves POST /v1/synthetic.

    Not batched: each request carries its own seed and must give the same rows whatever
    else is in flight, and one 1,000-row request already fills the generator's matmuls.
    """

    def __init__(self, cfg: ServeConfig):
        from synthrec.serving.backends import GeneratorBackend

        self.cfg = cfg
        self.key = load_api_key(cfg)  # no key while one is required: this replica never starts
        self.backend = GeneratorBackend(cfg.generator_uri, cfg.storage, device=replica_device())
        self.metrics = ServeMetrics(GENERATOR_APP)
        # One sampling thread: requests sample one after another (as before), but off the
        # event loop, which keeps reading, rejecting and answering health checks meanwhile.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")

    def __serve_build_asgi_app__(self):
        return build_api(
            self.cfg, self.key, generator=self, mount="generator", metrics=self.metrics
        )

    async def generate(self, request: SyntheticRequest) -> tuple[bytes, int, str]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, self.backend.generate, request)

    async def model_info(self) -> dict[str, Any]:
        return self.backend.model_info()


@serve.deployment(name="Recommender")
@serve.ingress()
class RecommenderDeployment:
    """Loads a recommender model directory once; serves POST /v1/recommendations.

    Concurrent requests are scored together (@serve.batch): one pass over the item matrix for
    the whole batch instead of one per request. With batch_wait_timeout_s=0 a lone request
    never waits; under load, whatever queued during the previous batch forms the next one.
    """

    def __init__(self, cfg: ServeConfig):
        from synthrec.serving.backends import RecommenderBackend

        self.cfg = cfg
        self.key = load_api_key(cfg)
        self.backend = RecommenderBackend(
            cfg.recommender_uri, cfg.storage, device=replica_device(), top_k=cfg.top_k
        )
        self._score.set_max_batch_size(cfg.recommender.max_batch_size)
        self._score.set_batch_wait_timeout_s(cfg.recommender.batch_wait_timeout_s)
        self.metrics = ServeMetrics(RECOMMENDER_APP)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recommend")

    def __serve_build_asgi_app__(self):
        return build_api(
            self.cfg, self.key, recommender=self, mount="recommender", metrics=self.metrics
        )

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def _score(self, requests: list[RecommendationRequest]) -> list[bytes | RequestRejected]:
        # Per-request errors come back as values: one bad request must not fail its batch.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, self.backend.recommend_many, requests)

    async def recommend(self, request: RecommendationRequest) -> bytes:
        result = await self._score(request)
        if isinstance(result, RequestRejected):
            raise result
        return result

    async def model_info(self) -> dict[str, Any]:
        return self.backend.model_info()


@serve.deployment(name="Gateway")
@serve.ingress()
class GatewayDeployment:
    """GET /v1/models, /healthz, /docs and the OpenAPI schema; 503 for a model not deployed."""

    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg
        self.key = load_api_key(cfg)
        self.metrics = ServeMetrics(GATEWAY_APP)

    def __serve_build_asgi_app__(self):
        return build_api(self.cfg, self.key, models=self.models, mount="full", metrics=self.metrics)

    async def models(self) -> dict[str, Any]:
        """Ask each deployed model app (at most one replica each) for its version and metadata."""
        running = set(await asyncio.to_thread(lambda: serve.status().applications))
        out: dict[str, Any] = {}
        for key, app, deployment in (
            ("generator", GENERATOR_APP, "Generator"),
            ("recommender", RECOMMENDER_APP, "Recommender"),
        ):
            out[key] = {"loaded": False}
            if app in running:
                handle = serve.get_deployment_handle(deployment, app_name=app)
                try:
                    out[key] = await asyncio.wait_for(
                        _await(handle.model_info.remote()), timeout=10
                    )
                except Exception:  # a replica that is starting or gone: say so, do not fail
                    # The detail (paths, hosts, tracebacks) goes to the log, never to the client.
                    ref = uuid.uuid4().hex[:12]
                    logger.exception("models: %s app did not answer (ref %s)", app, ref)
                    out[key] = {
                        "loaded": False,
                        "metadata": {
                            "error": f"{key} did not answer (ref {ref}; the gateway log has it)"
                        },
                    }
        return out


async def _await(response: Any) -> Any:
    return await response


# ------------------------------------------------------------------------------ builders


def build_generator(args: dict[str, Any] | ServeConfig) -> Application:
    """Serve app builder (serve/config.yaml import_path): the Generator on /v1/synthetic."""
    cfg = _as_config(args)
    if not cfg.generator_uri:
        raise ConfigError("generator_uri is not set; the generator app needs a model directory URI")
    return GeneratorDeployment.options(**deployment_options(cfg.generator, cfg)).bind(cfg)


def build_recommender(args: dict[str, Any] | ServeConfig) -> Application:
    """Serve app builder: the Recommender on /v1/recommendations."""
    cfg = _as_config(args)
    if not cfg.recommender_uri:
        raise ConfigError(
            "recommender_uri is not set; the recommender app needs a model directory URI"
        )
    return RecommenderDeployment.options(**deployment_options(cfg.recommender, cfg)).bind(cfg)


def build_gateway(args: dict[str, Any] | ServeConfig) -> Application:
    """Serve app builder: the Gateway on / (models, health, docs)."""
    cfg = _as_config(args)
    return GatewayDeployment.options(**deployment_options(cfg.gateway, cfg)).bind(cfg)


def build_apps(cfg: ServeConfig) -> dict[str, Application]:
    """App name -> Application for the models `cfg` names (the gateway always)."""
    apps = {GATEWAY_APP: build_gateway(cfg)}
    if cfg.generator_uri:
        apps[GENERATOR_APP] = build_generator(cfg)
    if cfg.recommender_uri:
        apps[RECOMMENDER_APP] = build_recommender(cfg)
    return apps


def deploy(cfg: ServeConfig) -> str:
    """Start Serve on local Ray (or join cfg.ray_address), deploy every app, return the base URL.

    Auth and model directories are checked on the driver first, so a wrong URI or a missing
    key fails in seconds with its name instead of replicas failing to start. Returns once
    every app is running.
    """
    from synthrec.distributed.common import ensure_ray

    # No key on a non-loopback host, or an unreadable key file, fails here, before any I/O.
    cfg, _ = resolve_auth(cfg)
    for flag, uri in (
        ("--generator-uri", cfg.generator_uri),
        ("--recommender-uri", cfg.recommender_uri),
    ):
        if uri and read_manifest(uri, cfg.storage) is None:
            raise ModelError(
                f"{flag} {uri}: no published model directory there (no _manifest.json); "
                "check the URI or re-run the job that publishes the model"
            )
    import ray

    starts_ray = not ray.is_initialized() and not (cfg.ray_address or os.environ.get("RAY_ADDRESS"))
    cfg = _credentials_to_environment(cfg, starts_ray)
    if starts_ray:  # this process starts the Ray: its env reaches every Serve actor
        _local_ingress_env(cfg.ingress)
    ensure_ray(cfg.ray_address)
    serve.start(
        http_options={
            "host": cfg.host,
            "port": cfg.port,
            "request_timeout_s": cfg.request_timeout_s,
        },
        logging_config={"encoding": "JSON", "enable_access_log": cfg.access_log},
    )
    apps = build_apps(cfg)
    if cfg.recommender_uri and has_ranking_heads(cfg.recommender_uri, cfg.storage):
        apps[RANKER_APP] = build_ranker(cfg)  # POST /v1/rank
    prefixes = {**ROUTE_PREFIXES, **OPTIONAL_PREFIXES}
    serve.run_many(
        [serve.RunTarget(app, name=name, route_prefix=prefixes[name]) for name, app in apps.items()]
    )
    return f"http://{cfg.host}:{cfg.port}"


def _local_ingress_env(ingress: str) -> None:
    """Serve reads its ingress flags once per process; set them before a local Ray starts.

    haproxy: Serve runs HAProxy in front and each replica serves HTTP itself, so a request
    skips the Python proxy and its actor-call round trips (on 2 cores: ~2x the requests/s
    and half the latency of the proxy). HAProxy's stats and Prometheus listeners get free
    ports instead of the fixed 8404/9101 (SeaweedFS and a second instance use those).
    """
    if ingress == "haproxy":
        os.environ.setdefault("RAY_SERVE_ENABLE_HA_PROXY", "1")
        os.environ.setdefault("RAY_SERVE_HAPROXY_STATS_PORT", str(_free_port()))
        os.environ.setdefault("RAY_SERVE_HAPROXY_METRICS_PORT", str(_free_port()))
    else:
        os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "0"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def deployment_options(section: ReplicaSection, cfg: ServeConfig) -> dict[str, Any]:
    """`.options(...)` for one deployment from its typed section."""
    actor: dict[str, Any] = {
        "num_cpus": section.num_cpus,
        "num_gpus": section.num_gpus,
        "memory": int(section.memory_gb * (1 << 30)),
    }
    opts: dict[str, Any] = {
        "max_ongoing_requests": section.max_ongoing_requests,
        "max_queued_requests": section.max_queued_requests,
        "backpressure_config": {"status_code": 503, "retry_after_s": section.retry_after_s},
        "ray_actor_options": actor,
        "logging_config": {"encoding": "JSON", "enable_access_log": cfg.access_log},
        "max_surge_percent": section.max_surge_percent,
    }
    if section.autoscaling is not None:
        opts["num_replicas"] = "auto"
        opts["autoscaling_config"] = section.autoscaling.model_dump()
    else:
        opts["num_replicas"] = section.num_replicas
    return opts


def _as_config(args: dict[str, Any] | ServeConfig) -> ServeConfig:
    cfg = (
        args
        if isinstance(args, ServeConfig)
        else validate_config(ServeConfig, args, source="serve app args")
    )
    if _credentials(cfg):
        raise ConfigError(
            "serve app args: storage.access_key_id / secret_access_key would be pickled into "
            "Serve's controller and every replica; remove them and set AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY in the environment of the nodes' Ray, or give the nodes an "
            "IAM role (`synthrec serve` does the former for a Ray it starts)"
        )
    return cfg


_CREDENTIAL_ENV = {
    "access_key_id": "AWS_ACCESS_KEY_ID",
    "secret_access_key": "AWS_SECRET_ACCESS_KEY",
}


def _credentials(cfg: ServeConfig) -> dict[str, str]:
    """AWS variable -> value of the S3 credentials set in `cfg` (none: empty)."""
    return {
        env: getattr(cfg.storage, field).get_secret_value()
        for field, env in _CREDENTIAL_ENV.items()
        if getattr(cfg.storage, field) is not None
    }


def _credentials_to_environment(cfg: ServeConfig, starts_ray: bool) -> ServeConfig:
    """Move S3 credentials from the config into this process's environment, which the local
    Ray this process is about to start (and so every replica) inherits; returns the config
    without them. Ray workers of an existing cluster cannot get them that way: ConfigError."""
    found = _credentials(cfg)
    if not found:
        return cfg
    if not starts_ray:
        raise ConfigError(
            "storage credentials in the serve config cannot reach the replicas of a running "
            "Ray without being logged or pickled; set AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY on that cluster's nodes (or give them an IAM role) and "
            "remove them from the config"
        )
    os.environ.update(found)
    storage = cfg.storage.model_copy(update=dict.fromkeys(_CREDENTIAL_ENV))
    return cfg.model_copy(update={"storage": storage})


def replica_device(gpu_ids: list | None = None) -> str:
    """ "cuda" when Ray granted this replica a GPU (`gpu_ids`: `ray.get_gpu_ids()` by default),
    else "cpu". The grant decides, not the app's args: a GPU given through the serve config's
    `deployments:` overrides (ray_actor_options: {num_gpus: 1}) never reaches ServeConfig, and
    args that ask for a GPU an override took away must not load the model on cuda."""
    if gpu_ids is None:
        import ray

        gpu_ids = ray.get_gpu_ids() if ray.is_initialized() else []
    return "cuda" if len(gpu_ids) > 0 else "cpu"
