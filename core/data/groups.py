"""Who is the same patient: a regex over file names or a groups CSV sets a manifest's ``group``.

Splits never put one group in two splits, and test intervals resample groups, so a patient's
several images must share one group.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from core.errors import DataError

logger = logging.getLogger(__name__)


def stem(path: str) -> str:
    """``a/b/person1_virus_2.jpeg`` -> ``person1_virus_2`` (every suffix of ``x.nii.gz`` dropped)."""
    name = Path(path).name
    return name.split(".")[0] if name.endswith(".nii.gz") else name.rsplit(".", 1)[0]


def groups_from_regex(manifest: pd.DataFrame, pattern: str) -> pd.Series:
    """Each row's group: the first capture group of ``pattern`` searched in its image's file stem.

    A name the pattern does not match stays its own group (counted in a warning); a pattern
    without a capture group raises ``DataError``.
    """
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise DataError(f"--group-regex {pattern!r} is not a valid regular expression: {err}") from err
    if compiled.groups < 1:
        raise DataError(f"--group-regex {pattern!r} has no capture group; put the patient id in "
                        "parentheses, e.g. '^(patient\\d+)_'.")
    stems = manifest["image"].map(stem)
    found = stems.map(lambda s: (m.group(1) if (m := compiled.search(s)) else None))
    unmatched = found.isna()
    if unmatched.any():
        logger.warning("--group-regex %r matched no patient id in %d of %d file names (e.g. %s); "
                       "each of those is its own patient", pattern, int(unmatched.sum()), len(stems),
                       ", ".join(stems[unmatched].head(3)))
    return found.fillna(stems)


def groups_from_csv(manifest: pd.DataFrame, path: Path) -> pd.Series:
    """Each row's group from a CSV with columns ``name`` (file stem or case id) and ``group``."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"Cannot read groups CSV {path}: {err}") from err
    table.columns = [str(c).strip().lower() for c in table.columns]
    if not {"name", "group"} <= set(table.columns):
        raise DataError(f"Groups CSV {path} needs columns 'name' (file stem or case id) and 'group' "
                        f"(patient id); it has {list(table.columns)}.")
    mapping = dict(zip(table["name"].str.strip(), table["group"].str.strip()))
    stems = manifest["image"].map(stem)
    found = stems.map(mapping).fillna(manifest["id"].astype(str).map(mapping))
    missing = found.isna()
    if missing.any():
        raise DataError(f"Groups CSV {path} has no row for {int(missing.sum())} of {len(stems)} images "
                        f"(e.g. {', '.join(stems[missing].head(3))}); add a 'name,group' row for each.")
    return found


def regroup(manifest: pd.DataFrame, *, pattern: str | None, csv: Path | None) -> pd.DataFrame:
    """The manifest with ``group`` from ``csv`` or ``pattern`` when either is given, else as read."""
    if pattern and csv:
        raise DataError("Give --group-regex or --groups-csv, not both.")
    if not (pattern or csv):
        return manifest
    groups = groups_from_csv(manifest, Path(csv)) if csv else groups_from_regex(manifest, str(pattern))
    out = manifest.assign(group=groups.to_numpy())
    logger.info("Grouped %d images into %d patients (%s)", len(out), out["group"].nunique(),
                f"groups CSV {csv}" if csv else f"--group-regex {pattern!r}")
    return out
