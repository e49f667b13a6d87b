"""`synthrec` commands: evaluate."""

from synthrec.cli.app import app  # noqa: F401
