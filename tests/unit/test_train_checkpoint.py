"""The one Train checkpoint format (safetensors + JSON) and the loop's pure helpers; no Ray."""

import datetime
import json
import math

import pytest
import torch
from safetensors import safe_open

from synthrec.distributed import faults
from synthrec.distributed.checkpoint import TENSORS, TREE, load_state, save_state
from synthrec.distributed.train_loop import LoopConfig, WorkerConfig, epoch_seed
from synthrec.errors import ModelError


def _model_and_adam(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    return model, torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.5, 0.9))


def _step(model, optimizer, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)
    optimizer.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    optimizer.step()


def test_train_checkpoint_resumed_adam_continues_exactly_like_an_unbroken_run(tmp_path):
    """Optimizer state is keyed by int parameter ids: lost or renamed keys would make the
    resumed run take different steps (Adam restarts its moments silently)."""
    model, opt = _model_and_adam()
    for s in range(3):
        _step(model, opt, s)
    save_state(tmp_path, {"task": {"model": model.state_dict(), "opt": opt.state_dict()}})
    for s in range(3, 6):
        _step(model, opt, s)

    resumed, resumed_opt = _model_and_adam(seed=99)  # other initial weights, fresh optimizer
    state = load_state(tmp_path)["task"]
    resumed.load_state_dict(state["model"])
    resumed_opt.load_state_dict(state["opt"])
    for s in range(3, 6):
        _step(resumed, resumed_opt, s)
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert resumed_opt.param_groups[0]["betas"] == (0.5, 0.9)


def test_train_checkpoint_round_trips_every_kind_of_value(tmp_path):
    rng = torch.Generator().manual_seed(3)
    tree = {
        "rng": rng.get_state(),  # uint8
        "half": torch.arange(6, dtype=torch.bfloat16).reshape(2, 3),
        "view": torch.arange(12.0).reshape(3, 4).t(),  # non-contiguous view
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "int_keys": {0: {"step": torch.tensor(4.0)}, 7: None},
        "tuple": (1, 2.5, "x", True, None),
        "history": [{"epoch": 1, "loss": float("nan")}, {"epoch": 2, "loss": 0.25}],
        "a/b": torch.ones(1),  # spells the same tensor path as the nested one below
        "a": {"b": torch.zeros(1)},
    }
    save_state(tmp_path, tree)
    back = load_state(tmp_path)

    assert torch.equal(back["rng"], tree["rng"]) and back["rng"].dtype == torch.uint8
    assert torch.equal(back["half"], tree["half"]) and back["half"].dtype == torch.bfloat16
    assert torch.equal(back["view"], tree["view"])
    assert back["scalar"].shape == () and back["scalar"].item() == 2.5
    assert back["empty"].shape == (0, 3)
    assert list(back["int_keys"]) == [0, 7] and back["int_keys"][0]["step"].item() == 4.0
    assert back["tuple"] == (1, 2.5, "x", True, None)
    assert math.isnan(back["history"][0]["loss"]) and back["history"][1] == {
        "epoch": 2,
        "loss": 0.25,
    }
    assert back["a/b"].item() == 1.0 and back["a"]["b"].item() == 0.0
    torch.Generator().set_state(back["rng"])  # a valid generator state again


def test_train_checkpoint_is_two_plain_files_tensors_named_by_their_path(tmp_path):
    model, opt = _model_and_adam()
    _step(model, opt, 0)
    save_state(tmp_path, {"task": {"model": model.state_dict(), "opt": opt.state_dict()}})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([TENSORS, TREE])
    with safe_open(str(tmp_path / TENSORS), "pt") as f:
        names = set(f.keys())
    assert {"task/model/0.weight", "task/opt/state/0/exp_avg", "task/opt/state/0/step"} <= names
    doc = json.loads((tmp_path / TREE).read_text())
    assert doc["format"] == "synthrec-train-checkpoint" and doc["version"] == 1


def test_train_checkpoint_refuses_values_it_cannot_store_without_pickle(tmp_path):
    with pytest.raises(TypeError, match="task/when is a date"):
        save_state(tmp_path, {"task": {"when": datetime.date(2026, 1, 1)}})


def test_train_checkpoint_old_torch_save_format_fails_with_a_model_error(tmp_path):
    torch.save({"epoch": 2}, tmp_path / "state.pt")
    (tmp_path / "progress.json").write_text("{}")
    with pytest.raises(ModelError, match="state.pt.*older synthrec.*new run"):
        load_state(tmp_path)
    save_state(tmp_path, {"epoch": 1})
    doc = json.loads((tmp_path / TREE).read_text())
    (tmp_path / TREE).write_text(json.dumps({**doc, "version": 99}))
    with pytest.raises(ModelError, match="version 99"):
        load_state(tmp_path)


def test_train_loop_worker_config_must_be_the_typed_object():
    loop = LoopConfig(epochs=2, deadline=None, checkpoint_every=1, seed=0)
    worker = WorkerConfig(task=object(), loop=loop)
    assert WorkerConfig.decode({"worker": worker}) is worker
    with pytest.raises(TypeError, match="WorkerConfig"):
        WorkerConfig.decode({"epochs": 2, "seed": 0})


def test_train_loop_epoch_seeds_differ_by_rank_epoch_and_stream():
    seeds = {epoch_seed(7, r, e, s) for r in range(2) for e in range(1, 4) for s in range(2)}
    assert len(seeds) == 12
    assert epoch_seed(7, 1, 2) == epoch_seed(7, 1, 2, stream=0)


def test_train_fault_hook_is_off_unless_the_test_switch_is_set(tmp_path, monkeypatch):
    monkeypatch.delenv(faults.ENV, raising=False)
    assert faults.step_hook(1, 2) is None and faults.worker_env() == {}

    marker = tmp_path / "pid"
    monkeypatch.setenv(faults.ENV, f"2:3:{marker}")
    monkeypatch.setattr(faults, "WAIT_S", 0.01)
    assert faults.worker_env() == {faults.ENV: f"2:3:{marker}"}
    assert faults.step_hook(0, 2) is None  # only the last rank is killed
    hook = faults.step_hook(1, 2)
    hook(2, 2)
    hook(1, 3)
    assert not marker.exists()
    with pytest.raises(RuntimeError, match="nobody killed"):
        hook(2, 3)
    assert marker.read_text().isdigit()
    hook(2, 3)  # spent: the restarted worker trains on
