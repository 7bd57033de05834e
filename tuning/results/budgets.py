"""Whether finished runs searched on the same footing: budget, search method and seed, read from
each run's ``run_options.json`` and ``summary.json``, with what differs named run by run.

A comparison of search methods means something only when the budget (trials, epochs, space, data)
is the same and the methods differ; runs with another seed are repeats, not a different setting.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from tuning.results.analysis import search_methods

# What each compared setting is; the order is the order of the notes.
BUDGET = ("space", "searched", "metric", "num_samples", "max_epochs", "time_budget_s", "folds",
          "overrides", "data")
METHOD = ("search", "scheduler", "grace_period", "reduction_factor")
SEED = ("seed",)
UNKNOWN = "unknown"


def data_identity(options: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    """The prepared data's fingerprint (its cache key) when saved, else where it came from: the
    dataset folder, or the phantom and its difficulty (runs saved before phantoms had one used
    what is now the easy phantom, so their difficulty reads as unsaved)."""
    key = options.get("data_fingerprint") or (summary.get("settings") or {}).get("data", {}).get("cache_key")
    if key:
        return f"fingerprint {key}"
    data = options.get("data") or {}
    if data.get("root"):
        return f"folder {data['root']}"
    return f"phantom ({data.get('phantom_difficulty', 'difficulty unsaved')})" if options else UNKNOWN


def run_settings(options: Mapping[str, Any], summary: Mapping[str, Any]) -> dict[str, Any]:
    """A run's budget, method and seed as flat, comparable values (``UNKNOWN`` where unsaved).

    options: the run's ``run_options.json`` ({} when missing); summary: its ``summary.json``.
    """
    sweep = options.get("sweep") or (summary.get("settings") or {}).get("sweep") or {}
    search, scheduler = search_methods({"sweep": sweep}) if sweep else (UNKNOWN, UNKNOWN)

    def saved(key: str) -> Any:
        value = sweep.get(key, UNKNOWN) if sweep else UNKNOWN
        return "none" if value is None else value

    overrides = options.get("overrides")
    return {
        "space": summary.get("space", UNKNOWN),
        "searched": ", ".join(summary.get("searched") or []) or "none",
        "metric": f"{summary.get('selection_metric')} ({summary.get('mode')})",
        "num_samples": saved("num_samples"), "max_epochs": saved("max_epochs"),
        "time_budget_s": saved("time_budget_s"),
        "folds": options.get("folds", 0) if options else UNKNOWN,
        "overrides": json.dumps(overrides, sort_keys=True) if overrides is not None else UNKNOWN,
        "data": data_identity(options, summary),
        "search": search, "scheduler": scheduler,
        "grace_period": saved("grace_period"), "reduction_factor": saved("reduction_factor"),
        "seed": saved("seed"),
    }


def differing(settings: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[str]:
    """The ``keys`` whose values are not the same in every run (unknown counts as different)."""
    return [key for key in keys
            if len({str(s[key]) for s in settings}) > 1 or any(s[key] == UNKNOWN for s in settings)]


def _values(names: Sequence[str], settings: Sequence[Mapping[str, Any]], key: str) -> str:
    return ", ".join(f"{name}: {s[key]}" for name, s in zip(names, settings))


def footing_notes(names: Sequence[str], settings: Sequence[Mapping[str, Any]]) -> list[str]:
    """Markdown lines saying whether the budgets match, naming each setting that differs with
    every run's value, then the methods and the seeds."""
    budget, method = differing(settings, BUDGET), differing(settings, METHOD)
    first = settings[0]
    if not budget:
        lines = ["**Budgets match**: " + "; ".join(f"{key} {first[key]}" for key in BUDGET) + "."]
    else:
        lines = [f"**Budgets differ** in {', '.join(budget)}: not a like-for-like comparison."]
        lines += [f"- {key}: {_values(names, settings, key)}" for key in budget]
    lines += [""]
    if method:
        lines += [f"Methods differ in {', '.join(method)}:"]
        lines += [f"- {key}: {_values(names, settings, key)}" for key in method]
    else:
        lines += [f"Same method in every run: search {first['search']}, scheduler {first['scheduler']}."]
    lines += [""]
    if differing(settings, SEED):
        lines += [f"Seeds: {_values(names, settings, 'seed')} (runs with other seeds are repeats)."]
    else:
        lines += [f"Same seed in every run: {first['seed']}."]
    return lines
