"""Ray Data generation: exact, deterministic, conditional, atomic, and re-runnable after a kill."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import synthrec
from synthrec import storage
from synthrec.config import GanConfig, GenerateConfig, StorageConfig
from synthrec.distributed.generate import content_key, run_generate
from synthrec.errors import ConditionError, ModelError, StorageError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model_uri(ml100k_dir, tmp_path_factory):
    """A small GAN fitted in-process on 5,000 ML-100K rows, published to a local folder."""
    from synthrec.artifacts import save_synthesizer
    from synthrec.gan.synthesizer import Synthesizer

    table = pq.read_table(ml100k_dir / "events.parquet").slice(0, 5_000).drop(["timestamp"])
    cfg = GanConfig(
        batch_size=200,
        generator_dims=[64],
        critic_dims=[64],
        embedding_dim=32,
        sample_batch_rows=4_096,
    )
    synth = Synthesizer().fit(table, cfg=cfg, epochs=1)
    uri = str(tmp_path_factory.mktemp("models") / "gan")
    save_synthesizer(synth, uri)
    return uri


def _gen(model_uri, out, **kw) -> GenerateConfig:
    return GenerateConfig(
        **{
            "model_uri": model_uri,
            "out_uri": out,
            "rows": 10_500,
            "rows_per_file": 1_000,
            "seed": 3,
            "concurrency": 1,
            "cpus_per_actor": 0.5,
            **kw,
        }
    )


def test_generate_exact_rows_and_identical_bytes_for_one_and_two_actors(
    ray_local, model_uri, tmp_path
):
    one = run_generate(_gen(model_uri, str(tmp_path / "one"), concurrency=1))
    two = run_generate(_gen(model_uri, str(tmp_path / "two"), concurrency=2))
    assert one.rows == two.rows == 10_500 and one.files == 11
    # actor start (pool launch to the model loaded from the object store) is timed apart
    assert 0 < one.startup_s < one.seconds and 0 < two.startup_s < two.seconds
    m1, m2 = (
        storage.read_manifest(str(tmp_path / "one")),
        storage.read_manifest(str(tmp_path / "two")),
    )
    assert [e.rows for e in m1.files] == [1_000] * 10 + [500]
    assert [e.sha256 for e in m1.files] == [e.sha256 for e in m2.files], (
        "bytes must not depend on parallelism"
    )
    table = synthrec.read_synthetic(str(tmp_path / "one"))
    assert table.num_rows == 10_500
    assert m1.metadata["seed"] == 3 and m1.metadata["model_version"]


def test_generate_conditions_are_exact_to_s3(ray_local, model_uri, s3_bucket):
    uri = f"s3://{s3_bucket}/documentary"
    run_generate(
        _gen(
            model_uri,
            uri,
            rows=3_000,
            conditions={"genre": "Documentary", "gender": "F"},
            concurrency=2,
        )
    )
    table = synthrec.read_synthetic(uri)
    assert table.num_rows == 3_000
    assert pc.all(pc.equal(table["genre"], "Documentary")).as_py()
    assert pc.all(pc.equal(table["gender"], "F")).as_py()


def test_generate_rebalance_spreads_a_column(ray_local, model_uri, tmp_path):
    run_generate(
        _gen(model_uri, str(tmp_path / "bal"), rows=19_000, rebalance={"genre": "uniform"})
    )
    counts = synthrec.read_synthetic(str(tmp_path / "bal"))["genre"].value_counts()
    shares = [c["counts"] / 19_000 for c in counts.to_pylist()]
    assert max(shares) < 0.10, "19 genres, uniform: every share near 1/19"


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"model_uri": "/nonexistent/model"}, ModelError, "no published model"),
        ({"conditions": {"nosuchcolumn": "x"}}, ConditionError, "nosuchcolumn"),
        ({"conditions": {"genre": "Telenovela"}}, ConditionError, "Telenovela"),
        (
            {
                "out_uri": "s3://nobucket/x",
                "storage": StorageConfig(endpoint_url="http://127.0.0.1:9", max_attempts=1),
            },
            StorageError,
            "s3://nobucket/x",
        ),
    ],
)
def test_generate_bad_input_fails_before_work_and_publishes_nothing(
    model_uri, tmp_path, change, error, match
):
    cfg = _gen(model_uri, str(tmp_path / "out")).model_copy(update=change)
    start = time.monotonic()
    with pytest.raises(error, match=match):
        run_generate(cfg)
    assert time.monotonic() - start < 20
    if not cfg.out_uri.startswith("s3://"):
        assert storage.read_manifest(cfg.out_uri) is None


def test_generate_rejects_non_positive_rows():
    from synthrec.config import validate_config
    from synthrec.errors import ConfigError

    with pytest.raises(ConfigError, match="rows"):
        validate_config(GenerateConfig, {"model_uri": "m", "out_uri": "o", "rows": 0})


def test_generate_killed_driver_then_rerun_gives_complete_identical_dataset(
    ray_local, model_uri, tmp_path
):
    """SIGKILL the CLI mid-run (connected to the test's Ray), re-run: exact rows, same bytes
    as a clean run."""
    out = tmp_path / "killed"
    address = ray_local.get_runtime_context().gcs_address
    cfg = _gen(model_uri, str(out), rows=40_000, rows_per_file=1_000, concurrency=1)
    run_dir = out / content_key(cfg, storage.read_manifest(model_uri))
    cmd = [
        sys.executable,
        "-m",
        "synthrec.cli",
        "generate",
        "--model-uri",
        model_uri,
        "--rows",
        "40000",
        "--rows-per-file",
        "1000",
        "--seed",
        "3",
        "--concurrency",
        "1",
        "--out-uri",
        str(out),
        "--address",
        address,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(list(run_dir.glob("part-*.parquet"))) < 3:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    written = len(list(run_dir.glob("part-*.parquet")))
    assert 3 <= written < 40, "the kill must land mid-write"
    assert storage.read_manifest(str(out)) is None, "nothing may look published after a kill"

    summary = run_generate(cfg)
    assert summary.reused_blocks >= 3
    run_generate(_gen(model_uri, str(tmp_path / "clean"), rows=40_000, rows_per_file=1_000))
    got, want = storage.read_manifest(str(out)), storage.read_manifest(str(tmp_path / "clean"))
    assert got.num_rows == 40_000
    assert [e.sha256 for e in got.files] == [e.sha256 for e in want.files]


def test_generate_never_reuses_blocks_of_other_weights_with_the_same_version_label(
    ray_local, model_uri, tmp_path
):
    import torch

    from synthrec.artifacts import load_synthesizer, save_synthesizer

    other = load_synthesizer(model_uri)
    with torch.no_grad():
        next(other.generator.parameters()).add_(0.5)
    label = storage.read_manifest(model_uri).metadata["version"]
    other_uri = str(tmp_path / "other-model")
    save_synthesizer(other, other_uri, metadata={"version": label})  # a caller's own label
    assert storage.read_manifest(other_uri).metadata["version"] == label

    out = str(tmp_path / "out")
    first = run_generate(_gen(model_uri, out, rows=3_000))
    second = run_generate(_gen(other_uri, out, rows=3_000))
    assert first.reused_blocks == 0 and second.reused_blocks == 0
    got = storage.read_table(out)
    want = run_generate(_gen(other_uri, str(tmp_path / "clean"), rows=3_000))
    assert want.reused_blocks == 0
    assert got.equals(storage.read_table(str(tmp_path / "clean")))


def test_generate_to_s3_with_credentials_only_in_the_config(ray_local, model_uri, s3_bucket):
    """Workers whose environment holds no S3 keys: the config's keys must reach the actors
    (not as '**********') without passing through task arguments or Ray's logs."""
    from synthrec.local_s3 import CONFIG_ONLY_SECRET_KEY

    out = f"s3://{s3_bucket}/config-keys"
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    no_keys = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}

    @ray_local.remote(num_cpus=0.1, runtime_env={"env_vars": no_keys})
    def generate_as_a_job(model: str, out: str, endpoint: str) -> int:
        import os

        from synthrec.config import GenerateConfig, StorageConfig
        from synthrec.distributed.generate import run_generate
        from synthrec.local_s3 import CONFIG_ONLY_ACCESS_KEY, CONFIG_ONLY_SECRET_KEY

        assert not os.environ.get("AWS_SECRET_ACCESS_KEY")
        keys = StorageConfig(
            endpoint_url=endpoint,
            access_key_id=CONFIG_ONLY_ACCESS_KEY,
            secret_access_key=CONFIG_ONLY_SECRET_KEY,
            max_attempts=2,
        )
        cfg = GenerateConfig(
            model=model,
            out=out,
            rows=2_000,
            rows_per_file=1_000,
            seed=3,
            concurrency=1,
            cpus_per_actor=0.5,
            storage=keys,
        )
        return run_generate(cfg).rows

    assert ray_local.get(generate_as_a_job.remote(model_uri, out, endpoint), timeout=300) == 2_000
    from synthrec.distributed.credentials import share

    shared = share(StorageConfig(access_key_id="k", secret_access_key=CONFIG_ONLY_SECRET_KEY))
    assert CONFIG_ONLY_SECRET_KEY.encode() not in ray_local.cloudpickle.dumps(shared)
    assert shared.resolve().secrets()["secret_access_key"] == CONFIG_ONLY_SECRET_KEY
    assert storage.read_table(out).num_rows == 2_000
    logs = ray_local._private.worker._global_node.get_session_dir_path()
    leaked = subprocess.run(
        ["grep", "-rl", CONFIG_ONLY_SECRET_KEY, logs], capture_output=True, text=True
    ).stdout
    assert not leaked, f"the secret is in Ray's files: {leaked}"


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _block_writer_pids(ray_module) -> list[int]:
    """Generation actors of this test run's Ray only (other Rays may run on the machine)."""
    from ray._private import ray_constants

    node = ray_module._private.worker._global_node
    raylet = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    pids = []
    for pid in _descendants(raylet):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"BlockWriter" in cmdline:
            pids.append(pid)
    return pids


@pytest.mark.slow
def test_generate_actor_sigkilled_mid_run_gives_exact_rows_and_clean_bytes(
    ray_local, model_uri, tmp_path
):
    import threading

    out = tmp_path / "actor-killed"
    cfg = _gen(model_uri, str(out), rows=40_000, rows_per_file=1_000, concurrency=1)
    run_dir = out / content_key(cfg, storage.read_manifest(model_uri))
    result: dict = {}

    def run() -> None:
        try:
            result["summary"] = run_generate(cfg)
        except Exception as err:  # noqa: BLE001 - asserted below
            result["error"] = err

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(list(run_dir.glob("part-*.parquet"))) < 3:
        time.sleep(0.05)
    pids = _block_writer_pids(ray_local)
    assert pids, "the generation actor must be running"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    written_at_kill = len(list(run_dir.glob("part-*.parquet")))
    thread.join(300)
    assert "error" not in result, result.get("error")
    assert 3 <= written_at_kill < 40, "the kill must land mid-run"
    assert result["summary"].rows == 40_000 and result["summary"].reused_blocks == 0

    run_generate(_gen(model_uri, str(tmp_path / "clean"), rows=40_000, rows_per_file=1_000))
    got, want = storage.read_manifest(str(out)), storage.read_manifest(str(tmp_path / "clean"))
    assert [e.rows for e in got.files] == [1_000] * 40
    assert [e.sha256 for e in got.files] == [e.sha256 for e in want.files]
    assert storage.read_table(str(out)).num_rows == 40_000
