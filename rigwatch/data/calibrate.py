"""Measure the simulator's parameters on real data and write ``calibration.json``.

Run ``python -m rigwatch.data.calibrate PATH`` (a per-cycle CSV, or the UCI zip
or folder) to regenerate the packaged file after the data or the model of the
simulator changes.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from rigwatch.data.columns import CLASSES, LABEL_COLUMNS, SENSOR_COLUMNS, Dataset
from rigwatch.data.resolve import load_path
from rigwatch.data.simulator import CALIBRATION_FILE
from rigwatch.exceptions import DataError

__all__ = ["calibrate", "main", "write_calibration"]

FORMAT_VERSION = 1


def calibrate(dataset: Dataset) -> dict[str, Any]:
    """Per cooler class: row count, sensor mean and covariance, joint label frequencies.

    Parameters
    ----------
    dataset
        Real cycles with every class of ``cool_cond_y`` present.

    Returns
    -------
    dict
        JSON-serialisable parameters for :func:`rigwatch.data.simulate`.

    Raises
    ------
    DataError
        A class has too few rows to estimate a covariance of the 17 sensors.
    """
    per_class = []
    for cls in CLASSES:
        rows = dataset.cool_cond == cls
        k = int(rows.sum())
        if k <= len(SENSOR_COLUMNS):
            raise DataError(
                f"{dataset.source}: cool_cond_y={cls} has {k} rows, expected more than "
                f"{len(SENSOR_COLUMNS)} to estimate a covariance"
            )
        x = dataset.sensors[rows]
        combos, counts = np.unique(dataset.labels[rows, 1:], axis=0, return_counts=True)
        per_class.append(
            {
                "cool_cond_y": cls,
                "count": k,
                "mean": x.mean(axis=0).tolist(),
                "cov": np.cov(x, rowvar=False).tolist(),
                "label_combos": combos.tolist(),
                "label_counts": counts.tolist(),
            }
        )
    return {
        "format": FORMAT_VERSION,
        "generated_by": "python -m rigwatch.data.calibrate",
        # The file name only: an absolute path would leak the author's machine.
        "data_source": dataset.source.split(":", 1)[0] + ":" + Path(dataset.source).name,
        "data_sha256": dataset.sha256(),
        "sensor_columns": list(SENSOR_COLUMNS),
        "label_columns": list(LABEL_COLUMNS),
        "per_class": per_class,
    }


def write_calibration(calibration: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``calibration`` as JSON (via a temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(calibration, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m rigwatch.data.calibrate PATH [--out FILE]``."""
    parser = argparse.ArgumentParser(prog="python -m rigwatch.data.calibrate", description=__doc__)
    parser.add_argument("data", help="per-cycle CSV, or the UCI data.zip or its folder")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).with_name(CALIBRATION_FILE),
        help="where to write (default: the packaged %(default)s)",
    )
    args = parser.parse_args(argv)
    dataset = load_path(args.data, progress=lambda name: print(f"reading {name}"))
    out = write_calibration(calibrate(dataset), args.out)
    print(f"calibrated on {len(dataset)} rows of {dataset.source} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
