"""``rigwatch bench alerts`` without a broker: freshness figures, their statistics, the report, the rules."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import pytest

from loadgen.bench_alerts import (
    PUBLISHED,
    Injection,
    freshness_summary,
    markdown,
    percentiles,
    rules_without_cooldown,
)
from rigwatch.exceptions import ConfigError
from services.alerts.rules import DEFAULT_RULES, load_rules

W, LATENESS = 5_000, 500
T0 = 1_800_000_000_000  # a multiple of 5 s: windows start at T0 + k * W


def _injection(index: int, offset_ms: int, waited: int = 0, pipeline_ms: int = 800) -> Injection:
    """Drift from *offset_ms* into the window at T0 + 2 W; fired by that window (or *waited* later)."""
    first = T0 + 2 * W + offset_ms
    fired_end = T0 + 3 * W + waited * W
    last = first + 3 * W - 5
    resolved_end = last - last % W + 3 * W
    return Injection(
        index,
        start_ms=first,
        until_ms=first + 3 * W,
        first_event_ms=first,
        last_event_ms=last,
        fired_read_ms=fired_end + LATENESS + pipeline_ms,
        fired_published_ms=fired_end + LATENESS + pipeline_ms - 100,
        window_published_ms=fired_end + LATENESS + pipeline_ms - 200,
        fired_window_end=fired_end,
        severity="critical",
        value=20.0,
        resolved_read_ms=resolved_end + LATENESS + 700,
        resolved_published_ms=resolved_end + LATENESS + 650,
        resolved_window_published_ms=resolved_end + LATENESS + 600,
        resolved_window_end=resolved_end,
    )


def test_freshness_is_the_alert_read_minus_the_first_drifted_event_time() -> None:
    f = _injection(0, offset_ms=1_000).figures(W, LATENESS)
    assert f["freshness_s"] == pytest.approx(4.0 + 0.5 + 0.8)
    assert f["offset_in_window_s"] == pytest.approx(1.0)
    assert f["windows_waited"] == 0
    assert f["window_wait_s"] == pytest.approx(4.5)
    assert f["pipeline_s"] == pytest.approx(0.8)
    assert f["drift_emit_s"] + f["alert_publish_s"] + f["read_s"] == pytest.approx(f["pipeline_s"])


def test_a_drift_late_in_its_window_that_fires_one_window_later_says_so() -> None:
    f = _injection(0, offset_ms=4_600, waited=1).figures(W, LATENESS)
    assert f["windows_waited"] == 1
    assert f["freshness_s"] == pytest.approx(0.4 + 5.0 + 0.5 + 0.8)


def test_resolve_delay_runs_from_the_last_drifted_event() -> None:
    i = _injection(0, offset_ms=2_000)
    f = i.figures(W, LATENESS)
    assert i.last_event_ms is not None and i.resolved_read_ms is not None
    assert f["resolve_delay_s"] == pytest.approx((i.resolved_read_ms - i.last_event_ms) / 1000)
    assert f["resolve_pipeline_s"] == pytest.approx(0.7)


def test_an_injection_without_an_alert_has_no_figures_but_its_offset() -> None:
    f = Injection(0, T0 + 1_250, T0 + 16_250, first_event_ms=T0 + 1_250).figures(W, LATENESS)
    assert f["offset_in_window_s"] == pytest.approx(1.25)
    assert math.isnan(f["freshness_s"]) and math.isnan(f["windows_waited"])


def test_percentiles_ignore_missing_values_and_p99_sits_under_the_max() -> None:
    p = percentiles([4.0, 5.0, 3.0, 6.0, 4.5, math.nan])
    assert p["n"] == 5 and p["p50"] == 4.5 and p["max"] == 6.0 and p["min"] == 3.0
    assert 5.9 < p["p99"] < 6.0
    assert math.isnan(percentiles([])["p99"])


def test_target_is_met_when_p99_is_within_window_plus_two_seconds() -> None:
    rows = [_injection(k, offset_ms=o).figures(W, LATENESS) for k, o in enumerate((200, 1_000, 4_000))]
    summary = freshness_summary(rows, W, window_emit_s=[0.3, 0.4, 1.5])
    assert summary["target_s"] == 7.0
    assert summary["stats"]["freshness_s"]["max"] == pytest.approx(4.8 + 0.5 + 0.8)
    assert summary["target_met"] and summary["missed"] == 0
    assert summary["window_emit_s"]["max"] == 1.5


def test_target_fails_on_a_slow_tail_or_on_any_missed_injection() -> None:
    slow = [_injection(0, 1_000).figures(W, LATENESS), _injection(1, 4_600, waited=1).figures(W, LATENESS)]
    assert freshness_summary(slow, W)["stats"]["freshness_s"]["p99"] > 6.5
    late = [*slow, _injection(2, 1_000, pipeline_ms=3_000).figures(W, LATENESS)]
    assert not freshness_summary(late, W)["target_met"]
    missed = [_injection(0, 1_000).figures(W, LATENESS), Injection(1, T0, T0 + 3 * W).figures(W, LATENESS)]
    summary = freshness_summary(missed, W)
    assert summary["missed"] == 1 and not summary["target_met"]
    assert summary["stats"]["freshness_s"]["n"] == 1


def _result(injections: list[Injection]) -> dict:
    rows = [i.figures(W, LATENESS) for i in injections]
    options = {
        "window_ms": str(W),
        "lateness_ms": str(LATENESS),
        "idle_ms": "2000",
        "close_interval_ms": "200",
        "rate": "200.0",
        "rigs": "2",
        "sensor": "tsb_temp",
        "delta": "2.0",
        "drift_windows": "3",
    }
    return {
        "created_at": "2026-11-22T00:00:00Z",
        "machine": {"cpus": 2},
        "data": "csv:x",
        "model_version": "abc123",
        "options": options,
        "rule": {"critical": 2.0, "for_critical": 1, "clear_for": 2},
        "injections": [asdict(i) for i in injections],
        "rows": rows,
        "summary": freshness_summary(rows, W, window_emit_s=[0.25, 0.5]),
        "other_alerts": {"feature_drift/rig:rig-000/tsb_temp firing": 2},
        "runtime_s": 181.0,
    }


def test_report_lists_percentiles_every_injection_the_target_and_the_published_figures() -> None:
    table = markdown(_result([_injection(0, 1_000), _injection(1, 4_600, waited=1)]))
    assert "| **freshness: first drifted event → firing alert read from rig.alerts** | 6.00 |" in table
    assert "| 1 | " in table and "| 1.00 | its own | critical | 20.0 | 5.30 | 0.80 |" in table
    assert "| 2 | " in table and "| 4.60 | the next | critical |" in table
    assert "window + 2 s = 7 s: **met**" in table
    assert "every model-version drift window of the run (2)" in table
    for name, text, _, _ in PUBLISHED:
        assert f"| {name} | {text} |" in table
    assert "not measured here" in table
    assert "feature_drift/rig:rig-000/tsb_temp firing ×2" in table


def test_report_of_an_injection_that_never_fired_says_none_and_not_met() -> None:
    table = markdown(_result([Injection(0, T0, T0 + 3 * W, first_event_ms=T0 + 10)]))
    assert "| none | – | – | – |" in table
    assert "**NOT met**" in table and "1 of 1 injections without an alert" in table


def test_rules_without_cooldown_changes_only_the_named_rule(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(rules_without_cooldown(DEFAULT_RULES.read_text(), "feature_drift"))
    before = {r.name: r for r in load_rules(DEFAULT_RULES).rules}
    after = {r.name: r for r in load_rules(path).rules}
    assert after["feature_drift"].cooldown_s == 0 and before["feature_drift"].cooldown_s == 120
    assert {n: r for n, r in after.items() if n != "feature_drift"} == {
        n: r for n, r in before.items() if n != "feature_drift"
    }


def test_rules_without_cooldown_names_a_missing_rule() -> None:
    with pytest.raises(ConfigError, match="no_such_rule"):
        rules_without_cooldown(DEFAULT_RULES.read_text(), "no_such_rule")
