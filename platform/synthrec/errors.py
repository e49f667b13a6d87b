"""Errors a user can fix. The CLI prints their message as one line; Serve returns 4xx.

Every message says what is wrong, where (field, column, URI), what is allowed, and the fix.
"""


class SynthrecError(Exception):
    """Base class for errors caused by input, configuration or environment."""


class ConfigError(SynthrecError):
    """A configuration value, flag or YAML key is wrong."""


class DataError(SynthrecError):
    """A table, file or column does not meet what the step needs."""


class SchemaError(DataError):
    """A schema file or a table's columns do not agree with the schema."""


class StorageError(SynthrecError):
    """A local path or s3:// URI cannot be read or written."""


class ModelError(SynthrecError):
    """A model directory is missing, incomplete or incompatible."""


class ConditionError(ModelError):
    """A generation condition names an unknown column or a value never seen in training."""


class ClusterError(SynthrecError):
    """A Ray cluster or job cannot be reached or failed."""
