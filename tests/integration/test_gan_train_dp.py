"""DP training of the row GAN on a real local Ray Train (two DDP workers), with a real resume."""

import pyarrow.parquet as pq
import pytest

from synthrec.config import GanConfig, RunSection, ScalingSection, TrainGanConfig
from synthrec.distributed.gan_train import run_train_gan
from synthrec.errors import ConfigError

pytestmark = pytest.mark.integration

DP_GAN = GanConfig(
    batch_size=200,
    generator_dims=[32],
    critic_dims=[32, 32],
    embedding_dim=16,
    epochs=3,
    privacy={"epsilon": 3.0, "public_columns": ["rating"]},
)


@pytest.fixture(scope="module")
def events_uri(ml100k_dir, tmp_path_factory):
    """4,000 ML-100K rows: three categorical columns (noisy counts) and a public rating."""
    columns = ["gender", "occupation", "genre", "rating"]
    table = pq.read_table(ml100k_dir / "events.parquet", columns=columns).slice(0, 4_000)
    path = tmp_path_factory.mktemp("dp-events") / "events.parquet"
    pq.write_table(table, path)
    return str(path)


def _cfg(data, out, **kw) -> TrainGanConfig:
    run = {k: kw.pop(k) for k in list(kw) if k in RunSection.model_fields}
    return TrainGanConfig(
        data_uri=data,
        out_uri=out,
        gan=kw.pop("gan", DP_GAN),
        scaling=ScalingSection(num_workers=2, cpus_per_worker=0.5),
        run=RunSection(**{"checkpoint_every": 1, "max_failures": 0, **run}),
        **kw,
    )


@pytest.mark.slow
def test_gan_train_dp_resumed_run_spends_no_extra_budget(ray_local, events_uri, tmp_path):
    """A DP run stopped after epoch 1 (its time budget) and resumed by name ends where a run
    of the plan's 3 epochs ends: ε spent = the target, the plan's steps exactly, the encoder's
    noisy counts released once (read back, not refitted); another privacy config is refused
    on the driver before any worker starts."""
    from synthrec.artifacts import load_synthesizer

    out = str(tmp_path / "model")
    first = run_train_gan(
        _cfg(events_uri, out, time_budget_min=0.001, run_name="dp-resume")  # plan: gan.epochs
    )
    assert first["epochs"] == 1
    spent_once = first["history"][-1]["epsilon_spent"]
    assert 0 < spent_once < 3.0
    partial = load_synthesizer(out)
    assert partial.metadata["epsilon_spent"] == pytest.approx(spent_once, rel=1e-3)

    other = DP_GAN.model_copy(update={"privacy": DP_GAN.privacy.model_copy(update={"epsilon": 5})})
    with pytest.raises(ConfigError, match="epsilon 3.0 \\(now 5\\)"):
        run_train_gan(_cfg(events_uri, out, gan=other, epochs=3, run_name="dp-resume", resume=True))

    resumed = run_train_gan(_cfg(events_uri, out, epochs=3, run_name="dp-resume", resume=True))
    history = resumed["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["resumed_from"] == 1
    model = load_synthesizer(out)
    dp = model.metadata["differential_privacy"]
    assert dp["steps"] == dp["max_steps"] == 3 * 20  # 4,000 rows / 200: 20 steps an epoch
    assert model.metadata["epsilon_spent"] == pytest.approx(3.0, rel=0.01)
    assert model.metadata["epsilon_spent"] <= 3.0
    assert "fingerprint" not in model.metadata
    for name in ("gender", "occupation", "genre"):  # the first start's noisy counts, reused
        before, after = partial.encoder.codec(name), model.encoder.codec(name)
        assert before.values.equals(after.values) and (before.freq == after.freq).all(), name
    assert model.sample(500, seed=1).num_rows == 500
