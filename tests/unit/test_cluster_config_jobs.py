"""What `synthrec submit` sends (distributed/jobs.py), checked without a cluster."""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
from pathlib import Path

import pytest

from synthrec.distributed import jobs
from synthrec.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "simulate.py").write_text("")
    (tmp_path / "jobs" / "tiny.py").write_text("")
    (tmp_path / "jobs" / "_helpers.py").write_text("")
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "platform" / "synthrec").mkdir(parents=True)
    return tmp_path


ALL_JOBS = "evaluate, generate, pipeline, refresh, simulate, train_gan, train_recommender, tune"


def test_jobs_unknown_job_lists_the_available_ones(project):
    with pytest.raises(
        ConfigError, match=rf"unknown job 'simulat': available jobs: {ALL_JOBS}; in .*jobs: tiny$"
    ):
        jobs.build_job_spec("simulat", project)


def test_jobs_a_projects_own_script_is_submitted_as_that_script(project):
    spec = jobs.build_job_spec("tiny", project, {"anything": 1})
    assert spec.entrypoint.startswith("python jobs/tiny.py --config")
    assert spec.runtime_env["working_dir"] == str(project)


def test_jobs_config_is_validated_before_submission(project):
    with pytest.raises(ConfigError, match="key 'rows'"):
        jobs.build_job_spec("simulate", project, {"rows": 0})
    with pytest.raises(ConfigError, match="unknown key 'rowz'"):
        jobs.build_job_spec("simulate", project, {"rowz": 5})
    with pytest.raises(ConfigError, match="unknown key 'rowz'"):
        jobs.build_job_spec("evaluate", project, {"rowz": 5})


def test_jobs_evaluate_is_submitted_as_a_module_with_its_validated_config(project):
    with pytest.warns(FutureWarning, match="'real' is deprecated"):
        spec = jobs.build_job_spec("evaluate", project, {"real": "s3://b/r", "synthetic_uri": "x"})
    argv = shlex.split(spec.entrypoint)
    assert argv[:4] == ["python", "-m", "synthrec.jobs.evaluate", "--config"]
    assert json.loads(argv[4]) == {"real_uri": "s3://b/r", "synthetic_uri": "x"}


def test_jobs_outside_a_checkout_only_the_running_package_travels(tmp_path):
    import synthrec

    assert jobs.find_project_dir(tmp_path) in (None, REPO)  # REPO: the package's own checkout
    spec = jobs.build_job_spec("synthrec.jobs.simulate", None, {"rows": 10})
    assert "working_dir" not in spec.runtime_env
    assert spec.runtime_env["py_modules"] == [str(Path(synthrec.__file__).resolve().parent)]
    command = spec.ray_job_submit_command("http://h:8265", cwd=tmp_path)
    assert command.startswith("ray job submit --address http://h:8265 --runtime-env-json ")
    assert "-- python -m synthrec.jobs.simulate --config" in command


def test_jobs_spec_uploads_the_project_without_venv_git_or_outputs(project):
    with pytest.warns(FutureWarning, match="'out' is deprecated, use 'out_uri'"):
        spec = jobs.build_job_spec("simulate.py", project, {"rows": 10, "out": "s3://b/x"})
    env = spec.runtime_env
    assert env["working_dir"] == str(project)
    assert env["py_modules"] == [str(project / "platform" / "synthrec")]
    assert env["excludes"] == jobs.WORKING_DIR_EXCLUDES
    argv = shlex.split(spec.entrypoint)
    assert argv[:4] == ["python", "-m", "synthrec.jobs.simulate", "--config"]
    assert json.loads(argv[4]) == {"rows": 10, "out_uri": "s3://b/x"}  # current key names
    assert spec.submission_id.startswith("synthrec-simulate-")


def _ray_pathspec():
    """The gitwildmatch matcher Ray applies to `excludes`, loaded without importing ray."""
    root = (
        Path(importlib.util.find_spec("ray").origin).parent / "_private" / "thirdparty" / "pathspec"
    )
    spec = importlib.util.spec_from_file_location(
        "_ray_pathspec", root / "__init__.py", submodule_search_locations=[str(root)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.PathSpec


def test_jobs_excludes_skip_what_must_not_travel():
    spec = _ray_pathspec().from_lines("gitwildmatch", jobs.WORKING_DIR_EXCLUDES)
    # Ray tests each folder's own relative path (no trailing slash) and prunes it on a match.
    for path in [
        ".venv",
        ".git",
        "out",
        "demo-output",
        "bench/results",
        "platform/synthrec/__pycache__",
        "platform/synthrec.egg-info",
        ".pytest_cache",
    ]:
        assert spec.match_file(path), path
    for path in [
        "jobs",
        "jobs/simulate.py",
        "platform/synthrec",
        "platform/synthrec/storage.py",
        "bench",
        "bench/run.py",
        "tests/out",
        "serve/config.yaml",
    ]:
        assert not spec.match_file(path), path


def test_jobs_forward_s3_endpoint_and_region_but_never_credentials():
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:8333",
        "AWS_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "key-id-value",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t",
        "AWS_SESSION_TOKEN": "t",
    }
    assert jobs.forwarded_env(environ=env) == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:8333",
        "AWS_REGION": "eu-west-1",
    }
    assert jobs.forwarded_env(["MY_FLAG"], environ={"MY_FLAG": "1"}) == {"MY_FLAG": "1"}
    for secret in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "HF_TOKEN", "DB_PASSWORD"):
        with pytest.raises(ConfigError, match="looks like a secret"):
            jobs.forwarded_env([secret], environ={secret: "x"})
    with pytest.raises(ConfigError, match="not set here"):
        jobs.forwarded_env(["MISSING"], environ={})
    with pytest.raises(ConfigError, match="give a variable name"):
        jobs.forwarded_env(["A=b"], environ={})


def test_jobs_printed_command_is_the_plain_ray_equivalent_from_the_project(project, monkeypatch):
    for name in (
        "AWS_ENDPOINT_URL_S3",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ):  # set by the session's S3 fixture
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8333")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    spec = jobs.build_job_spec(
        "evaluate", project, {"real_uri": "r", "storage": {"endpoint_url": "http://e"}}
    )
    command = spec.ray_job_submit_command("http://127.0.0.1:8265", cwd=project)
    assert "s3cr3t-value" not in command and "s3cr3t-value" not in json.dumps(spec.runtime_env)
    assert command.startswith("ray job submit --address http://127.0.0.1:8265 --working-dir . ")
    argv = shlex.split(command)
    runtime_env = json.loads(argv[argv.index("--runtime-env-json") + 1])
    assert runtime_env == {
        "excludes": jobs.WORKING_DIR_EXCLUDES,
        "py_modules": ["platform/synthrec"],
        "env_vars": {"AWS_ENDPOINT_URL": "http://127.0.0.1:8333"},
    }
    assert argv[argv.index("--") + 1 :] == shlex.split(spec.entrypoint)
    assert json.loads(argv[argv.index("--config") + 1]) == {
        "real_uri": "r",
        "storage": {"endpoint_url": "http://e"},
    }
    assert spec.ray_job_submit_command("http://h:8265", cwd=project.parent).startswith(
        f"cd {project} && ray job submit"
    )


def test_jobs_refuse_secrets_in_the_config_that_would_show_in_job_logs(project):
    config = {"rows": 10, "storage": {"secret_access_key": "yaml-secret", "access_key_id": None}}
    with pytest.raises(
        ConfigError, match=r"sim.yaml: storage.secret_access_key would travel"
    ) as err:
        jobs.build_job_spec("evaluate", project, config, config_source="sim.yaml")
    assert "yaml-secret" not in str(err.value)
    jobs.build_job_spec("evaluate", project, {"storage": {"secret_access_key": None}})  # unset ok


def test_jobs_address_is_normalized_or_rejected():
    assert jobs.normalize_address("127.0.0.1:8265/") == "http://127.0.0.1:8265"
    assert jobs.normalize_address(" https://head:443 ") == "https://head:443"
    with pytest.raises(ConfigError, match="not a ray:// or GCS address"):
        jobs.normalize_address("ray://head:10001")


def test_jobs_find_project_dir_walks_up_from_a_subfolder(project):
    (project / "platform" / "synthrec" / "deep").mkdir()
    assert jobs.find_project_dir(project / "platform" / "synthrec" / "deep") == project.resolve()
    assert jobs.find_project_dir(Path("/")) == REPO  # falls back to the checkout of the package


def test_jobs_exit_codes_follow_the_job_status():
    assert [
        jobs.JobOutcome("j", s, "", ()).exit_code for s in ("SUCCEEDED", "FAILED", "STOPPED")
    ] == [0, 1, 3]
