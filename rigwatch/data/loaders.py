"""Read the hydraulic data: the per-cycle CSV and the original UCI archive.

The UCI archive (``data.zip`` or its unpacked folder) holds one tab-separated
file per sensor, one row per cycle and one column per sample within the cycle
(60 at 1 Hz, 600 at 10 Hz, 6000 at 100 Hz), plus ``profile.txt`` with the five
labels. The model works on per-cycle means, so each file is reduced to the mean
of every row while it is read, a few hundred rows at a time, which keeps memory
small for the 100 Hz files.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import IO

import numpy as np

from rigwatch.data.columns import LABEL_COLUMNS, SENSOR_COLUMNS, UCI_FILES, Dataset
from rigwatch.exceptions import DataError

__all__ = [
    "PROFILE_FILE",
    "load_csv",
    "load_uci",
    "mean_per_cycle",
    "read_profile",
    "uci_members",
    "write_csv",
]

#: The labels file of the UCI archive.
PROFILE_FILE = "profile.txt"

# Rows parsed per np.loadtxt call: measured on a 6000-column file, 64..256 rows
# are equally fast (~3 s for 2205 rows) and keep the parsed block under 12 MB.
_CHUNK_ROWS = 128

Opener = Callable[[], IO[bytes]]


def _stream_name(source: object) -> str:
    return str(getattr(source, "name", None) or "<stream>")


@contextmanager
def _text_lines(source: str | os.PathLike[str] | IO[bytes] | IO[str]) -> Iterator[IO[str]]:
    """Open a path, or wrap a binary/text file object, as text lines."""
    if isinstance(source, str | os.PathLike):
        try:
            handle = open(source, encoding="latin-1", newline=None)  # noqa: SIM115
        except OSError as exc:
            raise DataError(f"{source}: cannot open: {exc}") from exc
        with handle:
            yield handle
    elif isinstance(source, io.TextIOBase):
        yield source
    else:
        # latin-1 maps every byte, so a stray byte becomes a parse error that
        # names the row instead of a UnicodeDecodeError without one.
        wrapper = io.TextIOWrapper(source, encoding="latin-1", newline=None)  # type: ignore[arg-type,type-var]
        try:
            yield wrapper
        finally:
            # Leave the caller's file object open: it is theirs to close.
            wrapper.detach()


def _bad_row(chunk: list[str], start: int, width: int | None, name: str) -> DataError:
    """Find the first malformed line of a block np.loadtxt rejected, and say what is wrong."""
    for offset, line in enumerate(chunk):
        values = line.split()
        if not values:
            continue
        for value in values:
            try:
                float(value)
            except ValueError:
                return DataError(f"{name}: row {start + offset + 1}: {value!r} is not a number")
        if width is None:
            width = len(values)
        elif len(values) != width:
            return DataError(
                f"{name}: row {start + offset + 1} has {len(values)} values, "
                f"expected {width} like the rows before"
            )
    return DataError(f"{name}: rows {start + 1}-{start + len(chunk)} are not a numeric matrix")


def _row_blocks(lines: IO[str], name: str) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first row number, float block)`` for a tab/space-separated matrix."""
    start = 0
    width: int | None = None
    while True:
        chunk = list(itertools.islice(lines, _CHUNK_ROWS))
        if not chunk:
            break
        try:
            block = np.loadtxt(chunk, dtype=np.float64, ndmin=2)
        except ValueError as exc:
            raise _bad_row(chunk, start, width, name) from exc
        if width is None:
            width = block.shape[1]
        elif block.shape[1] != width:
            raise _bad_row(chunk, start, width, name)
        yield start, block
        start += len(block)
    if width is None:
        raise DataError(f"{name}: no rows, expected one row per cycle")


def mean_per_cycle(
    source: str | os.PathLike[str] | IO[bytes] | IO[str], *, name: str | None = None
) -> np.ndarray:
    """Return the mean of every row of one tab-separated UCI sensor file.

    Parameters
    ----------
    source
        A path, or an open binary or text file object (a zip member works).
    name
        The name used in error messages; defaults to the path or ``source.name``.

    Returns
    -------
    numpy.ndarray
        float64, one mean per row (per cycle).

    Raises
    ------
    DataError
        The file is missing, empty, not numeric, or its rows differ in length.

    Examples
    --------
    >>> import io
    >>> mean_per_cycle(io.BytesIO(b"1\\t2\\t3\\n4\\t5\\t6\\n")).tolist()
    [2.0, 5.0]
    """
    label = name or (str(source) if isinstance(source, str | os.PathLike) else _stream_name(source))
    with _text_lines(source) as lines:
        means = [block.mean(axis=1) for _, block in _row_blocks(lines, label)]
    return np.concatenate(means)


def read_profile(
    source: str | os.PathLike[str] | IO[bytes] | IO[str], *, name: str | None = None
) -> np.ndarray:
    """Return the labels of ``profile.txt``: int64 ``(n, 5)`` in ``LABEL_COLUMNS`` order.

    Examples
    --------
    >>> import io
    >>> read_profile(io.BytesIO(b"3\\t100\\t0\\t130\\t1\\n")).tolist()
    [[3, 100, 0, 130, 1]]
    """
    label = name or (str(source) if isinstance(source, str | os.PathLike) else _stream_name(source))
    with _text_lines(source) as lines:
        values = np.concatenate([block for _, block in _row_blocks(lines, label)])
    if values.shape[1] != len(LABEL_COLUMNS):
        raise DataError(
            f"{label}: {values.shape[1]} columns, expected {len(LABEL_COLUMNS)} ({', '.join(LABEL_COLUMNS)})"
        )
    return _whole_numbers(values, LABEL_COLUMNS, label)


def _whole_numbers(values: np.ndarray, names: tuple[str, ...], where: str) -> np.ndarray:
    """Return ``values`` as int64, or name the first cell that is not a whole number."""
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(
            f"{where}: data row {row + 1} {names[col]}={float(values[row, col])!r}, expected a whole number"
        )
    return values.astype(np.int64)


def _is_noise(name: str) -> bool:
    # macOS zips carry AppleDouble shadows ("__MACOSX/…", "._PS1.txt") of every file.
    return "__MACOSX" in name or Path(name).name.startswith("._")


def _binary_opener(path: Path) -> Opener:
    def opener() -> IO[bytes]:
        return open(path, "rb")

    return opener


def _folder_members(folder: Path) -> dict[str, Opener]:
    members: dict[str, Opener] = {}
    # Shallowest first, so a stray copy deeper down never shadows the real file.
    for path in sorted(folder.rglob("*"), key=lambda p: (len(p.parts), str(p))):
        if path.is_file() and not _is_noise(str(path)):
            members.setdefault(path.name, _binary_opener(path))
    return members


def _zip_members(archive: zipfile.ZipFile) -> dict[str, Opener]:
    members: dict[str, Opener] = {}
    infos = sorted(archive.infolist(), key=lambda i: (i.filename.count("/"), i.filename))
    for info in infos:
        if not info.is_dir() and not _is_noise(info.filename):
            members.setdefault(Path(info.filename).name, partial(archive.open, info))
    return members


def _open_members(path: Path, stack: ExitStack) -> dict[str, Opener]:
    if path.is_dir():
        members = _folder_members(path)
    elif path.is_file() and zipfile.is_zipfile(path):
        members = _zip_members(stack.enter_context(zipfile.ZipFile(path)))
    elif path.exists():
        raise DataError(f"{path}: not a folder or a zip archive, expected the UCI data")
    else:
        raise DataError(f"{path}: does not exist, expected the UCI data folder or zip")
    if PROFILE_FILE in members:
        return members
    # The text files may come wrapped in an inner data.zip (the download's layout
    # is not pinned anywhere): look one archive deeper before giving up.
    for name, opener in members.items():
        if name.lower().endswith(".zip"):
            with opener() as handle:
                inner = zipfile.ZipFile(io.BytesIO(handle.read()))
            nested = _zip_members(stack.enter_context(inner))
            if PROFILE_FILE in nested:
                return nested
    return members


@contextmanager
def uci_members(path: str | os.PathLike[str]) -> Iterator[dict[str, Opener]]:
    """Map the file names of a UCI archive or folder to openers of their bytes.

    Members are found by file name at any depth (the archive may hold a
    subfolder) and inside a nested ``*.zip`` when the top level has no
    ``profile.txt``. The openers are valid inside the ``with`` block.

    Raises
    ------
    DataError
        ``path`` does not exist or is neither a folder nor a zip archive.
    """
    with ExitStack() as stack:
        yield _open_members(Path(path), stack)


def load_uci(path: str | os.PathLike[str], *, progress: Callable[[str], None] | None = None) -> Dataset:
    """Load the original UCI archive (``data.zip`` or its folder) as per-cycle means.

    Parameters
    ----------
    path
        A folder of the tab-separated ``*.txt`` files, or a zip holding them.
    progress
        Called with each file name before it is read; the 100 Hz files take a
        few seconds each.

    Returns
    -------
    Dataset
        ``cycle`` is the 0-based row number; ``source`` is ``"uci:<path>"``.

    Raises
    ------
    DataError
        A file is missing, unreadable, or its row count differs from ``profile.txt``.
    """
    path = Path(path)
    files = [PROFILE_FILE] + [f"{UCI_FILES[c]}.txt" for c in SENSOR_COLUMNS]
    with uci_members(path) as members:
        missing = [f for f in files if f not in members]
        if missing:
            raise DataError(
                f"{path}: missing {', '.join(missing)}; expected the UCI files {', '.join(files)}"
            )
        if progress is not None:
            progress(PROFILE_FILE)
        with members[PROFILE_FILE]() as handle:
            labels = read_profile(handle, name=f"{path}/{PROFILE_FILE}")
        n = len(labels)
        sensors = np.empty((n, len(SENSOR_COLUMNS)), dtype=np.float64)
        for j, column in enumerate(SENSOR_COLUMNS):
            file_name = f"{UCI_FILES[column]}.txt"
            if progress is not None:
                progress(file_name)
            with members[file_name]() as handle:
                means = mean_per_cycle(handle, name=f"{path}/{file_name}")
            if len(means) != n:
                raise DataError(
                    f"{path}/{file_name}: {len(means)} rows, but {PROFILE_FILE} has {n}; "
                    "every file needs one row per cycle"
                )
            sensors[:, j] = means
    return Dataset(np.arange(n, dtype=np.int64), sensors, labels, f"uci:{path}")


def _parse_float(text: str, path: Path, line: int, column: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{path}: line {line} {column}={text!r}, expected a number") from None


def load_csv(path: str | os.PathLike[str]) -> Dataset:
    """Load the per-cycle CSV (``cycle``, the 17 sensors, the 5 labels).

    Columns are found by name, so their order does not matter and extra columns
    are ignored. When ``cycle`` is absent the 0-based row number is used.

    Raises
    ------
    DataError
        The file cannot be read, a sensor or label column is missing, or a value
        is not a number (labels: not a whole number).
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: empty file, expected a header row")
            header = [h.strip() for h in header]
            wanted = ("cycle", *SENSOR_COLUMNS, *LABEL_COLUMNS)
            missing = [c for c in wanted[1:] if c not in header]
            if missing:
                raise DataError(f"{path}: missing column(s) {', '.join(missing)}; header is {header}")
            index = [header.index(c) if c in header else -1 for c in wanted]
            rows: list[list[float]] = []
            for line, record in enumerate(reader, start=2):
                if not record:
                    continue
                if len(record) != len(header):
                    raise DataError(f"{path}: line {line} has {len(record)} fields, header has {len(header)}")
                rows.append(
                    [
                        float(len(rows)) if i < 0 else _parse_float(record[i], path, line, c)
                        for c, i in zip(wanted, index, strict=True)
                    ]
                )
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    if not rows:
        raise DataError(f"{path}: no data rows, expected one row per cycle")
    values = np.array(rows, dtype=np.float64)
    n_sensors = len(SENSOR_COLUMNS)
    cycle = _whole_numbers(values[:, :1], ("cycle",), str(path))[:, 0]
    labels = _whole_numbers(values[:, 1 + n_sensors :], LABEL_COLUMNS, str(path))
    return Dataset(cycle, values[:, 1 : 1 + n_sensors], labels, f"csv:{path}")


def write_csv(dataset: Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``dataset`` as the per-cycle CSV that :func:`load_csv` reads back exactly.

    Floats are written with ``repr`` (shortest round-trip form), so a reload
    gives the same bits and the same :meth:`Dataset.sha256`. The file appears
    atomically: it is written under a temporary name and renamed.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("cycle", *SENSOR_COLUMNS, *LABEL_COLUMNS))
        for cycle, sensors, labels in zip(
            dataset.cycle.tolist(), dataset.sensors.tolist(), dataset.labels.tolist(), strict=True
        ):
            writer.writerow([cycle, *map(repr, sensors), *labels])
    os.replace(tmp, path)
    return path
