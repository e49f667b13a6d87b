"""User-level DP training of the sequence generator on a real local Ray Train (two workers),
with a real resume."""

import pyarrow.parquet as pq
import pytest

from synthrec.config import (
    PrivacyConfig,
    RunSection,
    ScalingSection,
    SequenceConfig,
    TrainGanConfig,
)
from synthrec.distributed.sequence_train import run_train_sequences
from synthrec.errors import ConfigError
from tests.logshapes import TAOBAO_START_S, taobao_log

pytestmark = pytest.mark.integration

PRIVACY = {
    "epsilon": 6.0,
    "public_columns": ["item_id", "category_id", "behavior_type"],
    "bounds": {"timestamp": [TAOBAO_START_S, TAOBAO_START_S + 9 * 86_400], "__events": [1, 100]},
}
TINY_DP = SequenceConfig(
    d_model=16, n_heads=2, n_layers=1, window=8, batch_size=16, epochs=2, seed=5,
    privacy=PRIVACY,
)  # fmt: skip


@pytest.fixture(scope="module")
def log_uri(tmp_path_factory):
    path = tmp_path_factory.mktemp("seq-dp") / "taobao.parquet"
    pq.write_table(taobao_log(1_200, seed=2), path)  # 80 users
    return str(path)


def _cfg(data, out, sequence=TINY_DP, **kw) -> TrainGanConfig:
    run = {k: kw.pop(k) for k in list(kw) if k in RunSection.model_fields}
    return TrainGanConfig(
        data_uri=data,
        out_uri=out,
        generator="sequences",
        sequence=sequence,
        scaling=ScalingSection(num_workers=2, cpus_per_worker=0.5),
        run=RunSection(**{"checkpoint_every": 1, "max_failures": 0, **run}),
        **kw,
    )


@pytest.mark.slow
def test_sequence_train_dp_resumed_run_spends_no_extra_budget(ray_local, log_uri, tmp_path):
    """Two workers, each Poisson-sampling its own users, the clipped sums all-reduced and
    noised once: a run stopped after epoch 1 (its time budget) and resumed by name ends with
    the plan's steps exactly and ε spent within the target; another privacy config is refused
    on the driver before any worker starts."""
    from synthrec.sequences.artifacts import load_sequence_model

    out = str(tmp_path / "model")
    first = run_train_sequences(_cfg(log_uri, out, time_budget_min=0.001, run_name="seq-dp"))
    assert first["epochs"] == 1
    partial = load_sequence_model(out).metadata
    assert 0 < partial["epsilon_spent"] < 6.0
    steps_1 = partial["differential_privacy"]["sequence_model"]["steps"]

    other = TINY_DP.model_copy(update={"privacy": PrivacyConfig(**{**PRIVACY, "epsilon": 4.0})})
    with pytest.raises(ConfigError, match="another privacy config"):
        run_train_sequences(_cfg(log_uri, out, other, epochs=2, run_name="seq-dp", resume=True))

    resumed = run_train_sequences(_cfg(log_uri, out, epochs=2, run_name="seq-dp", resume=True))
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["history"][-1]["resumed_from"] == 1
    model = load_sequence_model(out)
    meta = model.metadata
    seq = meta["differential_privacy"]["sequence_model"]
    assert seq["steps"] == seq["max_steps"] == 2 * steps_1  # 80 users / 16: 5 steps an epoch
    assert meta["epsilon_spent"] <= 6.0 * 1.001
    assert meta["epsilon_spent"] == pytest.approx(
        meta["differential_privacy"]["users_gan"]["epsilon_spent"] + seq["epsilon_spent"],
        abs=1e-3,
    )
    assert model.sample(users=5, seed=1).users.num_rows == 5
