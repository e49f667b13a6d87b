"""User-level DP-SGD of the sequence generator (synthrec.sequences.dp; no Ray here): a user
whose events span many windows still moves a step by at most C, the step's noise has the
planned std, the budget's steps survive a checkpoint and a resume under another plan fails,
and a DP fit's bad inputs fail before anything is fitted."""

import numpy as np
import pytest
import torch

from synthrec.config import PrivacyConfig, SequenceConfig
from synthrec.data.relational import relational_view
from synthrec.errors import ConfigError
from synthrec.privacy import Budget, PrivacyError, clip_and_sum_by_unit
from synthrec.sequences import SequenceSynthesizer, dp
from synthrec.sequences.encoding import SequenceEncoder
from synthrec.sequences.fitting import SequenceFit, prepare_fit
from tests.logshapes import TAOBAO_START_S, taobao_log

CFG = SequenceConfig(
    d_model=16, n_heads=2, n_layers=1, window=4, batch_size=8, seed=3, adversarial_steps=0
)
PRIVACY = {
    "epsilon": 8.0,
    "public_columns": ["item_id", "category_id", "behavior_type"],
    "bounds": {"timestamp": [TAOBAO_START_S, TAOBAO_START_S + 9 * 86_400], "__events": [1, 100]},
}


@pytest.fixture(scope="module")
def log():
    return relational_view(taobao_log(900, seed=6))


@pytest.fixture(scope="module")
def data(log):
    enc, seqs, _ = SequenceEncoder.fit(log)
    budget = Budget.plan(PrivacyConfig(epsilon=4.0, delta=1e-4), seqs.num_users, 8, 20, False)
    counts = np.ones(log.require_items().num_rows, np.int64)
    return prepare_fit(seqs, enc, counts, CFG, budget=budget)


def _model(data):
    torch.manual_seed(0)
    model = SequenceFit(data, CFG, torch.device("cpu")).model
    model.eval()  # no dropout: gradients comparable across calls
    return model


def _norm(a: dict, b: dict) -> float:
    return float(torch.sqrt(sum(((a[k] - b[k]) ** 2).sum() for k in a)))


def test_sequence_dp_clips_a_user_with_many_windows_as_one_unit(data, monkeypatch):
    """The longest user (many windows, computed in chunks of 2 windows) gets one gradient:
    the chunks' sum equals the gradient of all its windows at once, and removing the user
    moves the clipped sum by at most C (per-window clipping would allow C per window)."""
    win = data.train
    counts = np.bincount(win.user)
    long_user = int(np.argmax(counts))
    assert counts[long_user] >= 4
    others = [u for u in np.unique(win.user) if u != long_user][:5]
    groups = [np.flatnonzero(win.user == u) for u in [long_user, *others]]
    model = _model(data)
    whole, units = dp.user_gradients(model, win, groups, data.user_codes, torch.device("cpu"))
    monkeypatch.setattr(dp, "CHUNK_WINDOWS", 2)
    chunked, chunk_units = dp.user_gradients(
        model, win, groups, data.user_codes, torch.device("cpu")
    )
    assert (chunk_units == 0).sum() == -(-counts[long_user] // 2)  # the long user's chunks
    for k in whole:  # summed per user before clipping: the same unit gradient
        per_user = torch.zeros_like(whole[k]).index_add_(0, chunk_units, chunked[k])
        torch.testing.assert_close(per_user, whole[k], rtol=1e-4, atol=1e-6)
    c = 1e-3  # below every user's gradient norm: every user is clipped
    summed, norms = clip_and_sum_by_unit(chunked, chunk_units, c)
    assert bool((norms > c).all())
    keep = chunk_units != 0
    rest, _ = clip_and_sum_by_unit(
        {k: v[keep] for k, v in chunked.items()}, chunk_units[keep] - 1, c
    )
    assert _norm(summed, rest) == pytest.approx(c, rel=1e-3)
    per_window, _ = clip_and_sum_by_unit(chunked, torch.arange(len(chunk_units)), c)
    rest_w, _ = clip_and_sum_by_unit(
        {k: v[keep] for k, v in chunked.items()}, torch.arange(int(keep.sum())), c
    )
    assert _norm(per_window, rest_w) > 1.5 * c  # chunks as units would count the user twice+


def test_sequence_dp_step_noise_has_the_planned_std(data):
    """A step that samples no user still adds noise: each gradient coordinate is N(0,
    (σ·C / expected users)²), added by the one rank that adds it."""
    budget = Budget(4.0, 1e-4, 0.5, 0.0, 2.0, 1e-12, 10)  # C 0.5, σ 2, q ~ 0: nobody sampled
    model = _model(data)
    dpstate = dp.SequenceDp.build(budget, data.train, 0, 1, 0, torch.device("cpu"))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    events = dp.dp_step(model, opt, dpstate, data.train, data.user_codes, 4.0, "cpu")
    assert events == 0 and budget.steps == 1
    grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    assert float(grads.std()) == pytest.approx(2.0 * 0.5 / 4.0, rel=0.05)
    dp.dp_step(model, opt, dpstate, data.train, data.user_codes, 4.0, "cpu", add_step_noise=False)
    assert all(float(p.grad.abs().max()) == 0.0 for p in model.parameters())


def test_sequence_dp_budget_through_a_checkpoint_and_a_resume_under_another_plan(data):
    fit = SequenceFit(data, CFG, torch.device("cpu"))
    fit.dp_likelihood_epoch()
    taken = fit.dp.budget.steps
    assert taken == dp.steps_per_epoch(len(np.unique(data.train.user)), CFG.batch_size)
    state = fit.state()
    again = SequenceFit(data, CFG, torch.device("cpu"), state=state)
    assert again.dp.budget.steps == taken and again.dp.budget.spent() == fit.dp.budget.spent()
    other = Budget.plan(PrivacyConfig(epsilon=2.0, delta=1e-4), 60, 8, 20, False)
    with pytest.raises(ConfigError, match="another privacy config"):
        SequenceFit(
            data.__class__(**{**data.__dict__, "budget": other}),
            CFG,
            torch.device("cpu"),
            state=state,
        )
    plain = data.__class__(**{**data.__dict__, "budget": None})
    with pytest.raises(ConfigError, match="trained with differential privacy"):
        SequenceFit(plain, CFG, torch.device("cpu"), state=state)


def test_sequence_dp_bad_inputs_fail_before_fitting(log):
    """Unaccounted statistics are named; δ ≥ 1/users and a budget too small for one epoch
    are refused; all before the encoder or any model is fitted."""
    users = log.require_users().num_rows

    def fit(**privacy):
        cfg = CFG.model_copy(update={"privacy": PrivacyConfig(**{**PRIVACY, **privacy})})
        return SequenceSynthesizer().prepare(log, None, cfg, epochs=2)

    with pytest.raises(PrivacyError) as err:
        fit(public_columns=["item_id"], bounds={"__events": [1, 100]})
    named = str(err.value).split(". Declare")[0]  # the list, before the advice
    for bare in ("'behavior_type'", "'timestamp'"):
        assert bare in named
    for covered in ("'item_id'", "'category_id'", "'__events'"):  # the catalog, a bound
        assert covered not in named
    with pytest.raises(ConfigError, match=f"1/n = {1 / users:g} for the {users} training users"):
        fit(delta=1.0 / users)
    with pytest.raises(ConfigError, match="too small for 2 epochs"):
        fit(epsilon=0.01)


@pytest.mark.slow
def test_sequence_dp_fit_records_the_budget_and_reads_no_real_statistics(log):
    """A small DP fit: ε spent within the target (the users GAN's and the sequence model's
    parts added), δ recorded, no usage statistics (uniform item counts, no held-out users,
    fixed gap bins), lengths calibrated on noisy histograms, and it samples."""
    table = log.flatten()
    cfg = CFG.model_copy(update={"privacy": PrivacyConfig(**PRIVACY), "adversarial_steps": 7})
    synth = SequenceSynthesizer().fit(table, cfg=cfg, epochs=2)
    meta = synth.metadata
    parts = meta["differential_privacy"]
    assert 0 < meta["epsilon_spent"] <= 8.0 * 1.001
    assert meta["epsilon_spent"] == pytest.approx(
        parts["users_gan"]["epsilon_spent"] + parts["sequence_model"]["epsilon_spent"], abs=1e-3
    )
    assert meta["delta"] < 1 / log.require_users().num_rows
    assert parts["sequence_model"]["steps"] == parts["sequence_model"]["max_steps"]
    assert synth.cfg.adversarial_steps == 0
    assert parts["sequence_model"]["encoder_noise_multiplier"] > 0  # the noisy histograms
    lengths = synth.calibration["__events"]["real"]  # their quantiles, within the bounds
    assert 1 <= lengths[0] <= lengths[-1] <= 101
    assert (synth.item_counts == 1).all() and meta["metrics"]["best_valid_nll"] is None
    gap = synth.encoder.gap
    assert gap.fine == [] and gap.edges[0] == 0.0
    out = synth.sample_table(users=5, seed=1)
    assert out.num_rows > 0


@pytest.fixture(scope="module")
def users_table():
    """A few hundred users' events per user and first times (heavy-tailed counts: median
    10, mean 15, the longest users 10x the median), the users table of a DP fit."""
    import pyarrow as pa

    from synthrec.sequences.encoding import LENGTH_COL, START_COL

    log = taobao_log(4_500, seed=6)
    per_user = log.group_by("user_id").aggregate([("timestamp", "count"), ("timestamp", "min")])
    return pa.table({LENGTH_COL: per_user["timestamp_count"], START_COL: per_user["timestamp_min"]})


@pytest.mark.parametrize("epsilon", [1.0, 2.0])
def test_sequence_dp_calibration_reads_events_per_user_near_the_real_ones(users_table, epsilon):
    """The calibration's noisy quantiles of events per user keep their median and mean within
    30% of the real ones at ε 1 and 2 for ~300 users under a loose public bound (1,000
    events): noise on 200 bins once added up to ~10x the users and drew ~10x the events.
    First times keep their median within 10% of the public time range."""
    from synthrec.sequences.encoding import LENGTH_COL, START_COL
    from synthrec.sequences.synthesizer import QUANTILES

    lo, hi = TAOBAO_START_S, TAOBAO_START_S + 9 * 86_400
    privacy = {
        **PRIVACY,
        "epsilon": epsilon,
        "bounds": {"timestamp": [lo, hi], "__events": [1, 1_000]},
    }
    plan = dp.plan(
        CFG.model_copy(update={"privacy": PrivacyConfig(**privacy)}),
        users_table.num_rows,
        3,
        [],
        "timestamp",
    )
    events = users_table.column(LENGTH_COL).to_numpy().astype(float)
    starts = users_table.column(START_COL).to_numpy().astype(float)
    assert 250 <= len(events) <= 350 and events.mean() > 1.3 * np.median(events)
    rng = np.random.default_rng(11)  # the release draws from a secret seed; the test seeds
    medians, means, start_medians = [], [], []
    for _ in range(9):
        q = dp.noisy_quantiles(users_table, plan, rng)
        medians.append(np.interp(0.5, QUANTILES, q[LENGTH_COL]))
        means.append(np.trapezoid(q[LENGTH_COL], QUANTILES))
        start_medians.append(np.interp(0.5, QUANTILES, q[START_COL]))
    # typical release (the median of 9) within 30%; none off by more than 2x
    assert np.median(medians) == pytest.approx(np.median(events), rel=0.3)
    assert np.median(means) == pytest.approx(events.mean(), rel=0.3)
    assert max(np.max(means) / events.mean(), events.mean() / np.min(means)) < 2.0
    assert abs(np.median(start_medians) - np.median(starts)) < 0.1 * (hi - lo)
