"""Submit a job (`python -m synthrec.jobs.NAME`) to a Ray cluster's job API, follow its logs,
report how it ended.

Ray glue only. What travels with a job:
- the synthrec package the submitter runs as a `py_module` (a checkout's `platform/synthrec`,
  else the installed package), which comes first on the workers' path, so a job runs the code
  it was submitted with even where the nodes have an older synthrec installed; from a
  checkout, also the project folder as `working_dir` (without venvs, git, outputs and bench
  results). The entrypoint is the module, so no checkout is needed on either side;
- the job's config as one inline JSON argument (`--config '{...}'`, which every job accepts
  besides a YAML path), validated here against the job module's `CONFIG` (deprecated key
  names are renamed, with a warning) and again by the job;
- S3 endpoint and region variables, and variables named with `--env`. Never secrets: Ray
  writes a job's runtime env, values included, to runtime_env_agent.log on every node, and
  prints the entrypoint in the job's log and the dashboard. So secret-looking variables and
  config keys are refused; credentials belong to the cluster (the instance profile on AWS, a
  Kubernetes Secret, or the nodes' environment at `ray start` for a self-hosted S3).
No printing here: log chunks go to a callback; errors are `ClusterError`/`ConfigError`.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import pkgutil
import re
import secrets
import shlex
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import synthrec.config as config_module
import synthrec.jobs as job_modules
from synthrec.config import validate_config
from synthrec.errors import ClusterError, ConfigError

JOBS_DIR = "jobs"  # a checkout's thin wrappers around synthrec.jobs (how a checkout is found)
# gitwildmatch patterns relative to the project root (Ray's `excludes`). No trailing slashes:
# Ray tests a folder's own path without one, and a match there skips the whole folder.
WORKING_DIR_EXCLUDES = [
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    "*.egg-info",
    ".pytest_cache",
    ".ray",
    "/out",
    "/demo-output",
    "/bench/results",
    "/build",
    "/dist",
]
FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION")
EXIT_CODES = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 3}
# Whole name parts, so `secret_access_key`, `AWS_SESSION_TOKEN` match and `max_tokens` does not.
SECRET_NAME = re.compile(
    r"(^|_)(secret|token|password|passwd|credentials?)(_|$)|(access|private|api)_?key", re.I
)


@dataclass(frozen=True)
class JobSpec:
    """Everything one submission sends. `runtime_env` holds real values: never log it."""

    job: str
    project_dir: Path | None  # None: no checkout; nothing but the package travels
    entrypoint: str
    runtime_env: dict[str, Any]
    submission_id: str

    def ray_job_submit_command(self, address: str, cwd: Path | None = None) -> str:
        """The plain `ray job submit` equivalent; runs from the project root, if there is one."""
        env = {k: v for k, v in self.runtime_env.items() if k != "working_dir"}
        if self.project_dir is not None and "py_modules" in env:
            env["py_modules"] = [os.path.relpath(p, self.project_dir) for p in env["py_modules"]]
        working_dir = "--working-dir . " if self.project_dir is not None else ""
        command = (
            f"ray job submit --address {shlex.quote(address)} {working_dir}"
            f"--runtime-env-json {shlex.quote(json.dumps(env, separators=(',', ':')))} "
            f"-- {self.entrypoint}"
        )
        here = Path(cwd or Path.cwd()).resolve()
        if self.project_dir is not None and here != self.project_dir.resolve():
            command = f"cd {shlex.quote(str(self.project_dir))} && {command}"
        return command


@dataclass(frozen=True)
class JobOutcome:
    """How a followed job ended; `exit_code` is what `synthrec submit` exits with."""

    job_id: str
    status: str
    message: str
    log_tail: tuple[str, ...]
    driver_exit_code: int | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.status, 1)


def secret_keys(values: Any, prefix: str = "") -> list[str]:
    """Dotted keys of secret-looking entries that hold a value."""
    found: list[str] = []
    if isinstance(values, dict):
        for key, value in values.items():
            path = f"{prefix}{key}"
            if SECRET_NAME.search(str(key)) and value not in (None, ""):
                found.append(path)
            else:
                found += secret_keys(value, f"{path}.")
    return found


# ---------------------------------------------------------------- what gets submitted


def find_project_dir(start: Path | None = None) -> Path | None:
    """The synthrec checkout: the first folder at or above `start` (default: cwd) with jobs/ and
    pyproject.toml, else the checkout the imported package lives in; None for an installed
    synthrec used outside a checkout (jobs then run from the package alone)."""
    here = Path(start or Path.cwd()).resolve()
    package_root = Path(config_module.__file__).resolve().parents[2]
    for candidate in [here, *here.parents, package_root]:
        if (candidate / JOBS_DIR).is_dir() and (candidate / "pyproject.toml").is_file():
            return candidate
    return None


def available_jobs() -> list[str]:
    """Names of the job modules in `synthrec.jobs` (private `_*` modules left out)."""
    return sorted(
        m.name for m in pkgutil.iter_modules(job_modules.__path__) if not m.name.startswith("_")
    )


def project_scripts(project_dir: Path | None) -> list[str]:
    """A checkout's own job scripts (jobs/NAME.py) that are not synthrec's jobs."""
    if project_dir is None or not (project_dir / JOBS_DIR).is_dir():
        return []
    ours = set(available_jobs())
    found = (p.stem for p in (project_dir / JOBS_DIR).glob("*.py") if not p.stem.startswith("_"))
    return sorted(n for n in found if n not in ours)


def job_name(job: str) -> str:
    """`simulate` from `simulate`, `simulate.py`, `jobs/simulate.py` or `synthrec.jobs.simulate`."""
    return job.removesuffix(".py").removeprefix(f"{JOBS_DIR}/").removeprefix("synthrec.jobs.")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A job config YAML as a plain mapping (validated later against the job's config class)."""
    return config_module._read_yaml(Path(path))


def build_job_spec(
    job: str,
    project_dir: Path | None,
    config: dict[str, Any] | None = None,
    env_names: Sequence[str] = (),
    config_source: str = "config",
) -> JobSpec:
    """Check the job name, the config and the env names; build the submission. `project_dir`
    (a checkout) travels as the working dir; without one only the package travels."""
    name = job_name(job)
    jobs = available_jobs()
    script = project_dir / JOBS_DIR / f"{name}.py" if project_dir is not None else None
    own_script = name not in jobs and script is not None and script.is_file()
    if name not in jobs and not own_script:
        extra = project_scripts(project_dir)
        listed = ", ".join(jobs) + (
            f"; in {project_dir / JOBS_DIR}: {', '.join(extra)}" if extra else ""
        )
        raise ConfigError(f"unknown job '{job}': available jobs: {listed}")
    data = dict(config or {})
    if secrets_in := secret_keys(data):
        raise ConfigError(
            f"{config_source}: {', '.join(secrets_in)} would travel in the job's command line, "
            "which Ray shows in job logs and the dashboard; remove it and give the cluster its "
            "credentials (instance profile on AWS, or AWS_* variables in the nodes' environment "
            "at `ray start`)"
        )
    # Validated here, so bad input fails in seconds, not on the cluster; the job gets the
    # config under current key names.
    if not own_script:  # a project's own script gets its config as given
        config_cls = importlib.import_module(f"synthrec.jobs.{name}").CONFIG
        cfg = validate_config(config_cls, data, source=config_source)
        data = cfg.model_dump(mode="json", exclude_unset=True)
    runtime_env: dict[str, Any] = {
        "excludes": list(WORKING_DIR_EXCLUDES),
        "env_vars": forwarded_env(env_names),
    }
    package_dir = Path(job_modules.__file__).resolve().parents[1]  # the running synthrec
    if project_dir is not None:
        runtime_env = {"working_dir": str(project_dir), **runtime_env}
        if (project_dir / "platform" / "synthrec").is_dir():
            package_dir = project_dir / "platform" / "synthrec"
    runtime_env["py_modules"] = [str(package_dir)]
    target = [f"{JOBS_DIR}/{name}.py"] if own_script else ["-m", f"synthrec.jobs.{name}"]
    entrypoint = shlex.join(
        ["python", *target, "--config", json.dumps(data, separators=(",", ":"))]
    )
    submission_id = f"synthrec-{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    return JobSpec(name, project_dir, entrypoint, runtime_env, submission_id)


def forwarded_env(
    extra_names: Sequence[str] = (), environ: dict[str, str] | None = None
) -> dict[str, str]:
    """Environment variables the job gets from this machine: S3 endpoint/region, plus
    `extra_names`."""
    env = os.environ if environ is None else environ
    names = [n for n in FORWARDED_ENV if env.get(n)]
    for name in extra_names:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(
                f"--env {name!r}: give a variable name such as MY_VAR "
                "(its value is read from your environment)"
            )
        if SECRET_NAME.search(name):
            raise ConfigError(
                f"--env {name}: looks like a secret, and Ray logs a job's environment on every "
                "node (runtime_env_agent.log); give the cluster its credentials instead "
                "(instance profile, Kubernetes Secret, or the nodes' environment at `ray start`)"
            )
        if name not in env:
            raise ConfigError(f"--env {name}: the variable is not set here; export it first")
        names.append(name)
    return {n: env[n] for n in dict.fromkeys(names)}


# ---------------------------------------------------------------- talking to the cluster


def normalize_address(address: str) -> str:
    """`HOST:PORT` or `http(s)://HOST:PORT` -> `http(s)://HOST:PORT` (no trailing slash)."""
    addr = address.strip().rstrip("/")
    if "://" not in addr:
        addr = f"http://{addr}"
    parts = urlsplit(addr)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"--address {address!r}: give the head node's job API as http://HOST:PORT "
            "(the dashboard port, 8265 by default), not a ray:// or GCS address"
        )
    return addr


def connect(address: str, timeout_s: float = 5.0):
    """A `JobSubmissionClient` for `address`, after a quick reachability and auth check.

    Ray's own client has no connect timeout; this check fails in `timeout_s` at most, with a
    message that says what to fix (head down, wrong port, missing or wrong token).
    """
    import requests
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    url = normalize_address(address)
    mode = _server_auth_mode(requests, url, timeout_s)
    if mode == "token" and os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        raise ClusterError(
            f"{url} uses Ray token authentication: set RAY_AUTH_MODE=token and provide the "
            "cluster's token (~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN; print it "
            "on the head with `ray get-auth-token`)"
        )
    try:
        return JobSubmissionClient(url)
    except AuthenticationError:
        raise ClusterError(
            f"{url} rejected the Ray token: use the token the cluster was started with "
            "(on the head: `ray get-auth-token`) in ~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or "
            "RAY_AUTH_TOKEN"
        ) from None
    except (ConnectionError, RuntimeError, requests.exceptions.RequestException) as err:
        raise ClusterError(
            f"the Ray job API at {url} failed its version check: {_first_line(err)}"
        ) from None


def _server_auth_mode(requests, url: str, timeout_s: float) -> str:
    """The cluster's auth mode from a public endpoint; raises ClusterError if it cannot be
    reached."""
    hint = (
        "is the head node running, and is this its dashboard port (8265 by default)? "
        "A private cluster is reached through `ray dashboard cluster.yaml` at http://127.0.0.1:8265"
    )
    try:
        r = requests.get(f"{url}/api/authentication_mode", timeout=timeout_s)
    except requests.exceptions.ConnectTimeout:
        raise ClusterError(f"no answer from {url} within {timeout_s:.0f} s: {hint}") from None
    except requests.exceptions.RequestException as err:
        raise ClusterError(
            f"cannot reach the Ray job API at {url} ({_reason(err)}): {hint}"
        ) from None
    try:
        r.raise_for_status()
        return str(r.json()["authentication_mode"])
    except (requests.exceptions.HTTPError, ValueError, KeyError, TypeError):
        raise ClusterError(
            f"{url} answered (HTTP {r.status_code}) but not as the job API of a Ray head: {hint}"
        ) from None


def submit_job(client, spec: JobSpec) -> str:
    """Upload the working dir and start the job; returns its submission id."""
    try:
        return client.submit_job(
            entrypoint=spec.entrypoint,
            runtime_env=spec.runtime_env,
            submission_id=spec.submission_id,
            metadata={"synthrec_job": spec.job},
        )
    except Exception as err:  # Ray raises RuntimeError/ValueError/RuntimeEnvSetupError here
        raise ClusterError(
            f"submitting job '{spec.job}' to {client.get_address()} failed: {_first_line(err)}"
        ) from None


def follow_job(
    client,
    job_id: str,
    on_log: Callable[[str], None],
    *,
    liveness_every_s: float = 10.0,
    tail_lines: int = 20,
) -> JobOutcome:
    """Stream the job's logs to `on_log` until it ends; return its final status and last log lines.

    While the log stream is quiet the head is probed every `liveness_every_s` seconds; three
    failed probes in a row end the wait with a ClusterError (a lost host sends no close frame).
    """
    import aiohttp

    tail: deque[str] = deque(maxlen=tail_lines)

    def emit(chunk: str) -> None:
        on_log(chunk)
        tail.extend(chunk.splitlines())

    address = client.get_address()
    try:
        asyncio.run(_stream_logs(client, job_id, emit, liveness_every_s))
    except (RuntimeError, aiohttp.ClientError, OSError) as err:
        raise ClusterError(
            f"lost the connection to {address} while following job {job_id} ({_first_line(err)}): "
            "the head node may have stopped; check with "
            f"`ray job status {job_id} --address {address}`"
        ) from None
    info = _terminal_info(client, job_id)
    status = str(getattr(info.status, "value", info.status))
    return JobOutcome(job_id, status, info.message or "", tuple(tail), info.driver_exit_code)


async def _stream_logs(
    client, job_id: str, emit: Callable[[str], None], liveness_every_s: float
) -> None:
    async def consume() -> None:
        async for chunk in client.tail_job_logs(job_id):
            emit(chunk)

    task = asyncio.ensure_future(consume())
    failures = 0
    while True:
        done, _ = await asyncio.wait({task}, timeout=liveness_every_s)
        if done:
            return task.result()
        failures = (
            0 if await asyncio.to_thread(_head_answers, client.get_address()) else failures + 1
        )
        if failures >= 3:
            task.cancel()
            raise ClusterError(
                f"the head node at {client.get_address()} stopped answering while job {job_id} "
                "ran; "
                f"check with `ray job status {job_id} --address {client.get_address()}`"
            )


def _head_answers(url: str) -> bool:
    import requests

    try:
        return requests.get(f"{url}/api/gcs_healthz", timeout=5).status_code == 200
    except requests.exceptions.RequestException:
        return False


def _terminal_info(client, job_id: str, wait_s: float = 30.0):
    """Job info once the status is terminal (the log stream can close a moment before)."""
    deadline = time.monotonic() + wait_s
    while True:
        info = client.get_job_info(job_id)
        if info.status.is_terminal() or time.monotonic() > deadline:
            return info
        time.sleep(0.5)


def _reason(err: BaseException) -> str:
    """'Connection refused' from requests' long wrapped messages."""
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(err))
    return found.group(1).strip() if found else type(err).__name__


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
