"""Score a CSV file with the streaming scorer: ``rigwatch score``.

Each good row becomes a SensorReading, encoded as a producer would send it, and
batches of them go through :meth:`Scorer.score <services.scorer.handler.Scorer.score>`,
the streaming scorer's own batch logic with its humility rules. Its predictions
are decoded back into columns, so a file row gets exactly what the same reading
gets on ``rig.predictions`` (or, when a rule rejects it, the ``error`` and
``error_detail`` its DLQ record would carry): there is no second implementation
of scoring or humility to drift apart from the first.

Output: the input columns as they were, then :func:`output_columns`. Rows come
out in input order; bad rows (:mod:`services.scorer.csvrows`) are left out and
reported. The output is written under a temporary name and renamed at the end,
so a failed run leaves no half-written file.
"""

from __future__ import annotations

import csv
import io
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rigwatch.codec import Codec
from rigwatch.config import Settings
from rigwatch.exceptions import ConfigError, DataError, ModelError
from rigwatch.fastcodec import compile_encoder
from rigwatch.lifecycle.exceptions import LifecycleError
from rigwatch.lifecycle.store import MIN_PREFIX, ModelStore
from rigwatch.model import ModelPackage
from services.scorer.csvrows import BadRow, BadRowError, RowReader, sensor_fields
from services.scorer.handler import Scorer

__all__ = ["FILE_RIG", "FileReport", "OnError", "load_model", "output_columns", "score_file"]

OnError = Literal["skip", "fail"]
#: ``rig_id`` of the readings built from a file (the scorer rejects an empty one).
FILE_RIG = "file"
#: What ``--model`` takes for a version rather than a folder: a version or a prefix of one.
_VERSION = re.compile(rf"[0-9a-f]{{{MIN_PREFIX},12}}")
#: Outcome of a row the scorer answered with a prediction / sent to the DLQ.
SCORED, REJECTED = "scored", "rejected"


def output_columns(classes: Sequence[str]) -> tuple[str, ...]:
    """The columns appended to every input row; one probability column per class, in the model's order.

    Examples
    --------
    >>> output_columns(("3", "20", "100"))[:6]
    ('model_version', 'predicted_label', 'confidence', 'p_3', 'p_20', 'p_100')
    """
    return (
        "model_version",
        "predicted_label",
        "confidence",
        *(f"p_{c}" for c in classes),
        "flags",  # the prediction's humility flags, joined by ';'
        "outcome",  # scored | rejected
        "error",  # a rejected row's DLQ `error` header (humility:<rule>)
        "error_detail",  # ... and its `error_detail`
    )


@dataclass
class FileReport:
    """What one file gave: counts of rows by outcome, and every bad row."""

    source: str
    out: Path
    model_name: str = ""
    model_version: str = ""
    rows: int = 0
    scored: int = 0
    flagged: int = 0
    overridden: int = 0
    rejected: int = 0
    bad: list[BadRow] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for people, e.g. at the end of ``rigwatch score``."""
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.rows:,} rows of {self.source} with {self.model_name} {self.model_version} "
            f"in {self.seconds:.2f} s ({rate:,.0f} rows/s): {self.scored:,} scored "
            f"({self.flagged:,} flagged, {self.overridden:,} overridden), {self.rejected:,} rejected "
            f"by humility rules, {len(self.bad):,} bad rows skipped -> {self.out}"
        )


def load_model(
    settings: Settings, default: Path, *, model: str | None = None, deployment: str | None = None
) -> ModelPackage:
    """The package to score with: a folder, a version in the model store, or a deployment's champion.

    *model* is a package folder if one exists at that path, else a registered
    version (or a unique prefix) in ``settings.model_store``; *deployment* names
    a deployment whose current champion is loaded from the store (read from
    ``rig.deployments``, so it needs the broker); neither means the folder *default*.

    Raises
    ------
    ConfigError
        Both given.
    LifecycleError
        An unknown deployment.
    ModelError
        No such folder or version, or the package does not load.
    """
    if model is not None and deployment is not None:
        raise ConfigError("--model and --deployment: give one of them, not both")
    if deployment is not None:
        from rigwatch.lifecycle.deployments import read_deployments

        active = read_deployments(settings)
        if deployment not in active:
            known = ", ".join(sorted(active)) or "none yet"
            raise LifecycleError(f"deployment {deployment!r} does not exist (deployments: {known})")
        return ModelStore(settings.model_store).load(active[deployment]["champion"])
    if model is None:
        return ModelPackage.load(default)
    if Path(model).is_dir():
        return ModelPackage.load(model)
    if _VERSION.fullmatch(model.strip().lower()):
        return ModelStore(settings.model_store).load(model)
    raise ModelError(
        f"--model {model}: no package folder there, and not a model version (12 hex digits or a unique "
        "prefix, as `rigwatch models list` shows)"
    )


class _Batcher:
    """Rows waiting for the scorer, and the writer their outputs go to."""

    def __init__(self, scorer: Scorer, predictions: Codec, writer: Any, report: FileReport) -> None:
        self.scorer, self.writer, self.report = scorer, writer, report
        self.decode = predictions.decode
        self.classes = scorer.model.classes
        self.fields: list[list[str]] = []
        self.values: list[bytes] = []

    def add(self, fields: list[str], value: bytes) -> None:
        self.fields.append(fields)
        self.values.append(value)

    def flush(self, now_ms: int) -> None:
        if not self.values:
            return
        scored = self.scorer.score(self.values, now_ms=now_ms)
        rows: list[list[Any]] = [[] for _ in self.values]
        version, report = self.scorer.model.version, self.report
        for i, (_, value) in zip(scored.indices, scored.outputs, strict=True):
            p = self.decode(value)
            probabilities, flags = p["probabilities"], p["flags"]
            rows[i] = [
                p["model_version"],
                p["predicted_label"],
                p["confidence"],
                *(probabilities[c] for c in self.classes),
                ";".join(flags),
                SCORED,
                "",
                "",
            ]
            report.scored += 1
            report.flagged += bool(flags)
            report.overridden += any(f.startswith("override:") for f in flags)
        blank = [""] * (len(self.classes) + 3)
        for reject in scored.rejects:
            rows[reject.index] = [version, *blank, REJECTED, reject.reason, reject.detail]
            report.rejected += 1
        self.writer.writerows(fields + row for fields, row in zip(self.fields, rows, strict=True))
        self.fields, self.values = [], []


def score_file(
    scorer: Scorer,
    readings: Codec,
    predictions: Codec,
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    on_error: OnError = "skip",
    batch: int = 2000,
    on_bad: Callable[[BadRow], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> FileReport:
    """Score every row of the CSV *source* with *scorer*; write *out*; return the counts.

    Parameters
    ----------
    scorer
        The streaming scorer, built with the model and humility rules to use.
    readings, predictions
        The SensorReading and Prediction codecs the scorer was built with.
    on_error
        ``skip``: leave a bad row out, call *on_bad* with it and go on; ``fail``:
        raise :class:`~services.scorer.csvrows.BadRowError` at the first one.
    batch
        Rows per :meth:`Scorer.score` call (outputs do not depend on it).
    on_progress
        Called after each batch with the bytes of *source* read and the rows seen so far.

    Raises
    ------
    DataError
        The file cannot be read, has no header, lacks a model feature, or has a
        column whose name an output column takes; or (``fail``) a bad row.
    """
    if on_error not in ("skip", "fail"):
        raise DataError(f"on_error={on_error!r}: expected skip or fail")
    source, out = Path(source), Path(out)
    started = time.perf_counter()
    model = scorer.model
    sensors = sensor_fields(readings.schema)
    unknown = [f for f in model.features if f not in sensors]
    if unknown:
        raise ModelError(
            f"model {model.version}: feature {', '.join(unknown)} is no sensor of the SensorReading schema"
        )
    report = FileReport(str(source), out, model.name, model.version)
    try:
        raw = open(source, "rb")  # noqa: SIM115 (the with below closes it)
    except OSError as exc:
        raise DataError(f"{source}: cannot open: {exc}") from exc
    tmp = out.with_name(f".{out.name}.tmp")
    with raw:
        # utf-8-sig: a spreadsheet's byte-order mark would otherwise stick to the first column name.
        rows = csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""))
        try:
            header = next(rows)
            reader = RowReader(header, sensors, model.features, str(source))
            added = output_columns(model.classes)
            if taken := [name for name in added if name in header]:
                raise DataError(
                    f"{source}: column {', '.join(taken)} would be overwritten by the output; rename it"
                )
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8", newline="") as sink:
                writer = csv.writer(sink)
                writer.writerow([*header, *added])
                batcher = _Batcher(scorer, predictions, writer, report)
                _score_rows(
                    rows,
                    reader,
                    batcher,
                    compile_encoder(readings),
                    report,
                    on_error,
                    batch,
                    on_bad,
                    lambda: on_progress(raw.tell(), report.rows) if on_progress is not None else None,
                )
            os.replace(tmp, out)
        except StopIteration:
            raise DataError(
                f"{source}: empty file, expected a header row with the model's features"
            ) from None
        except csv.Error as exc:
            raise DataError(f"{source}: line {rows.line_num}: not readable as CSV: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise DataError(f"{source}: line {rows.line_num + 1}: not UTF-8 text: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
    if on_progress is not None:
        on_progress(source.stat().st_size, report.rows)
    report.seconds = time.perf_counter() - started
    return report


def _score_rows(
    rows: Any,
    reader: RowReader,
    batcher: _Batcher,
    encode: Callable[[dict[str, Any]], bytes],
    report: FileReport,
    on_error: OnError,
    batch: int,
    on_bad: Callable[[BadRow], None] | None,
    progress: Callable[[], None],
) -> None:
    now_ms = int(time.time() * 1000)
    for fields in rows:
        if not fields:
            continue  # a blank line is no row
        report.rows += 1
        parsed = reader.parse(fields, report.rows, rows.line_num)
        if isinstance(parsed, BadRow):
            if on_error == "fail":
                raise BadRowError(report.source, parsed)
            report.bad.append(parsed)
            if on_bad is not None:
                on_bad(parsed)
            continue
        reading = {
            "event_id": str(report.rows),
            "rig_id": FILE_RIG,
            "cycle": report.rows,
            "event_time": now_ms,
        }
        batcher.add(fields, encode(reading | parsed))
        if len(batcher.values) >= batch:
            batcher.flush(now_ms)
            progress()
            now_ms = int(time.time() * 1000)
    batcher.flush(now_ms)
