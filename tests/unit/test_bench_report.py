"""The benchmark's report: medians with min–max, one row per worker."""

from __future__ import annotations

from loadgen.bench import markdown, summary


def test_markdown_has_a_row_per_worker_ratios_and_latency() -> None:
    runs = {"events_per_s": [40_000.0, 44_000.0, 31_000.0], "peak_rss_mb": [150.0, 157.0, 155.0]}
    throughput = {key: summary(values) for key, values in runs.items()}
    for key in ("events_per_s_per_process", "cpu_us_per_event", "startup_s"):
        throughput[key] = summary([1.0, 2.0, 3.0])
    latency = {k: summary([10.0, 20.0, 30.0]) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")}
    result = {
        "created_at": "2026-11-22T00:00:00Z",
        "machine": {"cpus": 2},
        "data": "csv:x",
        "options": {"rate": "1000.0"},
        "throughput": {"scorer": throughput},
        "ratios": {"scorer/naive": summary([7.0, 8.0, 9.0])},
        "latency": {"scorer": latency},
    }
    table = markdown(result)
    assert "| scorer | 40,000 (31,000–44,000) |" in table
    assert "| scorer/naive | 8.00 (7.00–9.00) |" in table
    assert "| scorer | 20 (10–30) | 20 (10–30) | 20 (10–30) | 20 (10–30) |" in table
    assert "at 1,000/s" in table
