"""``rigwatch bench score``: rows/s of ``rigwatch score`` on a per-cycle CSV, and where the time goes.

Each repeat measures, in this process, on the same real cycles (repeated to
``rows``, in the per-cycle CSV's layout with its cycle and label columns):

``file``
    :func:`~services.scorer.scorefile.score_file` end to end: read and check the
    CSV, build and encode readings, :meth:`Scorer.score`, decode, write the output.
``scorer``
    :meth:`Scorer.score <services.scorer.handler.Scorer.score>` alone on the same
    readings pre-encoded, in the same batches: what the streaming scorer spends
    per reading inside its handler.
``model``
    ``predict_proba`` alone on the same rows as float32 batches: the floor.

Start-up (imports, loading the package) is not in the figures. Results go to
``<out>/score-<timestamp>.json`` and ``.md``: medians with min–max.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loadgen.bench import summary
from rigwatch.data import LABEL_COLUMNS, SENSOR_COLUMNS, Dataset
from rigwatch.model import ModelPackage
from rigwatch.schemas import Codecs
from services.scorer.handler import Scorer
from services.scorer.scorefile import FILE_RIG, score_file

__all__ = ["ScoreBenchOptions", "markdown", "run_score_bench", "write_cycles"]


@dataclass(frozen=True)
class ScoreBenchOptions:
    """What ``rigwatch bench score`` measures; see its ``--help``."""

    rows: int = 100_000
    repeats: int = 3
    batch: int = 2000
    out: Path = Path("results")


def write_cycles(dataset: Dataset, rows: int, path: Path) -> Path:
    """*rows* cycles of *dataset*, repeated in order, as a per-cycle CSV (exact float text)."""
    n = len(dataset)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["cycle", *SENSOR_COLUMNS, *LABEL_COLUMNS])
        sensors, labels = dataset.sensors.tolist(), dataset.labels.tolist()
        for i in range(rows):
            writer.writerow([i, *sensors[i % n], *labels[i % n]])
    return path


def _timed(work: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def _file_run(
    scorer: Scorer, codecs: Codecs, source: Path, out: Path, batch: int
) -> tuple[float, float, int]:
    """Wall and CPU seconds of one ``score_file`` run, and the rows it scored."""
    wall, cpu = time.perf_counter(), time.process_time()
    report = score_file(scorer, codecs.sensor_reading, codecs.prediction, source, out, batch=batch)
    return time.perf_counter() - wall, time.process_time() - cpu, report.scored


def _rates(rows: int, wall: float, cpu: float) -> dict[str, float]:
    return {"rows_per_s": rows / wall, "rows_per_cpu_s": rows / cpu, "us_per_row": wall / rows * 1e6}


def _encoded(dataset: Dataset, codecs: Codecs, rows: int, batch: int) -> list[list[bytes]]:
    encode, n = codecs.sensor_reading.encode, len(dataset)
    values = [
        encode({"event_id": str(i), "rig_id": FILE_RIG, "cycle": i, "event_time": 0} | dataset.row(i % n))
        for i in range(rows)
    ]
    return [values[i : i + batch] for i in range(0, rows, batch)]


def run_score_bench(
    dataset: Dataset, model_dir: Path, options: ScoreBenchOptions, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Every measurement *options.repeats* times; JSON and markdown in *options.out*; returns the result."""
    options.out.mkdir(parents=True, exist_ok=True)
    codecs = Codecs.load()
    model = ModelPackage.load(model_dir)
    scorer = Scorer(model, codecs.sensor_reading, codecs.prediction)
    runs: dict[str, list[dict[str, float]]] = {"file": [], "scorer": [], "model": []}
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        source = write_cycles(dataset, options.rows, Path(tmp) / "cycles.csv")
        size_mb = source.stat().st_size / 1e6
        say(f"{options.rows:,} rows ({size_mb:.1f} MB) of {dataset.source}")
        batches = _encoded(dataset, codecs, options.rows, options.batch)
        idx = np.arange(options.rows) % len(dataset)
        x = dataset.features()[idx].astype(np.float32)
        xs = [x[i : i + options.batch] for i in range(0, options.rows, options.batch)]
        # Warm-up: first-call costs (encoder compile, LightGBM buffers) stay out of the figures.
        scorer.score(batches[0], now_ms=0)
        for repeat in range(1, options.repeats + 1):
            tag = f"[{repeat}/{options.repeats}]"
            wall, cpu, scored = _file_run(scorer, codecs, source, Path(tmp) / "scored.csv", options.batch)
            if scored != options.rows:
                raise RuntimeError(f"rigwatch score scored {scored} of {options.rows} rows")
            runs["file"].append(_rates(options.rows, wall, cpu) | {"mb_per_s": size_mb / wall})
            say(f"{tag} rigwatch score: {runs['file'][-1]['rows_per_s']:,.0f} rows/s")
            wall, cpu = _timed(lambda: [scorer.score(b, now_ms=0) for b in batches])
            runs["scorer"].append(_rates(options.rows, wall, cpu))
            say(f"{tag} Scorer.score alone: {runs['scorer'][-1]['rows_per_s']:,.0f} readings/s")
            wall, cpu = _timed(lambda: [model.predict_proba(b) for b in xs])
            runs["model"].append(_rates(options.rows, wall, cpu))
            say(f"{tag} predict_proba alone: {runs['model'][-1]['rows_per_s']:,.0f} rows/s")
    ratios = {
        "file/scorer": summary(
            [f["rows_per_s"] / s["rows_per_s"] for f, s in zip(runs["file"], runs["scorer"], strict=True)]
        ),
        "file/model": summary(
            [f["rows_per_s"] / m["rows_per_s"] for f, m in zip(runs["file"], runs["model"], strict=True)]
        ),
    }
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "options": {k: str(v) for k, v in options.__dict__.items()},
        "data": dataset.source,
        "file_mb": size_mb,
        "model_version": model.version,
        **{name: _summarize(rs) for name, rs in runs.items()},
        "ratios": ratios,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (options.out / f"score-{stamp}.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (options.out / f"score-{stamp}.md").write_text(table)
    say(table)
    return result


def _summarize(runs: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    return {key: summary([r[key] for r in runs]) for key in runs[0]} if runs else {}


def _fmt(s: Mapping[str, float], spec: str) -> str:
    return f"{s['median']:{spec}} ({s['min']:{spec}}–{s['max']:{spec}})"


def markdown(result: Mapping[str, Any]) -> str:
    """The result as markdown: medians with min–max over the repeats."""
    o = result["options"]
    lines = [
        f"rigwatch score benchmark, {result['created_at']}, {result['machine']['cpus']} CPUs, "
        f"data {result['data']}, {int(o['rows']):,} rows ({result['file_mb']:.1f} MB), batches of "
        f"{o['batch']}, {o['repeats']} repeats (median (min–max)), one process, start-up excluded",
        "",
        "| what | rows/s | rows per CPU second | µs/row |",
        "|---|---|---|---|",
    ]
    for name, label in (
        ("file", "rigwatch score: CSV in → scored CSV out"),
        ("scorer", "Scorer.score alone on pre-encoded readings (the streaming handler)"),
        ("model", "predict_proba alone (float32 batches)"),
    ):
        r = result[name]
        lines.append(
            f"| {label} | {_fmt(r['rows_per_s'], ',.0f')} | {_fmt(r['rows_per_cpu_s'], ',.0f')} "
            f"| {_fmt(r['us_per_row'], '.1f')} |"
        )
    lines += [
        "",
        f"rigwatch score reads {_fmt(result['file']['mb_per_s'], '.1f')} MB/s of CSV.",
        "",
        "| ratio (within each repeat) | median (min–max) |",
        "|---|---|",
        *(f"| {k} | {_fmt(v, '.2f')} |" for k, v in result["ratios"].items()),
        "",
    ]
    return "\n".join(lines)
