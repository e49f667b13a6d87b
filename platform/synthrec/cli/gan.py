"""`synthrec` commands: gan."""

from synthrec.cli.app import app  # noqa: F401
