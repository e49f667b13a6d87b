"""synthrec: synthetic interaction logs and recommenders on Ray.

    import synthrec
    synth = synthrec.Synthesizer().fit(df)   # a pandas DataFrame or a pyarrow Table
    rows = synth.sample(1_000, conditions={"genre": "Drama"})
    seq = synthrec.SequenceSynthesizer().fit(df)      # users, catalog, each user's events
    log = seq.sample_table(users=500)                 # one row per event
    synth.save("model/"); synthrec.Synthesizer.load("model/")
    report = synthrec.evaluate_report(df, rows)       # .verdict, .to_html(), .figures()

`import synthrec` stays light: `Synthesizer` (and torch with it) loads on first use.
"""

__version__ = "0.1.0"

# Public names loaded on first access (module that defines each), so importing the package
# does not import torch.
_LAZY = {
    "Synthesizer": "synthrec.gan.synthesizer",
    "SequenceSynthesizer": "synthrec.sequences.synthesizer",
    "Report": "synthrec.evaluate.api",
    "evaluate_report": "synthrec.evaluate.api",
}
# subpackages reachable as attributes after `import synthrec` alone (synthrec.evaluate....)
_SUBPACKAGES = {"evaluate"}
__all__ = [
    "Report",
    "SequenceSynthesizer",
    "Synthesizer",
    "evaluate_report",
    "read_synthetic",
    "__version__",
]


def __getattr__(name: str):  # no typing import: it alone would cost more than the package
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"synthrec.{name}")
    raise AttributeError(f"module 'synthrec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBPACKAGES)


def read_synthetic(uri: str, storage=None):
    """Read a published synthetic dataset (only datasets with a manifest are trusted)."""
    from synthrec.storage import read_dataset

    return read_dataset(uri, storage)
