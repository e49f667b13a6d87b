"""The sequence generator: users, catalog and each user's events (see synthesizer.py)."""

from synthrec.sequences.synthesizer import SequenceSynthesizer

__all__ = ["SequenceSynthesizer"]
