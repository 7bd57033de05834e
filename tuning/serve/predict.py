"""python -m tuning.predict results/<name> INPUT... [--out predictions.csv]

Run a finished run's best model on new files or folders (any format its space reads),
preprocessed exactly as in training, and write one CSV row per input: path, probability,
predicted class at the saved threshold, and an error for an input that could not be read.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from core.errors import DataError
from core.inference import find_cases, predict_cases, read_candidates
from core.model_folder import LoadedModel, load_model_folder
from core.tasks import get_task, tasks_taking


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tuning.predict", description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", type=Path, help="a results folder (its best/ is used) or a model folder")
    p.add_argument("inputs", type=Path, nargs="+",
                   help="files or folders: volumes or DICOM series folders (3D), PNG/JPEG (2D)")
    p.add_argument("--out", type=Path, default=Path("predictions.csv"),
                   help="CSV to write; segmentation masks go to <out stem>_masks/ beside it")
    p.add_argument("--masks", type=Path,
                   help="egfr: folder of tumour masks <case>.* (default: masks/ beside the inputs)")
    p.add_argument("--candidates", type=Path,
                   help="luna16: CSV of candidates in world mm (coordX, coordY, coordZ, and seriesuid "
                        "= the volume's file name to match several volumes); without it each volume "
                        "is a cutout, centre-cropped or padded to the model's shape")
    p.add_argument("--batch-size", type=int, default=16, help="inputs per forward pass")
    return p


def run(model: LoadedModel, args: argparse.Namespace) -> pd.DataFrame:
    """Predict every input and write the CSV (and masks); returns the table."""
    if args.candidates is not None and "point" not in get_task(model.task).inputs:
        raise DataError(f"--candidates applies to models of {tasks_taking('point')}; {model.name} is a "
                        f"{model.task} model, so leave it out.")
    candidates = read_candidates(args.candidates) if args.candidates is not None else None
    cases = find_cases(args.inputs, model.config.data, masks_dir=args.masks, candidates=candidates)
    if not cases:
        raise DataError(f"No input found in {', '.join(map(str, args.inputs))} for a {model.task} model.")
    mask_dir = args.out.parent / f"{args.out.stem}_masks" if model.segmentation else None
    rows = predict_cases(model, cases, batch_size=args.batch_size, mask_dir=mask_dir, progress=True)
    table = pd.DataFrame(rows)
    table = table[[c for c in table.columns if c != "error"] + ["error"]]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    return table


def main(argv: list[str] | None = None) -> int:
    """0: every input predicted; 1: some inputs failed (see the error column); 2: bad arguments."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        model = load_model_folder(args.model)
        table = run(model, args)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failed = table["error"].astype(bool)
    counts = table.loc[~failed, "prediction"].value_counts().to_dict() if "prediction" in table else {}
    print(f"{int((~failed).sum())}/{len(table)} inputs predicted by {model.name} "
          f"(threshold {model.threshold:.3f}): {counts}; {int(failed.sum())} failed -> {args.out}")
    return 1 if failed.any() else 0


if __name__ == "__main__":
    sys.exit(main())
