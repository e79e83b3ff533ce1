"""``rigwatch bench score``: the generated CSV and one short run's report."""

from __future__ import annotations

import csv

from loadgen.bench_score import ScoreBenchOptions, run_score_bench, write_cycles
from rigwatch.data import LABEL_COLUMNS, SENSOR_COLUMNS


def test_generated_file_repeats_the_real_cycles_exactly(tmp_path, real_dataset) -> None:
    path = write_cycles(real_dataset, len(real_dataset) + 2, tmp_path / "cycles.csv")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["cycle", *SENSOR_COLUMNS, *LABEL_COLUMNS]
    assert len(rows) == len(real_dataset) + 3
    again = rows[len(real_dataset) + 1]
    assert [float(v) for v in again[1:18]] == real_dataset.sensors[0].tolist()


def test_short_run_writes_json_and_markdown_with_every_measurement(tmp_path, real_dataset, model_dir) -> None:
    options = ScoreBenchOptions(rows=2000, repeats=1, batch=500, out=tmp_path)
    result = run_score_bench(real_dataset, model_dir, options, say=lambda _: None)
    assert {"file", "scorer", "model"} <= set(result)
    assert result["file"]["rows_per_s"]["median"] > 0
    assert len(list(tmp_path.glob("score-*.json"))) == len(list(tmp_path.glob("score-*.md"))) == 1
    assert "rigwatch score: CSV in" in next(tmp_path.glob("score-*.md")).read_text()
