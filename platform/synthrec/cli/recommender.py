"""`synthrec` commands: recommender."""

from synthrec.cli.app import app  # noqa: F401
