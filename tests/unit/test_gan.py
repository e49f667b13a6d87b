"""GAN core: conditional sampler, critic/generator steps, reproducibility, checkpoints, DDP."""

from __future__ import annotations

import functools
import os
import socket

import numpy as np
import pyarrow as pa
import pytest
import torch

from synthrec.config import EncoderConfig, GanConfig
from synthrec.encoding import Encoder
from synthrec.errors import ConfigError
from synthrec.gan import build_gan, build_sampler, critic_step, generator_step, train_epoch
from synthrec.schema import infer_schema

CFG = GanConfig(
    embedding_dim=16,
    generator_dims=[32, 32],
    critic_dims=[32, 32],
    batch_size=40,
    pac=4,
    encoder=EncoderConfig(mode_fit_rows=500, id_profile_rows=1_000),
)


def make_table(n: int = 1_200, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    genre = rng.choice(["a", "b", "c", "rare"], n, p=[0.6, 0.3, 0.095, 0.005])
    return pa.table(
        {
            "user_id": pa.array([f"u{i}" for i in rng.integers(0, 120, n)]),
            "genre": pa.array(genre),
            "price": pa.array(rng.lognormal(3, 1, n)),
            "click": pa.array(rng.integers(0, 2, n), pa.int64()),
        }
    )


@functools.lru_cache(maxsize=4)
def fit_encoder(seed: int = 0, n: int = 1_200) -> Encoder:
    table = make_table(n)
    return Encoder.fit(table, infer_schema(table), CFG.encoder, seed=seed)


def setup(seed: int = 0, rank: int = 0, n: int = 1_200):
    table = make_table(n)
    cfg = CFG.model_copy(update={"seed": seed})
    enc = fit_encoder(seed, n)
    data = torch.from_numpy(enc.transform(table, seed=seed))
    state = build_gan(enc, cfg, rank=rank)
    return enc, data, state, build_sampler(state, enc, data)


def test_gan_sampler_conditions_match_real_rows():
    enc, data, state, sampler = setup()
    real, cond = sampler.sample(512, state.rng)
    lay = state.layout
    assert cond.shape == (512, lay.cond_dim)
    on = cond > 0
    assert torch.equal(real[:, lay.cond_src][on], cond[on])  # revealed values are the row's
    per_span = torch.zeros(512, len(lay.cond_spans)).index_add_(1, lay.cond_seg, cond)
    assert ((per_span == 0) | (per_span == 1)).all() and (per_span.sum(1) >= 1).all()


def test_gan_sampler_log_frequency_and_shard_only_values():
    enc, data, state, _ = setup(n=4_000)
    span = enc.spans[[i for i in enc.cond_spans if enc.spans[i].column == "genre"][0]]
    codes = data[:, span.start : span.stop].argmax(1)
    rare = enc.codec("genre").values.to_pylist().index("rare")
    shard = data[codes != rare]  # this worker never saw 'rare'
    sampler = build_sampler(state, enc, shard)
    real, cond = sampler.sample(20_000, state.rng)
    got = real[:, span.start : span.stop].argmax(1)
    assert not (got == rare).any()
    share_a = (got == enc.codec("genre").values.to_pylist().index("a")).float().mean().item()
    assert share_a < 0.6  # log-frequency flattens 'a'


def test_gan_critic_step_runs_one_critic_forward():
    _, _, state, sampler = setup()
    calls = []
    handle = state.critic.register_forward_hook(lambda *a: calls.append(1))
    real, cond = sampler.sample(40, state.rng)
    before = [p.detach().clone() for p in state.critic.parameters()]
    out = critic_step(state, real, cond)
    handle.remove()
    assert len(calls) == 1
    assert set(out) == {"critic_loss", "wasserstein", "gradient_penalty"}
    assert any(not torch.equal(a, b) for a, b in zip(before, state.critic.parameters()))


def test_gan_generator_step_updates_only_the_generator():
    _, _, state, sampler = setup()
    _, cond = sampler.sample(40, state.rng)
    crit_before = [p.detach().clone() for p in state.critic.parameters()]
    gen_before = [p.detach().clone() for p in state.generator.parameters()]
    generator_step(state, cond)
    assert all(torch.equal(a, b) for a, b in zip(crit_before, state.critic.parameters()))
    assert all(p.grad is None for p in state.critic.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(gen_before, state.generator.parameters()))


def test_gan_train_epoch_is_reproducible_under_a_seed():
    runs = []
    for _ in range(2):
        _, data, state, sampler = setup(seed=7)
        torch.manual_seed(7)  # critic dropout draws from the global generator
        metrics = train_epoch(state, data, sampler, 40, seed=7, max_steps=3)
        runs.append((metrics, [p.detach().clone() for p in state.generator.parameters()]))
    assert runs[0][0]["critic_loss"] == runs[1][0]["critic_loss"]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    assert runs[0][0]["epoch"] == 1 and runs[0][0]["steps"] == 3


def test_gan_state_dict_resume_matches_uninterrupted_run():
    _, data, state, sampler = setup()
    torch.manual_seed(0)
    train_epoch(state, data, sampler, 40, seed=0, max_steps=2)
    saved = {k: v for k, v in state.state_dict().items()}
    import copy

    saved = copy.deepcopy(saved)
    torch.manual_seed(1)
    train_epoch(state, data, sampler, 40, seed=0, max_steps=2)
    expected = [p.detach().clone() for p in state.generator.parameters()]

    _, _, resumed, sampler2 = setup()
    resumed.load_state_dict(saved)
    assert resumed.epoch == 1
    torch.manual_seed(1)
    train_epoch(resumed, data, sampler2, 40, seed=0, max_steps=2)
    assert all(torch.equal(a, b) for a, b in zip(expected, resumed.generator.parameters()))


def test_gan_batch_not_multiple_of_pac_is_config_error():
    _, data, state, sampler = setup()
    with pytest.raises(ConfigError, match="multiple of pac 4"):
        train_epoch(state, data, sampler, 42)


def test_gan_config_rejects_batch_not_multiple_of_pac():
    with pytest.raises(ValueError, match="multiple of pac"):
        GanConfig(batch_size=45, pac=10)


def _ddp_worker(rank: int, world: int, port: int, out_dir: str, enc_state) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        table = make_table()
        enc = Encoder.from_state(*enc_state)  # fitted once, shipped to workers
        data = torch.from_numpy(enc.transform(table.slice(rank * 600, 600), seed=rank))
        state = build_gan(enc, CFG, rank=rank)
        sampler = build_sampler(state, enc, data)
        gen, crit = DDP(state.generator), DDP(state.critic)
        metrics = train_epoch(
            state, data, sampler, 20, generator=gen, critic=crit, seed=rank, max_steps=3
        )
        flat = torch.cat(
            [
                p.detach().flatten()
                for p in [*state.generator.parameters(), *state.critic.parameters()]
            ]
        )
        torch.save(
            {"params": flat, "loss": metrics["critic_loss"]},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def test_gan_steps_run_under_two_process_gloo_ddp(tmp_path):
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path), fit_encoder().state()), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert torch.equal(r0["params"], r1["params"])  # gradients were all-reduced
    assert r0["loss"] != r1["loss"]  # on different shards
    _, _, fresh, _ = setup()
    init = torch.cat(
        [p.detach().flatten() for p in [*fresh.generator.parameters(), *fresh.critic.parameters()]]
    )
    assert not torch.equal(init, r0["params"])


def test_gan_train_epoch_runs_under_bf16_autocast():
    _, data, state, sampler = setup()
    metrics = train_epoch(
        state, data, sampler, 40, seed=0, max_steps=2, autocast_dtype=torch.bfloat16
    )
    assert all(np.isfinite(v) for v in metrics.values()) and "diverged" not in metrics


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_generator_sample_path_equals_dense_forward(norm):
    """Sampling feeds the one-hot conditional vector as lookups, folds eval batch norm and
    runs rows in chunks; the logits must equal the plain dense forward pass."""
    from synthrec.gan import Generator, networks

    torch.manual_seed(0)
    gen = Generator(16, 12, [32, 24], 20, norm)
    with torch.no_grad():  # non-trivial batch-norm statistics
        gen.train()(torch.randn(256, 16), torch.rand(256, 12))
    gen.eval()
    n = networks.INFERENCE_ROWS + 77  # more than one chunk
    noise = torch.randn(n, 16)
    hot = torch.stack(
        [torch.randint(0, 5, (n,)), torch.randint(5, 12, (n,))], 1
    )  # two hot entries per row
    cond = torch.zeros(n, 12).scatter_(1, hot, 1.0)
    with torch.enable_grad():
        dense = gen(noise, cond)  # grad mode: the plain Sequential path
    torch.testing.assert_close(gen.sample(noise, hot), dense.detach(), rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(gen(noise, cond), dense.detach(), rtol=1e-4, atol=1e-4)
    assert networks.generator_flops_per_row(gen) == 2 * (16 * 32 + 48 * 24 + 72 * 20)
