"""``rigwatch bench processors`` without a broker: counters, busy-interval figures, statistics, report."""

from __future__ import annotations

import math

import pytest

from loadgen.bench_live import close_delays
from loadgen.bench_live import markdown as live_markdown
from loadgen.bench_processors import (
    CHALLENGER_SERVICES,
    DEFAULT_SERVICES,
    SERVICES,
    Service,
    Stream,
    _set_roles,
)
from loadgen.bench_processors_report import (
    Sample,
    alert_stream,
    busy_overlap,
    combined,
    counter_total,
    interval_figures,
    markdown,
    ratios,
    report,
    stats,
)
from rigwatch.exceptions import RigwatchError

EXPOSITION = """# HELP rigwatch_drift_events_in_total Records consumed, by topic
# TYPE rigwatch_drift_events_in_total counter
rigwatch_drift_events_in_total{topic="p.sensor-readings"} 1500.0
rigwatch_drift_events_in_total{topic="p.predictions"} 1200.0
rigwatch_drift_events_in_created{topic="p.predictions"} 1.7e+09
rigwatch_drift_windows_total{subject="v1"} 4.0
"""


def test_counter_total_sums_the_labels_of_one_counter_only() -> None:
    assert counter_total(EXPOSITION, "rigwatch_drift_events_in_total") == 2700.0
    assert counter_total(EXPOSITION, "rigwatch_scorer_events_in_total") == 0.0


def _samples() -> list[Sample]:
    # Start-up until 2 s; 1,000 records by the first count, all 11,000 by 4.5 s, then idle.
    return [
        Sample(0.5, 0, 0.3, 100.0, 50.0),
        Sample(2.0, 1_000, 1.5, 100.2, 50.1),
        Sample(3.0, 6_000, 2.3, 100.6, 50.3),
        Sample(4.5, 11_000, 3.5, 101.2, 50.6),
        Sample(5.0, 11_000, 3.6, 101.3, 50.6),
    ]


def test_interval_runs_from_the_first_count_to_the_first_sample_with_all() -> None:
    f = interval_figures(_samples())
    assert f["events"] == 11_000
    assert f["busy_s"] == 2.5
    assert f["events_per_s"] == pytest.approx(10_000 / 2.5)
    assert f["cpu_us_per_event"] == pytest.approx(2.0 / 10_000 * 1e6)
    assert f["cpu_pct"] == pytest.approx(80.0)
    assert f["broker_cpu_pct"] == pytest.approx(40.0)
    assert f["broker_cpu_us_per_event"] == pytest.approx(100.0)
    assert f["redis_cpu_us_per_event"] == pytest.approx(50.0)
    assert (f["startup_s"], f["startup_cpu_s"]) == (2.0, 1.5)


def test_the_final_count_after_an_idle_poll_does_not_slow_the_rate() -> None:
    # 2,000 records per 0.1 s while busy; the last 1,000 are counted only after a 1 s poll timeout.
    busy = [Sample(1.0 + 0.1 * i, 2_000.0 * (i + 1), 1.0 + 0.05 * i) for i in range(10)]
    tail = [Sample(1.95 + 0.1 * i, 20_000.0, 1.5) for i in range(10)] + [Sample(3.0, 21_000.0, 1.5)]
    f = interval_figures(busy + tail)
    assert f["events_per_s"] == pytest.approx(20_000.0)
    assert f["cpu_pct"] == pytest.approx(50.0)
    assert f["cpu_us_per_event"] == pytest.approx(25.0)
    assert f["events_per_s_first_to_last"] == pytest.approx(19_000 / 2.0)
    assert f["events"] == 21_000.0


def test_without_a_broker_process_its_figures_are_nan() -> None:
    f = interval_figures([Sample(1.0, 10, 1.0), Sample(2.0, 20, 1.5)])
    assert math.isnan(f["broker_cpu_pct"]) and math.isnan(f["redis_cpu_us_per_event"])
    assert f["events_per_s"] == 10.0


def test_nothing_counted_or_everything_in_one_sample_cannot_be_timed() -> None:
    with pytest.raises(RigwatchError, match="no input record"):
        interval_figures([Sample(1.0, 0, 1.0), Sample(2.0, 0, 1.0)])
    with pytest.raises(RigwatchError, match="too few to time"):
        interval_figures([Sample(1.0, 0, 1.0), Sample(2.0, 500, 1.1), Sample(3.0, 500, 1.1)])


def test_stats_skip_nan_but_keep_every_value() -> None:
    s = stats([4.0, math.nan, 2.0])
    assert (s["median"], s["min"], s["max"]) == (3.0, 2.0, 4.0)
    assert len(s["values"]) == 3
    assert math.isnan(stats([math.nan])["median"])


def test_ratios_are_taken_within_each_repeat_and_skip_repeats_without_a_scorer() -> None:
    runs = [
        {"scorer": {"events_per_s": 40_000.0}, "drift": {"events_per_s": 20_000.0}},
        {"drift": {"events_per_s": 30_000.0}},
        {
            "scorer": {"events_per_s": 50_000.0},
            "drift": {"events_per_s": 10_000.0},
            "alerts": {"events_per_s": 5e3},
        },
    ]
    assert ratios(runs) == {"drift/scorer": [0.5, 0.2], "alerts/scorer": [0.1]}


def _runs() -> list[dict[str, dict[str, float]]]:
    return [
        {
            "scorer": {
                "events_per_s": 40_000.0,
                "cpu_us_per_event": 25.0,
                "broker_cpu_pct": 30.0,
                "peak_rss_mb": 300,
            },
            "drift": {
                "events_per_s": 60_000.0,
                "cpu_us_per_event": 15.0,
                "broker_cpu_pct": 20.0,
                "peak_rss_mb": 200,
            },
        },
        {
            "scorer": {
                "events_per_s": 36_000.0,
                "cpu_us_per_event": 27.0,
                "broker_cpu_pct": 32.0,
                "peak_rss_mb": 310,
            },
            "drift": {
                "events_per_s": 45_000.0,
                "cpu_us_per_event": 17.0,
                "broker_cpu_pct": 21.0,
                "peak_rss_mb": 205,
            },
        },
        {
            "scorer": {
                "events_per_s": 44_000.0,
                "cpu_us_per_event": 23.0,
                "broker_cpu_pct": 28.0,
                "peak_rss_mb": 305,
            },
        },
    ]


def test_report_gives_the_json_keys_the_bench_promises() -> None:
    throughput, ratio_stats, backend = report(_runs())
    assert throughput["scorer"]["events_per_s"]["median"] == 40_000.0
    assert throughput["scorer"]["events_per_s"]["values"] == [40_000.0, 36_000.0, 44_000.0]
    assert throughput["drift"]["cpu_us_per_event"]["median"] == 16.0
    assert throughput["drift"]["peak_rss_mb"]["max"] == 205
    assert ratio_stats["drift/scorer"]["median"] == pytest.approx((1.5 + 1.25) / 2)
    assert ratio_stats["drift/scorer"]["min"] == 1.25
    assert backend["scorer"] == {"broker_cpu_pct": throughput["scorer"]["broker_cpu_pct"]}


def test_markdown_lists_every_service_ratio_and_error() -> None:
    throughput, ratio_stats, _ = report(_runs())
    result = {
        "options": {"events": "100000", "rigs": "4", "interval_ms": "10", "repeats": "3", "poll_s": "0.1"},
        "created_at": "2025-01-01T00:00:00Z",
        "machine": {"cpus": 2},
        "data": "hydraulic_cycles.csv",
        "model_version": "v1",
        "stream": {"metrics": 10_000},
        "throughput": throughput,
        "ratios": ratio_stats,
        "live": {},
        "errors": ["alerts (repeat 1): stuck"],
    }
    text = markdown(result)
    assert "| scorer | – | 40,000 (36,000–44,000) | 25.0 (23.0–27.0) |" in text
    assert "| drift/scorer | 1.375 (1.250–1.500) |" in text
    assert "**Not measured:** alerts (repeat 1): stuck" in text


def test_alert_stream_repeats_real_windows_later_on_their_own_boundaries() -> None:
    windows = [
        {"kind": "drift", "subject": "v1", "window_start": 30_000, "window_end": 60_000, "count": 3},
        {"kind": "health", "subject": "v1", "window_start": 40_000, "window_end": 50_000, "count": 1},
        {"kind": "drift", "subject": "v1", "window_start": 0, "window_end": 30_000, "count": 3},
    ]
    out = alert_stream(windows, 7)
    assert [(w["kind"], w["window_end"]) for w in out[:3]] == [
        ("drift", 30_000),
        ("health", 50_000),
        ("drift", 60_000),
    ]
    assert [w["window_start"] for w in out[3:6]] == [60_000, 100_000, 90_000]
    assert len(out) == 7 and out[6]["window_end"] == 150_000
    assert all(w["window_start"] % (w["window_end"] - w["window_start"]) == 0 for w in out)
    assert windows[2]["window_start"] == 0, "the input is left as it was"
    with pytest.raises(RigwatchError):
        alert_stream([], 5)


def test_each_service_counts_its_input_topics() -> None:
    stream = Stream(
        {
            "sensor_readings": [("k", b"r")] * 3,
            "predictions": [("k", b"p")] * 3,
            "actuals": [("k", b"a")] * 2,
            "predictions_shadow": [("k", b"s")] * 3,
        }
    )
    counts = {s.name: stream.count(s) for s in SERVICES}
    assert counts == {
        "scorer": 3,
        "scorer+shadow": 3,
        "drift": 6,
        "latency": 3,
        "accuracy": 5,
        "comparison": 8,
        "alerts": 0,
    }
    assert Service("latency", "x", ()).env_prefix == "RIGWATCH_LATENCY_"


def test_champion_challenger_services_run_existing_commands_on_their_own_topic_sets() -> None:
    by_name = {s.name: s for s in SERVICES}
    pair, comparison = by_name["scorer+shadow"], by_name["comparison"]
    assert (pair.args, pair.env_prefix, pair.shadow) == (("scorer",), "RIGWATCH_SCORER_", True)
    assert (comparison.args, comparison.env_prefix) == (("accuracy",), "RIGWATCH_ACCURACY_")
    assert CHALLENGER_SERVICES == ("scorer+shadow", "comparison")
    assert not set(CHALLENGER_SERVICES) & set(DEFAULT_SERVICES)
    # The shadow predictions go to a set of their own: drift, latency and accuracy read that topic too.
    assert _set_roles("processors") == ["sensor_readings", "predictions", "actuals"]
    assert _set_roles("comparison") == ["predictions", "predictions_shadow", "actuals"]
    assert _set_roles("scorer") == ["sensor_readings"]


def test_processes_sampled_together_add_up_counts_and_cpu_but_not_the_broker() -> None:
    champion = [Sample(1.0, 0, 1.0, 10.0, 5.0), Sample(2.0, 1_000, 1.5, 10.5, 5.0)]
    shadow = [Sample(1.0, 0, 0.8, 10.0, 5.0), Sample(2.0, 600, 1.1, 10.5, 5.0)]
    both = combined([champion, shadow])
    assert [(s.t, s.count, s.broker_cpu, s.redis_cpu) for s in both] == [
        (1.0, 0, 10.0, 5.0),
        (2.0, 1_600, 10.5, 5.0),
    ]
    assert [s.cpu for s in both] == pytest.approx([1.8, 2.6])
    with pytest.raises(ValueError):
        combined([champion, shadow[:1]])


def test_busy_overlap_is_the_share_of_the_first_interval_the_other_covers() -> None:
    f = {"startup_s": 2.0, "busy_s": 10.0}
    assert busy_overlap(f | {"shadow_startup_s": 2.0, "shadow_busy_s": 12.0}, "shadow_") == 1.0
    assert busy_overlap(f | {"shadow_startup_s": 4.0, "shadow_busy_s": 4.0}, "shadow_") == pytest.approx(0.4)
    assert busy_overlap(f | {"shadow_startup_s": 13.0, "shadow_busy_s": 5.0}, "shadow_") == 0.0


def test_markdown_shows_the_shadow_scorer_beside_the_champion_and_comparison_windows() -> None:
    runs = _runs()
    runs[0]["scorer+shadow"] = {
        "events_per_s": 30_000.0,
        "cpu_us_per_event": 30.0,
        "cpu_pct": 90.0,
        "peak_rss_mb": 300.0,
        "startup_s": 2.0,
        "shadow_events_per_s": 28_000.0,
        "shadow_cpu_us_per_event": 31.0,
        "shadow_cpu_pct": 87.0,
        "shadow_peak_rss_mb": 310.0,
        "shadow_startup_s": 2.5,
        "shadow_overlap": 0.9,
        "combined_events_per_s": 58_000.0,
        "combined_cpu_us_per_event": 30.5,
        "combined_cpu_pct": 177.0,
    }
    runs[0]["comparison"] = {"events_per_s": 20_000.0, "windows": 30.0, "comparison_windows": 10.0}
    throughput, ratio_stats, _ = report(runs)
    assert ratio_stats["scorer+shadow/scorer"]["median"] == 0.75
    assert ratio_stats["comparison/scorer"]["median"] == 0.5
    result = {
        "options": {"events": "100000", "rigs": "8", "interval_ms": "10", "repeats": "1", "poll_s": "0.1"},
        "created_at": "2025-01-01T00:00:00Z",
        "machine": {"cpus": 2},
        "data": "hydraulic_cycles.csv",
        "throughput": throughput,
        "ratios": ratio_stats,
    }
    text = markdown(result)
    assert "| scorer+shadow | champion | 30,000 | 30.0 | 90 | 300 | 2.0 |  |" in text
    assert "| scorer+shadow | shadow | 28,000 | 31.0 | 87 | 310 | 2.5 | 90% |" in text
    assert "| scorer+shadow | both | 58,000 | 30.5 | 177 | – | – |  |" in text
    assert "- comparison: 10 comparison windows of 30 windows out" in text
    assert "| scorer+shadow/scorer | 0.750 |" in text


def test_live_close_delays_count_only_windows_closing_after_warm_up() -> None:
    windows = [
        ({"kind": "drift", "window_end": 10_000}, 10_700, 10_800),
        ({"kind": "drift", "window_end": 15_000}, 15_900, 16_000),
        ({"kind": "accuracy", "window_end": 15_000}, 16_100, 16_200),
        ({"kind": "health", "window_end": 5_000}, 9_000, 9_100),  # closed before warm-up
    ]
    delays = close_delays(windows, 500, 8_000)
    assert set(delays["to_read_s"]) == {"drift", "accuracy"}
    assert delays["to_read_s"]["drift"]["max"] == 0.5
    assert delays["to_published_s"]["accuracy"]["p50"] == 0.6
    live = {
        "options": {"rigs": "2", "window_ms": "5000", "lateness_ms": "500", "close_interval_ms": "200"},
        "readings_per_s": 199.0,
        "measured_s": 60.0,
        "window_close": delays,
        "freshness": {"injections": 0, "missed": 0, "stats": {}},
        "cpu_pct": {"scorer": 12.0, "broker": 30.0},
    }
    lines = "\n".join(live_markdown(live))
    assert "| read here | drift | 2 | 0.40 | 0.50 | 0.50 |" in lines
    assert "| CPU % of a core at this rate | scorer | broker |" in lines
