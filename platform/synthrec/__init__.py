"""synthrec: synthetic interaction logs and recommenders on Ray."""

__version__ = "0.1.0"


def read_synthetic(uri: str, storage=None):
    """Read a published synthetic dataset (only datasets with a manifest are trusted)."""
    from synthrec.storage import read_dataset

    return read_dataset(uri, storage)
