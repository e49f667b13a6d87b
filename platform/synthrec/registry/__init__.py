"""The model registry (MLflow): versions of model F, their lineage and the production alias."""

from synthrec.registry.store import (
    CANDIDATE,
    PRODUCTION,
    Registry,
    RegistryError,
    Version,
    registry_db_uri,
)

__all__ = ["CANDIDATE", "PRODUCTION", "Registry", "RegistryError", "Version", "registry_db_uri"]
