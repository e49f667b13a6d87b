"""Serve a registry alias (`name@production`) and follow it when a promotion or rollback moves it.

`resolve_recommender` turns the alias into the model directory URI of the version it names.
`AliasFollower` (a daemon thread in the process that deployed Serve: `synthrec serve
--follow`) polls the registry and, when the alias points at another version, redeploys the
recommender app with the new URI: the same rolling update as any change of recommender_uri
(new replicas start and load the model before the old ones stop, so no request fails).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from synthrec.config import RegistryConfig, ServeConfig, StorageConfig
from synthrec.registry import Registry, Version


def resolve_recommender(
    ref: str, root_uri: str, registry: RegistryConfig | None = None, storage=None
) -> Version:
    """The registry version `ref` (NAME@ALIAS or NAME/VERSION) names."""
    with Registry(root_uri, registry, storage) as reg:
        return reg.resolve(ref)


def roll_recommender(cfg: ServeConfig, model_uri: str) -> ServeConfig:
    """Redeploy the recommender app (and the ranker, when deployed) on `model_uri`; blocks
    until the roll is done. `cfg` is the config the apps were deployed with."""
    from ray import serve

    from synthrec.recommender.artifacts import has_ranking_heads
    from synthrec.serving.app import RECOMMENDER_APP, ROUTE_PREFIXES, build_recommender
    from synthrec.serving.auth import resolve_auth
    from synthrec.serving.rank_app import RANK_PREFIX, RANKER_APP, build_ranker

    new, _ = resolve_auth(cfg.model_copy(update={"recommender_uri": model_uri}))
    keys = dict.fromkeys(("access_key_id", "secret_access_key"))  # never in app args
    new = new.model_copy(update={"storage": new.storage.model_copy(update=keys)})
    serve.run(
        build_recommender(new),
        name=RECOMMENDER_APP,
        route_prefix=ROUTE_PREFIXES[RECOMMENDER_APP],
    )
    if RANKER_APP in serve.status().applications and has_ranking_heads(model_uri, new.storage):
        serve.run(build_ranker(new), name=RANKER_APP, route_prefix=RANK_PREFIX)
    return new


class AliasFollower(threading.Thread):
    """Polls `ref` every `interval_s` and rolls the recommender app when it moves."""

    def __init__(
        self,
        cfg: ServeConfig,
        ref: str,
        root_uri: str,
        serving: Version,
        registry: RegistryConfig | None = None,
        interval_s: float = 10.0,
        on_roll: Callable[[Version], None] | None = None,
    ):
        super().__init__(name="synthrec-alias-follower", daemon=True)
        self.cfg, self.ref, self.root_uri, self.serving = cfg, ref, root_uri, serving
        self.registry, self.interval_s, self.on_roll = registry, interval_s, on_roll
        self.storage = cfg.storage if cfg.storage is not None else StorageConfig()
        self.stopped = threading.Event()
        self.error: str | None = None  # the last poll's error (the registry unreachable)

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            self.poll()

    def poll(self) -> bool:
        """One look at the registry; -> whether the app rolled."""
        try:
            now = resolve_recommender(self.ref, self.root_uri, self.registry, self.storage)
        except Exception as err:  # keep serving what runs; report and try again
            self.error = f"{type(err).__name__}: {err}"
            return False
        self.error = None
        if now.version == self.serving.version:
            return False
        self.cfg = roll_recommender(self.cfg, now.model_uri)
        self.serving = now
        if self.on_roll:
            self.on_roll(now)
        return True

    def stop(self) -> None:
        self.stopped.set()
