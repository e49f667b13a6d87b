"""Conditional tabular GAN: networks, conditional sampler, training steps, Synthesizer.

No I/O (see synthrec.artifacts) and no Ray (see synthrec.distributed) in this package.
"""

from synthrec.gan.networks import Critic, GanLayout, Generator, generator_flops_per_row
from synthrec.gan.sampler import CondSampler
from synthrec.gan.synthesizer import Synthesizer, table_fingerprint
from synthrec.gan.train import (
    GanState,
    build_gan,
    build_sampler,
    critic_step,
    generator_step,
    train_epoch,
)

__all__ = [
    "Critic",
    "CondSampler",
    "GanLayout",
    "GanState",
    "Generator",
    "Synthesizer",
    "build_gan",
    "build_sampler",
    "critic_step",
    "generator_flops_per_row",
    "generator_step",
    "table_fingerprint",
    "train_epoch",
]
