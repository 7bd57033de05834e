"""Passwords in URLs (``postgresql://user:pw@host/db``) kept out of every file, log and tag.

The real URL is used only to connect (Optuna's storage, MLflow's tracking URI); anything written
or shown goes through ``redact`` first.
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
