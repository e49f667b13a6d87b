"""`synthrec` commands: cluster."""

from synthrec.cli.app import app  # noqa: F401
