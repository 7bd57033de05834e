"""Synthetic datasets written in the real on-disk formats, so the real readers always run.

One module per task; each task names its own generator (``Task.phantom``).
"""
