"""The hydraulic rig data: schema, loaders, download, simulator and resolution.

Examples
--------
>>> from rigwatch.data import FEATURES, SENSOR_COLUMNS
>>> len(SENSOR_COLUMNS), len(FEATURES), "cool_eff_pct" in FEATURES
(17, 16, False)
"""

from __future__ import annotations

from rigwatch.data.columns import (
    CLASS_LABELS,
    CLASSES,
    FEATURES,
    LABEL_COLUMNS,
    SENSOR_COLUMNS,
    TARGET,
    UCI_FILES,
    Dataset,
)
from rigwatch.data.download import DownloadError, download_archive, verify_archive
from rigwatch.data.loaders import load_csv, load_uci, mean_per_cycle, read_profile, write_csv
from rigwatch.data.resolve import default_cache_dir, load_path, resolve_data
from rigwatch.data.simulator import load_calibration, simulate

__all__ = [
    "CLASSES",
    "CLASS_LABELS",
    "FEATURES",
    "LABEL_COLUMNS",
    "SENSOR_COLUMNS",
    "TARGET",
    "UCI_FILES",
    "Dataset",
    "DownloadError",
    "default_cache_dir",
    "download_archive",
    "load_calibration",
    "load_csv",
    "load_path",
    "load_uci",
    "mean_per_cycle",
    "read_profile",
    "resolve_data",
    "simulate",
    "verify_archive",
    "write_csv",
]
