"""Named models, versions and aliases on the MLflow Model Registry; training runs on MLflow
tracking.

A version points at one of our model directories by URI (the safetensors format stays; MLflow
holds no copy) and carries its lineage as tags: the data manifests it was trained from, its
parent version, a hash of its config, its metrics and, with DP, its privacy budget. Two
aliases matter: `candidate` (the newest version a refresh trained) and `production` (what
Serve loads as `name@production`). Each promotion appends to the registered model's
`production_history` tag, so `rollback` knows which version served before.

Backend: `RegistryConfig.tracking_uri` (a tracking server on a cluster), by default a SQLite
file under the loop's root. SQLite cannot live on S3: with an s3:// root the file is copied
to a local folder when the registry opens and copied back after every change (one writer at
a time: the refresh job).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from synthrec import filestore
from synthrec.config import RegistryConfig, StorageConfig
from synthrec.errors import ModelError

CANDIDATE, PRODUCTION = "candidate", "production"
DB_NAME = "mlflow.db"


class RegistryError(ModelError):
    """A registered model, version or alias that does not exist, or a move that cannot be made."""


@dataclass
class Version:
    """One registered version: the model directory it names, its aliases and lineage tags."""

    name: str
    version: int
    model_uri: str
    aliases: list[str]
    tags: dict[str, str]
    run_id: str | None = None
    created_ms: int = 0
    metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "model_uri": self.model_uri,
            "aliases": self.aliases,
            "run_id": self.run_id,
            "created_ms": self.created_ms,
            "tags": self.tags,
        }


def registry_db_uri(root_uri: str) -> str:
    """Where the default SQLite registry of a loop rooted at `root_uri` lives."""
    return filestore.join(root_uri, "registry", DB_NAME)


class Registry:
    """The model registry of one loop. Use as a context manager (it syncs an S3-held SQLite)."""

    def __init__(
        self, root_uri: str, cfg: RegistryConfig | None = None, storage: StorageConfig | None = None
    ):
        self.root_uri, self.cfg, self.storage = root_uri, cfg or RegistryConfig(), storage
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._remote_db: str | None = None
        self._client = None

    # ------------------------------------------------------------------ opening and syncing

    def __enter__(self) -> Registry:
        from mlflow import MlflowClient

        uri = self.cfg.tracking_uri or self._default_uri()
        self._uri = uri
        self._client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        return self

    def __exit__(self, *exc) -> None:
        self._sync()
        if self._tmp is not None:
            self._tmp.cleanup()

    def _default_uri(self) -> str:
        db = registry_db_uri(self.root_uri)
        if not filestore.is_s3(db):
            os.makedirs(os.path.dirname(os.path.abspath(db)), exist_ok=True)
            return f"sqlite:///{os.path.abspath(db)}"
        self._tmp = tempfile.TemporaryDirectory(prefix="synthrec-registry-")
        local = os.path.join(self._tmp.name, DB_NAME)
        if filestore.exists(db, self.storage):
            with open(local, "wb") as fh:
                fh.write(filestore.read_bytes(db, self.storage))
        self._remote_db, self._local_db = db, local
        return f"sqlite:///{local}"

    def _sync(self) -> None:
        """Copy an S3-held SQLite file back after a change."""
        if self._remote_db is not None and os.path.exists(self._local_db):
            with open(self._local_db, "rb") as fh:
                filestore.write_bytes(self._remote_db, fh.read(), self.storage)

    @property
    def client(self):
        assert self._client is not None, "use Registry as a context manager"
        return self._client

    # ------------------------------------------------------------------ reading

    def versions(self, name: str | None = None) -> list[Version]:
        """Every version of `name` (default: the configured model), oldest first."""
        name = name or self.cfg.model_name
        self._require_model(name)
        found = self.client.search_model_versions(f"name='{name}'")
        # search results carry no aliases on every store: read each version itself
        numbers = sorted(int(v.version) for v in found)
        return [self._version(self.client.get_model_version(name, str(n))) for n in numbers]

    def get(self, version: int, name: str | None = None) -> Version:
        name = name or self.cfg.model_name
        self._require_model(name)
        from mlflow.exceptions import MlflowException

        try:
            return self._version(self.client.get_model_version(name, str(version)))
        except MlflowException:
            known = ", ".join(str(v.version) for v in self.versions(name)) or "none"
            raise RegistryError(
                f"model {name!r} has no version {version} (versions: {known}); "
                "see `synthrec models list`"
            ) from None

    def alias(self, alias: str, name: str | None = None) -> Version | None:
        """The version `alias` points at, or None when it is unset."""
        name = name or self.cfg.model_name
        if not self._has_model(name):
            return None
        from mlflow.exceptions import MlflowException

        try:
            return self._version(self.client.get_model_version_by_alias(name, alias))
        except MlflowException:
            return None

    def resolve(self, ref: str) -> Version:
        """`name@alias` or `name/version` (or a bare alias / version of the configured model)."""
        name, sep, what = ref.rpartition("@") if "@" in ref else ref.rpartition("/")
        name = name or self.cfg.model_name
        if "@" in ref:
            found = self.alias(what, name)
            if found is None:
                raise RegistryError(
                    f"{ref}: model {name!r} has no alias {what!r}; promote a version first "
                    "(`synthrec models promote VERSION`)"
                )
            return found
        if not what.isdigit():
            raise RegistryError(
                f"{ref!r} is not a model reference; use NAME@ALIAS (e.g. {name}@production) "
                "or NAME/VERSION"
            )
        return self.get(int(what), name)

    def find(self, tag: str, value: str, name: str | None = None) -> Version | None:
        """The version whose tag `tag` is `value` (a refresh finds the one it registered)."""
        name = name or self.cfg.model_name
        if not self._has_model(name):
            return None
        hits = [v for v in self.versions(name) if v.tags.get(tag) == value]
        return hits[-1] if hits else None

    def production_history(self, name: str | None = None) -> list[int]:
        name = name or self.cfg.model_name
        if not self._has_model(name):
            return []
        tags = self.client.get_registered_model(name).tags
        return json.loads(tags.get("production_history", "[]"))

    # ------------------------------------------------------------------ writing

    def register(
        self,
        model_uri: str,
        lineage: dict[str, Any],
        run_id: str | None = None,
        name: str | None = None,
    ) -> Version:
        """A new version of `name` naming the model directory at `model_uri`, alias `candidate`.

        `lineage` values become tags (non-strings as JSON)."""
        name = name or self.cfg.model_name
        if not self._has_model(name):
            self.client.create_registered_model(
                name, description="model F of a synthrec refresh loop"
            )
        tags = {
            k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in lineage.items()
        }
        made = self.client.create_model_version(name, model_uri, run_id=run_id, tags=tags)
        self.client.set_registered_model_alias(name, CANDIDATE, made.version)
        self._sync()
        return self.get(int(made.version), name)

    def promote(self, version: int, name: str | None = None) -> Version:
        """Point `production` at `version` (recorded in the production history)."""
        name = name or self.cfg.model_name
        target = self.get(version, name)
        history = self.production_history(name)
        if not history or history[-1] != version:
            history.append(version)
        self.client.set_registered_model_alias(name, PRODUCTION, str(version))
        self.client.set_registered_model_tag(name, "production_history", json.dumps(history))
        self._sync()
        return self.get(target.version, name)

    def rollback(self, name: str | None = None) -> Version:
        """Point `production` back at the version that served before the current one."""
        name = name or self.cfg.model_name
        history = self.production_history(name)
        if not history:
            raise RegistryError(
                f"model {name!r} has no production version to roll back from; promote one first"
            )
        if len(history) == 1:
            raise RegistryError(
                f"model {name!r}: version {history[0]} is the first production version; there "
                "is no earlier one to roll back to"
            )
        history.pop()
        self.client.set_registered_model_alias(name, PRODUCTION, str(history[-1]))
        self.client.set_registered_model_tag(name, "production_history", json.dumps(history))
        self._sync()
        return self.get(history[-1], name)

    def log_run(self, run_name: str, params: dict[str, Any], history: list[dict[str, Any]]) -> str:
        """An MLflow tracking run with `params` and per-epoch metrics (rank 0's, one dict per
        epoch, as the Train loop relays them); -> its run id."""
        exp = self.client.get_experiment_by_name(self.cfg.experiment)
        if exp is None:
            artifacts = filestore.join(self.root_uri, "registry", "artifacts")
            exp_id = self.client.create_experiment(self.cfg.experiment, artifact_location=artifacts)
        else:
            exp_id = exp.experiment_id
        run = self.client.create_run(exp_id, run_name=run_name)
        from mlflow.entities import Metric, Param

        flat = _flatten(params)
        metrics = [
            Metric(key.replace("@", "_at_"), float(value), 0, int(row.get("epoch", step)))
            for step, row in enumerate(history)
            for key, value in row.items()
            if isinstance(value, (int, float)) and key not in ("epoch", "resumed_from")
        ]
        self.client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param(k, str(v)[:500]) for k, v in flat.items()],
        )
        self.client.set_terminated(run.info.run_id)
        self._sync()
        return run.info.run_id

    def run_metrics(self, run_id: str) -> dict[str, list[float]]:
        """Per-epoch history of each metric of a tracking run."""
        run = self.client.get_run(run_id)
        return {
            key: [m.value for m in self.client.get_metric_history(run_id, key)]
            for key in run.data.metrics
        }

    # ------------------------------------------------------------------ helpers

    def _has_model(self, name: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            return False
        return True

    def _require_model(self, name: str) -> None:
        if not self._has_model(name):
            raise RegistryError(
                f"no registered model {name!r} in the registry at {self._uri_shown()}; a "
                "refresh registers one (`synthrec refresh`)"
            )

    def _uri_shown(self) -> str:
        return self._remote_db or self._uri

    def _version(self, mv) -> Version:
        return Version(
            name=mv.name,
            version=int(mv.version),
            model_uri=mv.source,
            aliases=sorted(mv.aliases or []),
            tags=dict(mv.tags or {}),
            run_id=mv.run_id or None,
            created_ms=int(mv.creation_timestamp or 0),
        )


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
