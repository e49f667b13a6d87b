"""One model-directory format for every model kind: a JSON header, metadata, the kind's files.

A model directory is a set of named files published atomically by `synthrec.storage`. Every
kind writes the same two JSON files and adds its own weights and tables beside them:

    config.json     the header: {"format_version": 2, "kind": "row-gan" | "recommender" | ...,
                    "schema": the columns the model reads and their roles,
                    "config": the model's config section (validated again on load),
                    "state": the kind's JSON-only state (encoder vocabularies, network spec)}
    metadata.json   facts about the model: version, training-data fingerprint, training log
    *.safetensors, *.parquet   the kind's weights and tables (never pickles)

`read_model_dir` checks the header and turns every mismatch, missing key, missing file,
invalid JSON or invalid config into a `ModelError` naming the file, the key and what was
expected. Directories of format 1 (before this header; row GAN `"format": 1`, recommender
`"format": "synthrec-recommender"`) load transparently: `_upgrade` rewrites their header in
memory. Re-saving such a model writes format 2.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError
from safetensors import SafetensorError

from synthrec import storage as store
from synthrec.config import StorageConfig, validate_config
from synthrec.errors import ConfigError, ModelError
from synthrec.storage import Manifest

FORMAT_VERSION = 2
ModelKind = Literal["row-gan", "recommender", "sequence"]
HEADER = "config.json"
METADATA = "metadata.json"
HEADER_KEYS = ("format_version", "kind", "schema", "config", "state")
C = TypeVar("C", bound=BaseModel)


@dataclass
class ModelDir:
    """A model directory read back: the checked header, metadata and the kind's files."""

    uri: str
    kind: str
    schema: dict[str, Any]
    config: Any  # the validated config section (the class given to read_model_dir)
    state: dict[str, Any]
    metadata: dict[str, Any]
    files: dict[str, bytes]

    def part(self, key: str) -> Any:
        """The header's `state[key]`; a ModelError naming the file and key when it is absent."""
        if key not in self.state:
            raise ModelError(
                f"{self.uri}/{HEADER}: missing key 'state.{key}' (found "
                f"{', '.join(sorted(self.state)) or 'none'}); re-save the model"
            )
        return self.state[key]

    def reading(self, name: str) -> AbstractContextManager[None]:
        """Context in which what a malformed `name` (file or state key) raises is a ModelError."""
        return reading(f"{self.uri}/{name}")


@contextmanager
def reading(where: str) -> Iterator[None]:
    """Turn what reading a malformed file or key raises into a `ModelError` naming `where`."""
    try:
        yield
    except KeyError as err:
        raise ModelError(
            f"{where}: missing key {err}; the directory is incomplete, re-save the model"
        ) from None
    except (ValidationError, ConfigError) as err:
        raise ModelError(f"{where}: invalid ({_first_line(err)}); re-save the model") from None
    except (ValueError, TypeError, RuntimeError, SafetensorError) as err:
        raise ModelError(
            f"{where}: unreadable ({type(err).__name__}: {_first_line(err)}); re-save the model"
        ) from None


def model_files(
    kind: ModelKind,
    schema: dict[str, Any],
    config: BaseModel,
    state: dict[str, Any],
    metadata: dict[str, Any],
    parts: dict[str, bytes],
) -> dict[str, bytes]:
    """The directory's files as bytes: the header, metadata.json and the kind's `parts`."""
    clash = {HEADER, METADATA} & set(parts)
    assert not clash, f"{kind} parts may not be named {clash}"
    header = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "schema": schema,
        "config": config.model_dump(mode="json"),
        "state": state,
    }
    return {
        HEADER: json.dumps(header, indent=1, default=_json_default).encode(),
        METADATA: json.dumps(metadata, indent=1, default=_json_default).encode(),
        **parts,
    }


def publish_model_dir(
    uri: str,
    files: dict[str, bytes],
    storage: StorageConfig | None = None,
    version: str | None = None,
) -> Manifest:
    """Publish `files` (from `model_files`) atomically; the manifest records kind and version."""
    header = json.loads(files[HEADER])
    metadata = {"format_version": header["format_version"], "kind": header["kind"]}
    if version is not None:
        metadata["version"] = version
    return store.publish_files(uri, files, storage, metadata=metadata)


def read_kind(
    uri: str,
    storage: StorageConfig | None = None,
    manifest: store.Manifest | None = None,
    files: dict[str, bytes] | None = None,
) -> str:
    """The kind named in the header of the model directory at `uri` (format 1 headers
    included), reading only the header: callers that load any of several kinds dispatch on
    it before `read_model_dir`. `files`: the directory's files, already read and checked
    against its manifest (by a driver that shares them with its workers)."""
    if files is None:
        files = store.read_files(uri, [HEADER], storage, manifest=manifest)
    header, _ = _upgrade(uri, _parse_json(uri, HEADER, files.get(HEADER), files))
    if "kind" not in header:
        raise ModelError(
            f"{uri}/{HEADER}: missing key 'kind' (a model header has "
            f"{', '.join(HEADER_KEYS)}); re-save the model with this synthrec"
        )
    return str(header["kind"])


def read_model_dir(
    uri: str,
    kind: ModelKind,
    config_cls: type[C],
    parts: tuple[str, ...],
    storage: StorageConfig | None = None,
    manifest: store.Manifest | None = None,
    files: dict[str, bytes] | None = None,
) -> ModelDir:
    """Read and check the model directory at `uri`: its kind, format, config and files.

    All files come from one manifest read (or from `manifest`, read once by a driver), so a
    model republished meanwhile is never mixed. `files`: all of them, already read and
    checked against the manifest (`storage.read_files`), e.g. by a driver for its workers."""
    if files is None:
        files = store.read_files(uri, None, storage, manifest=manifest)
    header = _parse_json(uri, HEADER, files.get(HEADER), files)
    header, legacy_metadata = _upgrade(uri, header)
    missing = [k for k in HEADER_KEYS if k not in header]
    if missing:
        raise ModelError(
            f"{uri}/{HEADER}: missing key(s) {', '.join(missing)} (a model header has "
            f"{', '.join(HEADER_KEYS)}); re-save the model with this synthrec"
        )
    version = header["format_version"]
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise ModelError(
            f"{uri}/{HEADER}: format_version {version!r}, this synthrec reads {FORMAT_VERSION}"
            f" (and format 1); "
            + ("upgrade synthrec to load it" if newer else "re-save the model with this synthrec")
        )
    if header["kind"] != kind:
        raise ModelError(
            f"{uri}/{HEADER}: kind {header['kind']!r}, expected {kind!r}; "
            f"pass a {kind} model directory here"
        )
    for key in ("schema", "state"):
        if not isinstance(header[key], dict):
            raise ModelError(
                f"{uri}/{HEADER}: key '{key}' must be a mapping, found "
                f"{type(header[key]).__name__}; re-save the model"
            )
    lacking = [n for n in parts if n not in files]
    if lacking:
        raise ModelError(
            f"{uri} lacks {', '.join(lacking)} (a {kind} model directory holds "
            f"{', '.join((HEADER, METADATA, *parts))}; it holds {', '.join(sorted(files))}); "
            "re-save the model"
        )
    try:
        config = validate_config(config_cls, header["config"], source=f"{uri}/{HEADER} config")
    except ConfigError as err:
        raise ModelError(f"{err}; re-save the model with this synthrec") from None
    metadata = legacy_metadata
    if metadata is None:
        metadata = _parse_json(uri, METADATA, files.get(METADATA), files)
    return ModelDir(uri, kind, header["schema"], config, header["state"], metadata, files)


def _parse_json(uri: str, name: str, data: bytes | None, files: dict[str, bytes]) -> dict:
    if data is None:
        raise ModelError(
            f"{uri} lacks {name} (it holds {', '.join(sorted(files))}); "
            "it is not a synthrec model directory, or an incomplete one: re-save the model"
        )
    try:
        value = json.loads(data)
    except ValueError as err:
        raise ModelError(f"{uri}/{name} is not valid JSON ({err}); re-save the model") from None
    if not isinstance(value, dict):
        raise ModelError(
            f"{uri}/{name}: expected a JSON object, found {type(value).__name__}; re-save the model"
        )
    return value


def _upgrade(uri: str, header: dict[str, Any]) -> tuple[dict[str, Any], dict | None]:
    """A format 1 header (one per kind, before the common header) rewritten as format 2, and
    the metadata it carried where that format had no metadata.json (None: read the file)."""
    old = header.get("format")
    if old is None or "format_version" in header:
        return header, None
    with reading(f"{uri}/{HEADER}"):
        if old == 1:  # row GAN: config.json + metadata.json, the GAN config as "gan_config"
            return {
                "format_version": FORMAT_VERSION,
                "kind": "row-gan",
                "schema": header["schema"],
                "config": header["gan_config"],
                "state": {"encoder": header["encoder"]},
            }, None
        if old == "synthrec-recommender" and header.get("version") == 1:  # no metadata.json
            return {
                "format_version": FORMAT_VERSION,
                "kind": "recommender",
                "schema": {"columns": header["encoder"]["columns"]},
                "config": header["config"],
                "state": {"model_spec": header["model_spec"], "encoder": header["encoder"]},
            }, {"training": header.get("training", {})}
    raise ModelError(
        f"{uri}/{HEADER}: unknown model format {old!r} (version {header.get('version')!r}); "
        f"this synthrec reads format_version {FORMAT_VERSION} and format 1; retrain the model"
    )


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [""])[0]


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"metadata value of type {type(value).__name__} is not JSON serializable")
