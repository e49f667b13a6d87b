"""`synthrec` commands: serving."""

from synthrec.cli.app import app  # noqa: F401
