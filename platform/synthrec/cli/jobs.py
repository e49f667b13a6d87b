"""Shared entry of the job modules in synthrec.jobs (the targets of `ray job submit`).

`--config` takes a YAML file path or an inline JSON object (what `synthrec submit` ships);
further `key=value` arguments override dotted keys. The result is printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthrec.config import load_config, validate_config
from synthrec.errors import ConfigError, SynthrecError


def parse_job_config(cls, argv: list[str]):
    parser = argparse.ArgumentParser(description=f"synthrec job ({cls.__name__})")
    parser.add_argument("--config", help="YAML file or inline JSON object")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. rows=1000")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like key=value")
        overrides[key] = _scalar(value)
    text = (args.config or "").strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"--config is not valid JSON: {err}") from None
        for key, value in overrides.items():
            data[key] = value  # flat keys only for inline JSON
        return validate_config(cls, data, source="--config")
    return load_config(cls, Path(text) if text else None, overrides)


def _scalar(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def job_main(cls, run: Callable[..., Any]) -> None:
    """Validate the config, run, print a JSON summary; user errors exit 2 with one line."""
    try:
        cfg = parse_job_config(cls, sys.argv[1:])
        result = run(
            cfg,
            progress=lambda item: print(json.dumps({"progress": item}, default=str), flush=True),
        )
    except SynthrecError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps({"result": _plain(result)}, default=str, indent=2))


def _plain(result: Any) -> Any:
    if hasattr(result, "model_dump"):
        return result.model_dump()
    if hasattr(result, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(result)
    return result
