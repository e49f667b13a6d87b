"""`synthrec` commands: data."""

from synthrec.cli.app import app  # noqa: F401
