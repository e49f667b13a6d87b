"""Differential privacy: the budget against an independent accountant, per-row clipping, the
noise, the budget stop, the accountant state through a checkpoint, and the leak check."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from synthrec.config import EncoderConfig, GanConfig, PrivacyConfig
from synthrec.errors import ConfigError
from synthrec.gan import Synthesizer, build_gan
from synthrec.gan.dp import build_dp, dp_critic_step, dp_train_epoch, per_row_gradients, private_fit
from synthrec.gan.networks import Critic
from synthrec.privacy import (
    Budget,
    PrivacyError,
    add_noise,
    check_accounted,
    clip_and_sum,
    clip_and_sum_by_unit,
)
from synthrec.schema import infer_schema
from synthrec.serving.backends import GENERATOR_PUBLIC, public_metadata

CFG = GanConfig(
    embedding_dim=8,
    generator_dims=[16],
    critic_dims=[16, 16],
    batch_size=100,
    privacy={"epsilon": 4.0},
    encoder=EncoderConfig(mode_fit_rows=500),
)


def make_table(n: int = 2_000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "genre": rng.choice(["a", "b", "c", "rare"], n, p=[0.6, 0.3, 0.098, 0.002]),
            "click": rng.integers(0, 2, n),
            "price": rng.lognormal(3, 1, n),
        }
    )


def dp_cfg(**privacy) -> GanConfig:
    merged = {"epsilon": 4.0, "public_columns": ["price"], **privacy}
    return CFG.model_copy(update={"privacy": PrivacyConfig(**merged)})


def dp_setup(epochs: int = 2, **privacy):
    table = make_table()
    cfg = dp_cfg(**privacy)
    encoder, budget = private_fit(table, infer_schema(table), cfg, epochs, cfg.batch_size)
    state = build_gan(encoder, cfg)
    state.dp = build_dp(encoder, state.layout, budget, state.device)
    shard = torch.from_numpy(encoder.transform(table))
    return encoder, state, shard


def test_privacy_accountant_matches_dp_accounting():
    """Opacus's ε for the plan's (noise, rate, steps) and the encoder release, against Google's
    dp-accounting composing the same events: within 1%."""
    from dp_accounting import dp_event, rdp

    budget = Budget.plan(PrivacyConfig(epsilon=2.0), 50_000, 250, 3_000, encoder_release=True)
    budget.steps = budget.max_steps
    ours = budget.spent()
    acc = rdp.RdpAccountant()
    acc.compose(dp_event.GaussianDpEvent(budget.encoder_noise))
    step = dp_event.PoissonSampledDpEvent(
        budget.sample_rate, dp_event.GaussianDpEvent(budget.noise_multiplier)
    )
    acc.compose(step, budget.max_steps)
    theirs = acc.get_epsilon(budget.delta - budget.threshold_delta)
    assert abs(ours - theirs) / theirs < 0.01, (ours, theirs)
    assert 0.99 * 2.0 <= ours <= 2.0  # the plan spends the budget, not more


def test_privacy_plan_refuses_bad_budgets():
    with pytest.raises(ConfigError, match="must be below 1/n"):
        Budget.plan(PrivacyConfig(epsilon=2.0, delta=1e-3), 2_000, 100, 100, False)
    with pytest.raises(ConfigError, match="too small"):
        Budget.plan(PrivacyConfig(epsilon=0.01), 2_000, 1_000, 2_000, False)
    with pytest.raises(ValueError, match="pac 1"):
        GanConfig(privacy={"epsilon": 1.0}, pac=10)


def test_privacy_clipping_bounds_each_rows_contribution():
    torch.manual_seed(0)
    critic = Critic(6, [16, 16], 1, 0.0)
    real, fake = torch.randn(8, 6), torch.randn(8, 6)
    real[3] *= 1_000  # one outlier row with a huge gradient
    eps = torch.rand(8, 1)
    grads = per_row_gradients(critic, real, fake, eps, 10.0)
    # row 5's per-row gradient equals autograd on that row alone
    x = (eps[5] * real[5] + (1 - eps[5]) * fake[5])[None].requires_grad_(True)
    (slope,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    loss = -critic(real[5:6]).sum() + critic(fake[5:6]).sum() + 10 * (slope.norm() - 1) ** 2
    expected = torch.autograd.grad(loss, list(critic.parameters()))
    for g, e in zip(grads.values(), expected):
        torch.testing.assert_close(g[5], e, rtol=1e-4, atol=1e-5)
    summed, norms = clip_and_sum(grads, 1.0)
    assert norms[3] > 10  # it was clipped
    without = {k: torch.cat([v[:3], v[4:]]) for k, v in grads.items()}
    rest, _ = clip_and_sum(without, 1.0)
    diff = torch.sqrt(sum(((summed[k] - rest[k]) ** 2).sum() for k in summed))
    assert diff <= 1.0 + 1e-5  # removing the row moves the sum by at most C


def test_privacy_clipping_per_user_bounds_all_of_a_users_events():
    """User-level DP: a user's three windows together move the sum by at most C, where
    per-example clipping would let them move it by 3C."""
    grads = {"w": torch.zeros(6, 4), "b": torch.zeros(6)}
    grads["w"][:3] = torch.tensor([5.0, 0, 0, 0])  # user 0: three windows, same direction
    grads["w"][3:] = torch.randn(3, 4) * 0.01  # users 1 and 2: small
    units = torch.tensor([0, 0, 0, 1, 2, 2])
    summed, norms = clip_and_sum_by_unit(grads, units, 1.0)
    assert norms.shape == (3,) and norms[0] == pytest.approx(15.0)
    rest, _ = clip_and_sum_by_unit({k: v[3:] for k, v in grads.items()}, units[3:] - 1, 1.0)
    moved = torch.sqrt(sum(((summed[k] - rest[k]) ** 2).sum() for k in summed))
    assert moved == pytest.approx(1.0, abs=1e-5)
    per_row, _ = clip_and_sum(grads, 1.0)  # rows as units: the user would count 3 times
    assert float(per_row["w"][0] - rest["w"][0]) == pytest.approx(3.0, abs=1e-4)


def test_privacy_noise_has_the_planned_std():
    rng = torch.Generator().manual_seed(0)
    noisy = add_noise({"w": torch.zeros(200_000)}, 3.0, rng)["w"]
    assert abs(float(noisy.std()) - 3.0) < 0.03 and abs(float(noisy.mean())) < 0.03


def test_privacy_noise_is_added_once_per_step_by_one_worker():
    """Rank 0 adds σ·C of noise; another rank adds none (the sum across workers holds one
    draw). With no rows sampled the step's gradient is the noise alone."""
    _, state, shard = dp_setup()
    empty, seen = shard[:0], {}

    def capture(summed):
        seen.update(summed)
        return summed

    dp_critic_step(state, state.dp, empty, 100, add_step_noise=False, reduce=capture)
    assert all(not v.any() for v in seen.values())
    dp_critic_step(state, state.dp, empty, 100, add_step_noise=True, reduce=capture)
    flat = torch.cat([v.flatten() for v in seen.values()])
    assert abs(float(flat.std()) / state.dp.budget.noise_std - 1) < 0.1
    assert state.dp.budget.steps == 2  # both steps counted, sampled rows or not


def test_privacy_critic_step_keeps_real_rows_out_of_the_generator():
    """The critic step's fake rows come from the generator in eval mode: its batch-norm
    running statistics (released with the model) never see the real rows' conditions."""
    _, state, shard = dp_setup()
    buffers = {k: v.clone() for k, v in state.generator.named_buffers()}
    assert buffers
    dp_critic_step(state, state.dp, shard, 100)
    assert state.generator.training
    for name, value in state.generator.named_buffers():
        assert torch.equal(value, buffers[name]), name


def test_privacy_training_stops_when_the_budget_is_spent():
    _, state, shard = dp_setup(epochs=1)
    budget = state.dp.budget
    assert budget.max_steps == 20  # 2,000 rows / 100 per expected batch, one epoch
    metrics = dp_train_epoch(state, shard, 100)
    assert metrics["budget_spent"] == 1.0 and budget.steps == budget.max_steps
    assert metrics["epsilon_spent"] == pytest.approx(4.0, rel=0.01)
    assert "critic_loss" not in metrics  # a statistic of the real batch outside the budget
    again = dp_train_epoch(state, shard, 100)
    assert again["steps"] == 0 and budget.steps == budget.max_steps
    with pytest.raises(RuntimeError, match="budget is spent"):
        dp_critic_step(state, state.dp, shard, 100)


def test_privacy_synthesizer_records_the_budget_and_stops():
    table = make_table()
    cfg = dp_cfg().model_copy(update={"epochs": 2})
    # a generous time budget: the privacy budget (planned for cfg.epochs) ends training
    synth = Synthesizer().fit(table, cfg=cfg, time_budget_s=600)
    meta = synth.metadata
    assert meta["metrics"]["epochs"] == 2
    assert meta["epsilon_spent"] == pytest.approx(4.0, rel=0.01) and meta["epsilon_spent"] <= 4
    assert meta["delta"] == pytest.approx(1 / 2_000**1.1)
    dp = meta["differential_privacy"]
    assert dp["statistics"] == {"genre": "noisy counts", "click": "noisy counts", "price": "public"}
    assert "fingerprint" not in meta
    shown = public_metadata(meta, GENERATOR_PUBLIC)  # what GET /v1/models shows
    assert shown["epsilon_spent"] == meta["epsilon_spent"] and shown["delta"] == meta["delta"]
    genre = synth.encoder.codec("genre")
    assert "rare" not in genre.values.to_pylist()  # 4 rows: below the noisy-count threshold
    assert synth.sample(50, seed=1).num_rows == 50


def test_privacy_check_names_unaccounted_statistics():
    table = make_table().append_column("user_id", pa.array([f"u{i % 50}" for i in range(2_000)]))
    schema = infer_schema(table)
    with pytest.raises(PrivacyError) as err:
        check_accounted(schema, PrivacyConfig(epsilon=1.0))
    message = str(err.value)
    assert "column 'price' (numeric)" in message and "column 'user_id' (user_id)" in message
    assert "'genre'" not in message  # covered by noisy counts
    with pytest.raises(PrivacyError, match="nope"):
        check_accounted(schema, PrivacyConfig(epsilon=1.0, public_columns=["nope"]))
    stats = check_accounted(schema, PrivacyConfig(epsilon=1.0, public_columns=["price", "user_id"]))
    assert {s.column: s.coverage for s in stats}["user_id"] == "public"
    with pytest.raises(PrivacyError, match="price"):  # Synthesizer.fit refuses before training
        Synthesizer().fit(make_table(), cfg=dp_cfg(public_columns=[]), epochs=1)


def test_privacy_accountant_state_through_a_checkpoint(tmp_path):
    from synthrec.distributed.checkpoint import load_state, save_state

    encoder, state, shard = dp_setup(epochs=2)
    dp_train_epoch(state, shard, 100)
    save_state(tmp_path, state.state_dict())
    loaded = load_state(tmp_path)

    def fresh(cfg: GanConfig):
        gan = build_gan(encoder, cfg)
        if cfg.privacy is not None:
            budget = Budget.plan(cfg.privacy, 2_000, 100, 40, encoder_release=True)
            gan.dp = build_dp(encoder, gan.layout, budget, gan.device)
        return gan

    # a resumed run under the same plan continues from the steps already spent
    again = fresh(dp_cfg())
    assert again.dp.budget.steps == 0
    again.load_state_dict(loaded)
    assert again.dp.budget.steps == state.dp.budget.steps == 20
    assert again.dp.budget.spent() == pytest.approx(state.dp.budget.spent())
    assert "rng" not in loaded["privacy"]  # a resumed worker draws a fresh secret seed
    assert dp_train_epoch(again, shard, 100)["budget_spent"] == 1.0
    assert again.dp.budget.steps == 40  # the second epoch, and no more
    # another privacy plan, or no privacy, is refused
    with pytest.raises(ConfigError, match="epsilon"):
        fresh(dp_cfg(epsilon=8.0)).load_state_dict(loaded)
    with pytest.raises(ConfigError, match="differential privacy"):
        fresh(CFG.model_copy(update={"privacy": None, "pac": 1})).load_state_dict(loaded)


def test_privacy_numeric_columns_on_public_bounds_read_nothing_from_the_rows():
    """A numeric column with public bounds is encoded on a fixed grid: two different tables
    give the same codec, and the check counts it covered."""
    cfg = dp_cfg(public_columns=[], bounds={"price": (0.0, 500.0)})
    codecs = []
    for seed in (0, 1):
        table = make_table(seed=seed)
        encoder, _ = private_fit(table, infer_schema(table), cfg, 1, 100)
        codecs.append(encoder.codec("price"))
    a, b = codecs
    assert a.meta == b.meta and (a.meta["min"], a.meta["max"]) == (0.0, 500.0)
    assert all((x == y).all() for x, y in zip(a.arrays().values(), b.arrays().values()))
    stats = check_accounted(infer_schema(make_table()), cfg.privacy)
    assert {s.column: s.coverage for s in stats}["price"] == "public bounds"
    row = pa.table({"price": pa.array([1e6])})  # outside the bounds: decoded clipped
    block = a.transform(row.column("price"), np.random.default_rng(0))
    assert block[0, 1 + a.num_modes - 1] == 1.0  # the top cell of the grid
    with pytest.raises(ValueError, match="low < high"):
        PrivacyConfig(epsilon=1.0, bounds={"price": (5.0, 5.0)})
