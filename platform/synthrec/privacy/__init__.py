"""Differential privacy: the budget (plan and spending, Opacus's RDP accountant), per-unit
gradient clipping and noise (DP-SGD), and the check that every statistic of the real rows is
covered by the budget or declared public. No nn.Module, no I/O, no Ray here.
"""

from synthrec.privacy.budget import Budget, default_delta, epsilon_of, resolve_delta
from synthrec.privacy.dpsgd import add_noise, clip_and_sum, clip_and_sum_by_unit
from synthrec.privacy.statistics import (
    NoisyHistogram,
    PrivacyError,
    Statistic,
    check_accounted,
    check_sequence_accounted,
    encoder_statistics,
    private_columns,
)

__all__ = [
    "Budget",
    "NoisyHistogram",
    "PrivacyError",
    "Statistic",
    "add_noise",
    "check_accounted",
    "check_sequence_accounted",
    "clip_and_sum",
    "clip_and_sum_by_unit",
    "default_delta",
    "resolve_delta",
    "encoder_statistics",
    "epsilon_of",
    "private_columns",
]
