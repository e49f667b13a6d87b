"""Storage credentials for Ray workers, never in task arguments, runtime_env or logs.

A StorageConfig dumps its `access_key_id`/`secret_access_key` as stars, so a config sent to a
worker as JSON arrives without them; and Ray writes a runtime_env's env_vars verbatim into
`runtime_env_agent.log`. So the driver puts the secrets in the object store once, and workers
get only an ObjectRef (held in a dataclass, so Ray never inlines the value into a task's
arguments) which they resolve in their constructor. Without secrets in the config nothing is
shared: workers use their own environment or the node's identity (instance profile, IRSA),
which is what a cluster should use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synthrec.config import StorageConfig


@dataclass(frozen=True)
class WorkerStorage:
    """A StorageConfig as a Ray worker receives it: settings as JSON, secrets by reference."""

    config_json: str
    secrets: tuple[Any, ...] = ()  # (ObjectRef,) of StorageConfig.secrets() when set

    def resolve(self) -> StorageConfig:
        """The full config, on the worker."""
        cfg = StorageConfig.model_validate_json(self.config_json)
        if not self.secrets:
            return cfg
        import ray

        return cfg.with_secrets(ray.get(self.secrets[0]))


def share(storage: StorageConfig) -> WorkerStorage:
    """On the driver (Ray connected): what to send to workers instead of `storage`. Keep the
    returned object alive until the workers are done: it owns the secrets' object."""
    secrets = storage.secrets()
    if not secrets:
        return WorkerStorage(storage.model_dump_json())
    import ray

    return WorkerStorage(storage.without_secrets().model_dump_json(), (ray.put(secrets),))
