"""Find the data a user means: explicit path, cached UCI archive, download, simulator."""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

from rigwatch.data import download
from rigwatch.data.columns import Dataset
from rigwatch.data.loaders import load_csv, load_uci, write_csv
from rigwatch.data.simulator import simulate
from rigwatch.exceptions import DataError

__all__ = ["CACHE_ENV", "CSV_NAME", "DATA_ENV", "default_cache_dir", "load_path", "resolve_data"]

#: Environment variable naming the data to use (CSV, UCI zip or folder).
DATA_ENV = "RIGWATCH_DATA"
#: Environment variable naming the cache folder for the downloaded archive.
CACHE_ENV = "RIGWATCH_CACHE_DIR"
#: The per-cycle CSV looked for inside a data folder.
CSV_NAME = "hydraulic_cycles.csv"
# Averaging the 100 Hz files takes ~25 s, so the means of a cached archive are
# kept next to it and later runs read those instead.
_CACHED_CSV = "uci-447-cycles.csv"

_log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$RIGWATCH_CACHE_DIR``, else ``~/.cache/rigwatch``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "rigwatch"


def load_path(path: str | os.PathLike[str], *, progress: Callable[[str], None] | None = None) -> Dataset:
    """Load whatever ``path`` holds: a per-cycle CSV, a UCI zip, or a folder of either.

    A folder containing ``hydraulic_cycles.csv`` is read through that CSV;
    any other folder is read as the unpacked UCI archive.

    Raises
    ------
    DataError
        ``path`` does not exist or is not one of the forms above.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        return load_csv(p / CSV_NAME) if (p / CSV_NAME).is_file() else load_uci(p, progress=progress)
    if p.is_file() and p.suffix.lower() == ".csv":
        return load_csv(p)
    if p.is_file() and zipfile.is_zipfile(p):
        return load_uci(p, progress=progress)
    what = "does not exist" if not p.exists() else "is neither a .csv file, a zip nor a folder"
    raise DataError(f"{p}: {what}; expected a per-cycle CSV, the UCI data.zip or its unpacked folder")


def _load_archive(archive: Path, cached_csv: Path, progress: Callable[[str], None] | None) -> Dataset:
    download.verify_archive(archive)
    dataset = load_uci(archive, progress=progress)
    try:
        write_csv(dataset, cached_csv)
    except OSError as exc:
        # Only a speed-up for the next run; the data in hand is fine.
        _log.warning("could not cache the per-cycle means at %s: %s", cached_csv, exc)
    return dataset


def resolve_data(
    path: str | os.PathLike[str] | None = None,
    *,
    cache_dir: Path | None = None,
    allow_download: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Dataset:
    """Return the data to use, trying the sources a user expects in order.

    1. ``path``, else ``$RIGWATCH_DATA``: a ``.csv`` file, a UCI zip, or a folder
       (see :func:`load_path`). An explicit path that fails is an error, never a
       silent fallback.
    2. The UCI archive in ``cache_dir`` (default :func:`default_cache_dir`),
       downloaded there first when ``allow_download`` is true and checked
       against known member checksums. Its per-cycle means are cached beside it
       as a CSV, so later runs skip the ~25 s of averaging the 100 Hz files.
    3. Offline: the calibrated simulator, with a logged warning that says how to
       point at real data.

    ``Dataset.source`` tells which one was used.

    Parameters
    ----------
    path
        Explicit data location; ``None`` consults ``$RIGWATCH_DATA``.
    cache_dir
        Folder for the downloaded archive.
    allow_download
        Whether step 2 may use the network.
    progress
        Called with short status lines (file being read, download progress).

    Raises
    ------
    DataError
        An explicit path is unusable, or a cached or downloaded archive fails
        its checksum (delete it to download again).
    """
    # An empty value (``--data ""``, ``RIGWATCH_DATA=``) means "not given", not ".".
    explicit = path if path not in (None, "") else os.environ.get(DATA_ENV) or None
    if explicit is not None:
        return load_path(explicit, progress=progress)

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    archive = cache / download.ARCHIVE_NAME
    cached_csv = cache / _CACHED_CSV
    if cached_csv.is_file():
        return load_csv(cached_csv)
    if archive.is_file():
        return _load_archive(archive, cached_csv, progress)
    if allow_download:
        if progress is not None:
            progress(f"downloading {download.UCI_URL} to {archive}")
        try:
            download.download_archive(archive, progress=progress)
        except download.DownloadError as exc:
            reason = f"{exc} (offline?)"
        else:
            return _load_archive(archive, cached_csv, progress)
    else:
        reason = f"no data at {DATA_ENV} or in {cache} and downloading is disabled"
    dataset = simulate()
    _log.warning(
        "%s. Using %s instead: set %s to the UCI data.zip, its folder or a per-cycle CSV to use real data.",
        reason,
        dataset.source,
        DATA_ENV,
    )
    return dataset
