"""Passwords in URLs (``postgresql://user:pw@host/db``) kept out of every file, log and tag.

The real URL is used only to connect (Optuna's storage, MLflow's tracking URI); anything written
or shown goes through ``redact`` first. Objects that Ray pickles into the run's storage (the
tuner with its MLflow callback, the Optuna searcher with its database) hold the URL as a
``Secret``: pickled, it is the masked URL; unpickled in a process that was given the real URL
again (``secret(url)``, as ``--resume`` requires), it is the real one.
"""
from __future__ import annotations

import re
from typing import Any

MASK = "***"
# scheme://user:password@ : the password is everything between the first ':' after the user and '@'
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s/]+)(?P<at>@)")


def redact_text(text: str) -> str:
    """``text`` with every URL password replaced by ``***``: ``postgresql://u:***@host/db``."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['at']}", text)


_REAL: dict[str, str] = {}  # masked URL -> real URL, for this process only


class Secret(str):
    """A URL holding a password: itself in memory, masked whenever pickled or deep-copied."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _reveal, (redact_text(str(self)),)

    def format(self, *args: Any, **kwargs: Any) -> str:  # Optuna fills its URL template so
        return secret(str.format(self, *args, **kwargs))


def secret(url: str | None) -> str | None:
    """``url`` as a ``Secret`` if it holds a password (remembered for unpickling), else as is."""
    if url is None or redact_text(url) == url:
        return url
    _REAL[redact_text(url)] = str(url)
    return Secret(url)


def _reveal(masked: str) -> str:
    """Unpickling a ``Secret``: the real URL if this process was given it, else the masked one."""
    real = _REAL.get(masked)
    return Secret(real) if real is not None else masked


def redact(value: Any) -> Any:
    """``value`` (a string, or dicts/lists/tuples of them) with URL passwords masked; other
    values are returned unchanged."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    return value
