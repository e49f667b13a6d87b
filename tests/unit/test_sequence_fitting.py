"""The epoch steps shared by the in-process fit and the Ray Train workers (no Ray here):
resuming from a checkpointed state, early stopping, and how ranks split the work."""

import numpy as np
import pytest
import torch

from synthrec.config import SequenceConfig
from synthrec.data.relational import relational_view
from synthrec.distributed.checkpoint import load_state, save_state
from synthrec.sequences import fitting
from synthrec.sequences.encoding import SequenceEncoder
from synthrec.sequences.fitting import SequenceFit, final_weights, prepare_fit, shard_rows
from tests.logshapes import taobao_log

CFG = SequenceConfig(
    d_model=16, n_heads=2, n_layers=1, window=8, batch_size=16, seed=3, adversarial_steps=0
)


@pytest.fixture(scope="module")
def encoded():
    log = relational_view(taobao_log(900, seed=6))
    enc, seqs, _ = SequenceEncoder.fit(log)
    counts = np.bincount(seqs.item, minlength=log.require_items().num_rows)
    return enc, seqs, counts


def _epoch(fit: SequenceFit, max_epochs: int) -> dict:
    seed = 1_000 + fit.epoch
    torch.manual_seed(seed)  # dropout: the Ray loop seeds torch per epoch the same way
    if fit.phase == "adversarial":
        return fit.adversarial_epoch(seed)
    metrics = fit.likelihood_epoch(seed)
    if fit.likelihood_done(max_epochs):
        fit.end_likelihood()
    return metrics


def test_sequence_fit_resumed_from_a_checkpoint_ends_with_the_same_weights(
    encoded, tmp_path, monkeypatch
):
    """Likelihood epochs 1-2, then adversarial epochs; a fit rebuilt from the checkpoint of
    epoch 2 (written and read in the Train checkpoint format) or of epoch 3 (mid-adversarial)
    finishes bit-identical to the uninterrupted one."""
    monkeypatch.setattr(fitting, "ADVERSARIAL_CHUNK", 3)
    cfg = CFG.model_copy(update={"adversarial_steps": 5})  # chunks of 3 and 2 steps
    enc, seqs, counts = encoded
    data = prepare_fit(seqs, enc, counts, cfg)
    whole = SequenceFit(data, cfg, torch.device("cpu"))
    saved = {}
    while whole.phase != "done":
        _epoch(whole, max_epochs=2)
        save_state(tmp_path, {"task": whole.state()})
        saved[whole.epoch] = load_state(tmp_path)["task"]
    assert whole.epoch == 4 and whole.adv_steps == 5
    for start in (2, 3):
        again = SequenceFit(data, cfg, torch.device("cpu"), state=saved[start])
        while again.phase != "done":
            _epoch(again, max_epochs=2)
        for name, tensor in whole.model.state_dict().items():
            assert torch.equal(tensor, again.model.state_dict()[name]), (start, name)


def test_sequence_fit_stops_when_the_held_out_nll_stops_improving(encoded):
    enc, seqs, counts = encoded
    cfg = CFG.model_copy(update={"lr": 1e-12, "patience": 1})  # nothing learnt: no gain
    fit = SequenceFit(prepare_fit(seqs, enc, counts, cfg), cfg, torch.device("cpu"))
    fit.likelihood_epoch(1)
    assert not fit.likelihood_done(max_epochs=10) and fit.best_epoch == 1
    fit.likelihood_epoch(2)
    assert fit.likelihood_done(max_epochs=10) and fit.bad == 1
    fit.end_likelihood()  # back to epoch 1's weights
    assert fit.phase == "done"
    state = fit.state()
    for name, tensor in final_weights(state).items():
        assert torch.equal(tensor, state["best_state"][name]), name


def test_sequence_fit_ranks_split_windows_and_validation_without_overlap(encoded):
    enc, seqs, counts = encoded
    data = prepare_fit(seqs, enc, counts, CFG)
    shards = [shard_rows(len(data.train), r, 2, CFG.seed) for r in (0, 1)]
    assert not set(shards[0]) & set(shards[1])
    assert sorted(np.concatenate(shards)) == list(range(len(data.train)))
    one = SequenceFit(data, CFG, torch.device("cpu"))
    ranks = [SequenceFit(data, CFG, torch.device("cpu"), r, 2) for r in (0, 1)]
    shares = []
    for fit in ranks:  # each rank's (sum, count), as the all-reduce would see them
        fit.validation_nll(lambda t, c: shares.append((t, c)) or (t, c))
    summed = tuple(map(sum, zip(*shares)))
    together = [fit.validation_nll(lambda t, c: summed) for fit in ranks]
    assert together[0] == together[1]
    assert together[0] == pytest.approx(one.validation_nll(), rel=1e-6)
