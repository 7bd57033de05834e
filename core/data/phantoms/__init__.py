"""Synthetic datasets written in the real on-disk formats, so the real readers always run.

One module per task; each task names its own generator (``Task.phantom``). Every generator takes a
``difficulty``: ``hard`` (the default) leaves room for a search to find better configs than the
seed's defaults; ``easy`` is a clearly separable set for smoke tests and demos.
"""
from __future__ import annotations

DIFFICULTIES = ("easy", "hard")


def check_difficulty(difficulty: str) -> str:
    """``difficulty`` if it is one of ``DIFFICULTIES``, else a ValueError naming the choices."""
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"phantom difficulty {difficulty!r} is not one of {', '.join(DIFFICULTIES)}")
    return difficulty
