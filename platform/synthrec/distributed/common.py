"""Ray glue shared by training, generation and serving: no model math here.

`ensure_ray` starts (or joins) Ray once; `build_scaling_config` and `build_run_config` are
the one place where ScalingConfig and RunConfig are made, so every trainer treats storage,
checkpoints and failures alike.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from synthrec.config import ScalingSection, StorageConfig
from synthrec.errors import ClusterError, ConfigError, SynthrecError
from synthrec.storage import filesystem, is_s3

# Local Ray binds loopback only and sends no usage stats, unless the user says otherwise.
_LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Connect to `address` (or RAY_ADDRESS), or start a local Ray sized to this machine.

    No credentials travel in a runtime env (Ray writes runtime envs, values included, to its
    logs): a local Ray's workers inherit this process's environment, and cluster nodes hold
    their own (instance profile or their environment; `synthrec submit` forwards endpoints).
    """
    for key, value in _LOCAL_ENV.items():
        os.environ.setdefault(key, value)
    import ray

    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS")
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(
                num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False
            )
    except ConnectionError as err:
        raise ClusterError(
            f"cannot reach the Ray cluster at {address}: {err}; is `ray start --head` running?"
        ) from None
    return ray


def build_scaling_config(scaling: ScalingSection):
    """ScalingConfig from the typed section: fractional CPUs keep small machines from starving."""
    from ray.train import ScalingConfig

    resources: dict[str, float] = {"CPU": scaling.cpus_per_worker}
    if scaling.use_gpu:
        resources["GPU"] = scaling.gpus_per_worker
    return ScalingConfig(
        num_workers=scaling.num_workers, use_gpu=scaling.use_gpu, resources_per_worker=resources
    )


def run_storage(uri: str, storage: StorageConfig | None = None) -> tuple[str, Any]:
    """(storage_path, storage_filesystem) for RunConfig: S3 wants `bucket/prefix` and a
    filesystem."""
    fs, path = filesystem(uri, storage)
    return (path, fs) if is_s3(uri) else (path, None)


def build_run_config(
    name: str,
    storage_uri: str,
    storage: StorageConfig | None = None,
    num_to_keep: int = 2,
    max_failures: int = 0,
    worker_env: dict[str, str] | None = None,
):
    """RunConfig for a Train run. Reusing `name` with the same storage resumes that run.
    `worker_env`: environment variables for the Train workers only (never secrets: Ray logs
    runtime envs)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    path, fs = run_storage(storage_uri, storage)
    return RunConfig(
        name=name,
        storage_path=path,
        storage_filesystem=fs,
        checkpoint_config=CheckpointConfig(num_to_keep=num_to_keep),
        failure_config=FailureConfig(max_failures=max_failures),
        worker_runtime_env={"env_vars": worker_env} if worker_env else None,
    )


def new_run_name(prefix: str) -> str:
    """A fresh run name, so a new job never auto-resumes an old one by accident."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def resolve_run_name(
    prefix: str,
    run_name: str | None,
    resume: bool,
    runs_uri: str,
    storage: StorageConfig | None = None,
) -> str:
    """The Train run name: fresh unless named. Ray resumes any run whose name it finds in the
    run storage, so a named run that exists needs `resume`, and `resume` needs one that exists."""
    from synthrec.storage import exists, join

    if not run_name:
        return new_run_name(prefix)
    name = validate_run_name(run_name)
    found = exists(join(runs_uri, name), storage)
    if found and not resume:
        raise ConfigError(
            f"run {name} already exists under {runs_uri}; pass --resume to continue it "
            "or choose another --run-name"
        )
    if resume and not found:
        raise ConfigError(
            f"cannot resume run {name}: nothing under {runs_uri}/{name}; check --run-name "
            "and --checkpoint-uri"
        )
    return name


def validate_run_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", name):
        raise ConfigError(f"run name {name!r} must be letters, digits, '.', '_' or '-' (max 128)")
    return name


def fit_with_progress(trainer, events, progress: Callable[[dict], None] | None, what: str):
    """Run `trainer.fit()` in a thread; relay what rank 0 puts on the `events` queue to
    `progress` on this (driver) thread. A failed fit becomes one SynthrecError line."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = trainer.fit()
        except BaseException as err:  # surfaced on the driver thread below
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(timeout=0.5)
        while not events.empty():
            item = events.get_nowait()
            if progress:
                progress(item)
    if "error" in box:
        raise SynthrecError(f"{what} failed: {root_cause(box['error'])}") from None
    result = box["result"]
    if result.error:
        raise SynthrecError(f"{what} failed: {root_cause(result.error)}") from None
    return result


def root_cause(err: BaseException) -> str:
    """The last line of an error's message (Ray wraps worker errors in long traces)."""
    text = str(err).strip().splitlines()
    return text[-1] if text else type(err).__name__
