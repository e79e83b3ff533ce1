"""``rigwatch bench console``'s figures: percentiles and the markdown table."""

from __future__ import annotations

from loadgen.bench_console import PHASES, markdown, percentiles


def test_percentiles_are_nearest_rank() -> None:
    assert percentiles([5.0]) == {"p50": 5.0, "p99": 5.0, "max": 5.0}
    assert percentiles([4.0, 1.0, 3.0, 2.0]) == {"p50": 2.0, "p99": 4.0, "max": 4.0}


def test_markdown_has_one_row_per_phase() -> None:
    figures = {"p50": 1.0, "p99": 2.0, "max": 3.0, "mean_ms": 1.1, "readings_per_s": 900.0,
               "console_cpu_us_per_reading": 800.0}  # fmt: skip
    result = {
        "machine": {"cpus": 2},
        "options": {"requests": "1000", "batches": "200", "batch": "100", "repeats": "3"},
        "data": "csv:cycles.csv",
        "created_at": "2026-12-03T00:00:00Z",
        **{phase: {k: {"median": v, "min": v, "max": v} for k, v in figures.items()} for phase in PHASES},
    }

    table = markdown(result)

    rows = [line for line in table.splitlines() if line.startswith("| 1") or line.startswith("| 100")]
    assert len(rows) == 4 and "| 1 reading, publish=true | 1,000 | 1.00 (1.00–1.00) |" in table
