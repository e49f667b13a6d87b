"""Optional bearer API key: read once at replica start from a secret file or an env var.

The key itself never leaves this object: no repr, no log line, no error message holds it.
Only the place it came from (file path or variable name) is ever shown.
"""

from __future__ import annotations

import hmac
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
    """The key from `cfg.api_key_file` (wins) or the env var `cfg.api_key_env`; neither set: auth off."""
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
