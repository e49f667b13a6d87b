"""Bearer API key: read once at replica start from a secret file or an env var.

Fail closed: with `api_key_required` (the default) a replica that finds no key refuses to
start instead of serving without auth, and `resolve_auth` (the driver, before deploying)
refuses a non-loopback host without a key unless `insecure` is set. Only a loopback server
without a key runs open.

The key itself never leaves this object: no repr, no log line, no error message holds it.
Only the place it came from (file path or variable name) is ever shown.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

from synthrec.config import ServeConfig
from synthrec.errors import ConfigError


class ApiKey:
    """`check(authorization_header)` is True when auth is off or the bearer token matches."""

    __slots__ = ("_key", "source")

    def __init__(self, key: str | None, source: str = "none"):
        self._key = key.encode() if key else None
        self.source = (
            source  # e.g. "env SYNTHREC_API_KEY" or "file /run/secrets/key"; never the key
        )

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def check(self, authorization: bytes | None) -> bool:
        if self._key is None:
            return True
        if not authorization or authorization[:7].lower() != b"bearer ":
            return False
        return hmac.compare_digest(authorization[7:].strip(), self._key)

    def __repr__(self) -> str:
        return f"ApiKey(enabled={self.enabled}, source={self.source!r})"


def load_api_key(cfg: ServeConfig) -> ApiKey:
    """The key from `cfg.api_key_file` (wins) or the env var `cfg.api_key_env`.

    No key found: auth off when `cfg.api_key_required` is false, else (true or unset)
    ConfigError: a replica that raises here never starts, so it cannot serve unauthenticated.
    """
    key = read_api_key(cfg)
    if not key.enabled and cfg.api_key_required is not False:
        where = f"env {cfg.api_key_env} is unset or empty" if cfg.api_key_env else "no api_key_env"
        raise ConfigError(
            f"api_key_required: no API key here ({where} and api_key_file is not set); set the "
            "variable on every node that runs replicas (or mount api_key_file), or set "
            "api_key_required: false to serve without auth on loopback"
        )
    return key


def read_api_key(cfg: ServeConfig) -> ApiKey:
    """The configured key, or a disabled ApiKey when neither the file nor the variable is set."""
    if cfg.api_key_file:
        path = Path(cfg.api_key_file)
        try:
            key = path.read_text().strip()
        except OSError as err:
            raise ConfigError(
                f"api_key_file {path}: cannot be read ({err.strerror}); "
                "point it at a readable file holding the key"
            ) from None
        if not key:
            raise ConfigError(
                f"api_key_file {path} is empty; write the key into it or unset api_key_file"
            )
        return ApiKey(key, f"file {path}")
    if cfg.api_key_env and os.environ.get(cfg.api_key_env, "").strip():
        return ApiKey(os.environ[cfg.api_key_env].strip(), f"env {cfg.api_key_env}")
    return ApiKey(None)


def resolve_auth(cfg: ServeConfig) -> tuple[ServeConfig, ApiKey]:
    """On the driver, before deploying: the config the replicas get and the key found here.

    A key here: replicas require one too. No key: allowed on a loopback host (replicas then run
    open) or with `insecure`; a non-loopback host, or `api_key_required: true`, without a key
    is a ConfigError naming the fix.
    """
    key = read_api_key(cfg)
    if key.enabled:
        return cfg.model_copy(update={"api_key_required": True}), key
    fix = f"set {cfg.api_key_env or 'api_key_env'} or api_key_file"
    if not is_loopback(cfg.host) and not cfg.insecure:
        raise ConfigError(
            f"host {cfg.host}: refusing to serve beyond loopback without an API key; {fix} "
            "(and terminate TLS in front, see serve/README.md), or pass --insecure "
            "(insecure: true) to serve without auth anyway"
        )
    if cfg.api_key_required:
        raise ConfigError(f"api_key_required is true but no API key is set; {fix}")
    return cfg.model_copy(update={"api_key_required": False}), key


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost; every other address or name may be reachable from outside."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
