"""Warm start of the sequence generator: shared layers copied, tables over items kept fresh."""

import torch

from synthrec.config import SequenceConfig, TrainGanConfig
from synthrec.data.relational import relational_view
from synthrec.distributed.warm import copy_matching, sequence_init
from synthrec.schema import infer_schema
from synthrec.sequences import SequenceSynthesizer
from synthrec.sequences.artifacts import save_sequence_model
from synthrec.sequences.fitting import prepare_fit
from tests.logshapes import taobao_log

TINY = SequenceConfig(
    d_model=16, n_heads=2, n_layers=1, window=8, epochs=1, users_epochs=1, adversarial_steps=0
)


def test_sequence_init_copies_shared_layers_and_keeps_item_tables(tmp_path):
    parent = SequenceSynthesizer().fit(taobao_log(1_200, seed=4), cfg=TINY)
    uri = str(tmp_path / "parent")
    save_sequence_model(parent, uri)
    table = taobao_log(1_500, seed=5)
    synth = SequenceSynthesizer()
    seqs, _ = synth.prepare(relational_view(table, infer_schema(table)), None, TINY)
    data = prepare_fit(seqs, synth.encoder, synth.item_counts, TINY, synth.cluster_attribute())
    fresh = {k: v.clone() for k, v in data.init.items()}
    cfg = TrainGanConfig(data_uri="unused", out_uri="unused", init_model_uri=uri)
    share = sequence_init(cfg, data.init)
    old = parent.model.state_dict()
    copied = [k for k in data.init if not torch.equal(data.init[k], fresh[k])]
    assert copied and 0 < share < 1
    assert all(torch.equal(data.init[k], old[k]) for k in copied)
    assert not any(k.startswith("item_head.") or k.startswith("item_emb") for k in copied)
    assert torch.equal(data.init["item_emb.weight"], fresh["item_emb.weight"])


def test_copy_matching_skips_other_shapes():
    target = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    share = copy_matching(target, {"a": torch.ones(2, 3), "b": torch.ones(5)})
    assert share == 6 / 10 and target["a"].sum() == 6 and target["b"].sum() == 0
