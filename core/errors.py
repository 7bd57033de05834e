"""User-facing errors: bad input that should stop a run before any trial starts."""
from __future__ import annotations


class DataError(ValueError):
    """A dataset, file or option a user gave is unusable; the message names it and the fix.

    The CLI prints the message and exits with status 2.
    """


class ConfigError(ValueError):
    """A configuration value is invalid (unknown key, impossible model shape, bad flag)."""
