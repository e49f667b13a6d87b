"""The Ranker Serve application: POST /v1/rank on its own route prefix (see app.py).

Its own app, like the other models, so a request crosses one hop (proxy -> replica). It loads
the recommender directory once and ranks concurrent requests together (@serve.batch): one
transformer pass over the batch's users and one pass of the ranking heads over all their
candidates. Deployed beside the Recommender when that model has ranking heads; it shares
the recommender's replica settings (the `recommender` section of the serve config).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray import serve
from ray.serve import Application

from synthrec.config import ServeConfig
from synthrec.errors import ConfigError
from synthrec.serving.api import RequestRejected, build_api
from synthrec.serving.auth import load_api_key
from synthrec.serving.metrics import ServeMetrics
from synthrec.serving.rank_schemas import RankRequest

RANKER_APP = "synthrec-ranker"
RANK_PREFIX = "/v1/rank"


@serve.deployment(name="Ranker")
@serve.ingress()
class RankerDeployment:
    def __init__(self, cfg: ServeConfig):
        from synthrec.serving.app import replica_device
        from synthrec.serving.rank import RankerBackend

        self.cfg = cfg
        self.key = load_api_key(cfg)
        # the device Ray granted this replica (app args or the serve config's deployments:)
        self.backend = RankerBackend(cfg.recommender_uri, cfg.storage, device=replica_device())
        self._score.set_max_batch_size(cfg.recommender.max_batch_size)
        self._score.set_batch_wait_timeout_s(cfg.recommender.batch_wait_timeout_s)
        self.metrics = ServeMetrics(RANKER_APP)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rank")

    def __serve_build_asgi_app__(self):
        return build_api(self.cfg, self.key, ranker=self, mount="ranker", metrics=self.metrics)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def _score(self, requests: list[RankRequest]) -> list[bytes | RequestRejected]:
        loop = asyncio.get_running_loop()  # per-request errors come back as values
        return await loop.run_in_executor(self._worker, self.backend.rank_many, requests)

    async def rank(self, request: RankRequest) -> bytes:
        result = await self._score(request)
        if isinstance(result, RequestRejected):
            raise result
        return result

    async def model_info(self) -> dict[str, Any]:
        return self.backend.model_info()


def build_ranker(args: dict[str, Any] | ServeConfig) -> Application:
    """Serve app builder: the Ranker on /v1/rank (a recommender with ranking heads)."""
    from synthrec.serving.app import _as_config, deployment_options

    cfg = _as_config(args)
    if not cfg.recommender_uri:
        raise ConfigError("recommender_uri is not set; the ranker app needs a model directory URI")
    options = deployment_options(cfg.recommender, cfg)
    return RankerDeployment.options(**options).bind(cfg)
