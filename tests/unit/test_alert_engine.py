"""The alert engine's state machine: hysteresis, cooldown, severities, min count, dedup; its records."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from rigwatch.schemas import Codecs
from services.alerts.handler import AlertEngine, AlertState
from services.alerts.rules import Rule, load_rules

F, R = "firing", "resolved"
W, C, OK = "warning", "critical", "ok"


@pytest.fixture(scope="module")
def codecs() -> Codecs:
    return Codecs.load()


def _rule(**fields: Any) -> Rule:
    """An "above" rule on drift metric ``m``: warning 1, critical 2, fires and clears in one window."""
    base: dict[str, Any] = {
        "name": "r",
        "kind": "drift",
        "metric": "m",
        "direction": "above",
        "warning": 1.0,
        "critical": 2.0,
        "message": "{item} {value:.2f} {op} {threshold:g} for {windows} windows ({subject})",
    }
    return Rule(**(base | fields))


def _default(name: str) -> Rule:
    return next(r for r in load_rules().rules if r.name == name)


def _window(
    end: int,
    metrics: dict[str, float],
    *,
    count: int = 100,
    kind: str = "drift",
    subject: str = "v1",
) -> dict[str, Any]:
    return {
        "kind": kind,
        "subject": subject,
        "window_start": end - 1000,
        "window_end": end,
        "count": count,
        "metrics": metrics,
        "detail": None,
    }


def _windows(case: dict[str, Any]) -> list[dict[str, Any]]:
    """Window k has value ``values[k]``, end ``ends[k]`` (1000*k by default) and ``counts[k]``."""
    values = case["values"]
    ends = case.get("ends", [1000 * k for k in range(len(values))])
    counts = case.get("counts", [100] * len(values))
    return [_window(e, {"m": v}, count=n) for v, e, n in zip(values, ends, counts, strict=True)]


def _run(
    engine: AlertEngine, windows: list[dict[str, Any]], states: dict[str, AlertState], start: int = 0
) -> list[tuple[int, str, str]]:
    return [
        (start + k, a["state"], a["severity"])
        for k, w in enumerate(windows)
        for a in engine.evaluate(w, states)
    ]


# ---------------------------------------------------------------- the state machine, table-driven

CASES: list[tuple[str, dict[str, Any], dict[str, Any], list[tuple[int, str, str]]]] = [
    # `for`: consecutive breaching windows before firing; a healthy one resets the streak.
    ("for1_fires_at_first_breach", {}, {"values": [0.5, 1.5]}, [(1, F, W)]),
    ("threshold_itself_is_no_breach", {}, {"values": [1.0, 2.0, 1.0]}, [(1, F, W), (2, R, OK)]),
    ("for3_fires_on_third", {"for_windows": 3}, {"values": [1.5, 1.5, 1.5, 1.5]}, [(2, F, W)]),
    (
        "for3_healthy_window_resets_streak",
        {"for_windows": 3},
        {"values": [1.5, 1.5, 0.5, 1.5, 1.5, 1.5]},
        [(5, F, W)],
    ),
    # for_critical: consecutive critical windows fire before `for` is reached; warnings still wait.
    (
        "for_critical1_fires_at_first_critical",
        {"for_windows": 3, "for_critical": 1},
        {"values": [2.5]},
        [(0, F, C)],
    ),
    (
        "for_critical2_needs_two_critical_in_a_row",
        {"for_windows": 4, "for_critical": 2},
        {"values": [2.5, 1.5, 2.5, 2.5]},
        [(3, F, C)],
    ),
    (
        "for_critical_leaves_warnings_to_for",
        {"for_windows": 3, "for_critical": 1},
        {"values": [1.5, 1.5, 1.5]},
        [(2, F, W)],
    ),
    # hysteresis: clear_for healthy windows in a row to resolve; no flapping records.
    ("clear_for1_resolves_at_once", {}, {"values": [1.5, 0.5]}, [(0, F, W), (1, R, OK)]),
    (
        "clear_for2_single_healthy_window_keeps_firing",
        {"clear_for": 2},
        {"values": [1.5, 0.5, 1.5, 0.5, 1.5, 0.5, 0.5]},
        [(0, F, W), (6, R, OK)],
    ),
    (
        "clear_for3_flapping_is_one_alert",
        {"clear_for": 3},
        {"values": [1.5, 0.5, 0.5, 1.5, 0.5, 0.5, 0.5, 0.5]},
        [(0, F, W), (6, R, OK)],
    ),
    # severities: up at once, down after clear_for windows below.
    ("escalation_is_immediate", {"clear_for": 3}, {"values": [1.5, 2.5]}, [(0, F, W), (1, F, C)]),
    ("fires_straight_at_critical", {"for_windows": 2}, {"values": [1.5, 2.5, 2.5]}, [(1, F, C)]),
    ("fires_at_the_level_of_its_window", {"for_windows": 2}, {"values": [2.5, 1.5]}, [(1, F, W)]),
    (
        "de_escalation_needs_clear_for_windows_below",
        {"clear_for": 2},
        {"values": [2.5, 1.5, 2.5, 1.5, 1.5, 1.5, 0.5, 0.5]},
        [(0, F, C), (4, F, W), (7, R, OK)],
    ),
    (
        "critical_resolves_without_passing_warning",
        {"clear_for": 2},
        {"values": [2.5, 0.5, 0.5]},
        [(0, F, C), (2, R, OK)],
    ),
    (
        "healthy_windows_count_toward_de_escalation",
        {"clear_for": 2},
        {"values": [2.5, 1.5, 0.5, 1.5, 1.5]},
        [(0, F, C), (3, F, W)],
    ),
    (
        "back_at_critical_restarts_de_escalation",
        {"clear_for": 2},
        {"values": [2.5, 1.5, 2.5, 1.5, 2.5]},
        [(0, F, C)],
    ),
    (
        "warning_critical_warning_ok",
        {"clear_for": 1},
        {"values": [1.5, 2.5, 1.5, 0.5]},
        [(0, F, W), (1, F, C), (2, F, W), (3, R, OK)],
    ),
    # cooldown (window time): window k ends at 1000*k, so cooldown_s=3 is three windows.
    (
        "cooldown_holds_a_new_breach",
        {"cooldown_s": 3},
        {"values": [1.5, 0.5, 1.5, 1.5, 1.5, 1.5]},
        [(0, F, W), (1, R, OK), (4, F, W)],
    ),
    (
        "breach_after_cooldown_fires",
        {"cooldown_s": 3},
        {"values": [1.5, 0.5, 0.5, 0.5, 0.5, 1.5]},
        [(0, F, W), (1, R, OK), (5, F, W)],
    ),
    (
        "cooldown_breach_that_heals_never_fires",
        {"cooldown_s": 3},
        {"values": [1.5, 0.5, 2.5, 0.5, 0.5, 0.5]},
        [(0, F, W), (1, R, OK)],
    ),
    (
        "no_cooldown_refires_next_window",
        {"cooldown_s": 0},
        {"values": [1.5, 0.5, 1.5]},
        [(0, F, W), (1, R, OK), (2, F, W)],
    ),
    # min_count: thin windows are no evidence either way.
    (
        "min_count_thin_breach_does_not_count",
        {"min_count": 10, "for_windows": 2},
        {"values": [1.5, 1.5, 1.5], "counts": [5, 50, 50]},
        [(2, F, W)],
    ),
    (
        "min_count_thin_healthy_does_not_reset_streak",
        {"min_count": 10, "for_windows": 2},
        {"values": [1.5, 0.5, 1.5], "counts": [50, 9, 50]},
        [(2, F, W)],
    ),
    (
        "min_count_thin_healthy_does_not_resolve",
        {"min_count": 10},
        {"values": [1.5, 0.5, 0.5], "counts": [50, 0, 10]},
        [(0, F, W), (2, R, OK)],
    ),
    (
        "min_count_thin_critical_does_not_escalate",
        {"min_count": 10},
        {"values": [1.5, 2.5], "counts": [10, 9]},
        [(0, F, W)],
    ),
    # dedup: a re-published window (same end) or an older one changes nothing.
    (
        "dedup_same_end_does_not_advance_streak",
        {"for_windows": 2},
        {"values": [1.5, 1.5, 1.5], "ends": [1000, 1000, 2000]},
        [(2, F, W)],
    ),
    (
        "dedup_repeated_firing_window_is_silent",
        {},
        {"values": [1.5, 1.5, 2.5], "ends": [1000, 1000, 1000]},
        [(0, F, W)],
    ),
    (
        "dedup_repeated_resolving_window_is_silent",
        {},
        {"values": [1.5, 0.5, 0.5, 1.5], "ends": [1000, 2000, 2000, 2000]},
        [(0, F, W), (1, R, OK)],
    ),
    (
        "dedup_older_window_is_ignored",
        {"for_windows": 2},
        {"values": [1.5, 0.5, 1.5], "ends": [2000, 1000, 3000]},
        [(2, F, W)],
    ),
    # direction below (accuracy-like), and rules without a critical threshold.
    (
        "below_warning_critical_and_back",
        {"direction": "below", "warning": 0.9, "critical": 0.8, "clear_for": 2},
        {"values": [0.95, 0.9, 0.85, 0.75, 0.85, 0.85, 0.95, 0.95]},
        [(2, F, W), (3, F, C), (5, F, W), (7, R, OK)],
    ),
    (
        "below_without_critical",
        {"direction": "below", "warning": 0.9, "critical": None, "for_windows": 2},
        {"values": [0.5, 0.0, -10.0, 0.95]},
        [(1, F, W), (3, R, OK)],
    ),
    ("above_without_critical", {"critical": None}, {"values": [1.5, 1e9, 0.5]}, [(0, F, W), (2, R, OK)]),
    # non-finite values are skipped like a missing metric.
    (
        "non_finite_values_ignored",
        {"for_windows": 2},
        {"values": [1.5, math.nan, math.inf, -math.inf, 0.5, 1.5, math.nan, 1.5]},
        [(7, F, W)],
    ),
]


@pytest.mark.parametrize(
    ("rule_fields", "case", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_transitions(
    rule_fields: dict[str, Any], case: dict[str, Any], expected: list[tuple[int, str, str]]
) -> None:
    engine = AlertEngine([_rule(**rule_fields)])
    states: dict[str, AlertState] = {}
    assert _run(engine, _windows(case), states) == expected
    assert set(states) <= {"r/v1"}


@pytest.mark.parametrize(
    ("rule_fields", "case", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_restart_anywhere_gives_the_same_records(
    rule_fields: dict[str, Any], case: dict[str, Any], expected: list[tuple[int, str, str]]
) -> None:
    engine = AlertEngine([_rule(**rule_fields)])
    windows = _windows(case)
    whole: dict[str, AlertState] = {}
    uninterrupted = [engine.evaluate(w, whole) for w in windows]
    for split in range(len(windows) + 1):
        states: dict[str, AlertState] = {}
        before = [engine.evaluate(w, states) for w in windows[:split]]
        restored = {k: AlertState.loads(s.dumps()) for k, s in states.items()}
        assert restored == states
        after = [AlertEngine([_rule(**rule_fields)]).evaluate(w, restored) for w in windows[split:]]
        assert before + after == uninterrupted, f"restart before window {split}"
        assert restored == whole


# ---------------------------------------------------------------- records


def test_record_fields_through_fire_escalate_de_escalate_resolve() -> None:
    rule = _rule(for_windows=2, clear_for=2)
    engine = AlertEngine([rule])
    states: dict[str, AlertState] = {}
    values = [0.5, 1.5, 1.25, 2.5, 1.5, 1.5, 0.5, 0.5]
    records = {k: engine.evaluate(_window(1000 * k, {"m": v}), states) for k, v in enumerate(values)}
    common = {"alert_id": "r/v1", "rule": "r", "metric": "m", "first_seen": 1000}
    assert {k: r for k, r in records.items() if r} == {
        2: [
            common
            | {"severity": W, "state": F, "value": 1.25, "threshold": 1.0, "window_end": 2000}
            | {"message": "m 1.25 > 1 for 2 windows (model v1)"}
        ],
        3: [
            common
            | {"severity": C, "state": F, "value": 2.5, "threshold": 2.0, "window_end": 3000}
            | {"message": "m 2.50 > 2 for 3 windows (model v1)"}
        ],
        5: [
            common
            | {"severity": W, "state": F, "value": 1.5, "threshold": 1.0, "window_end": 5000}
            | {"message": "m 1.50 > 1 for 5 windows (model v1)"}
        ],
        7: [
            common
            | {"severity": OK, "state": R, "value": 0.5, "threshold": 1.0, "window_end": 7000}
            | {"message": "resolved: m 0.50 <= 1 for 2 windows (model v1)"}
        ],
    }
    assert states["r/v1"].last == records[7][0]


def test_first_seen_is_the_start_of_each_firing_streak() -> None:
    engine = AlertEngine([_rule(for_windows=3)])
    states: dict[str, AlertState] = {}
    values = [1.5, 0.5, 1.5, 1.5, 1.5, 0.5, 1.5, 1.5, 1.5, 1.5]
    out = [a for k, v in enumerate(values) for a in engine.evaluate(_window(1000 * k, {"m": v}), states)]
    assert [(a["state"], a["window_end"], a["first_seen"]) for a in out] == [
        (F, 4000, 2000),
        (R, 5000, 2000),  # a resolve keeps the streak that fired
        (F, 8000, 6000),
    ]


def test_first_seen_of_a_breach_that_waited_out_the_cooldown() -> None:
    engine = AlertEngine([_rule(cooldown_s=3)])
    states: dict[str, AlertState] = {}
    values = [1.5, 0.5, 1.5, 1.5, 1.5]
    out = [a for k, v in enumerate(values) for a in engine.evaluate(_window(1000 * k, {"m": v}), states)]
    assert [(a["state"], a["window_end"], a["first_seen"]) for a in out] == [
        (F, 0, 0),
        (R, 1000, 0),
        (F, 4000, 2000),
    ]


def test_below_rule_message_ops_and_thresholds() -> None:
    engine = AlertEngine([_default("accuracy")])
    states: dict[str, AlertState] = {}
    values = [0.85, 0.7, 0.95, 0.95]
    out = [
        a
        for k, v in enumerate(values)
        for a in engine.evaluate(_window(1000 * (k + 1), {"accuracy": v}, kind="accuracy"), states)
    ]
    assert [(a["severity"], a["threshold"], a["message"]) for a in out] == [
        (W, 0.9, "realised accuracy 0.850 < 0.9 on 100 labelled predictions (model v1)"),
        (C, 0.8, "realised accuracy 0.700 < 0.8 on 100 labelled predictions (model v1)"),
        (OK, 0.9, "resolved: realised accuracy 0.950 >= 0.9 on 100 labelled predictions (model v1)"),
    ]


def test_default_feature_drift_message_names_item_psi_ratio_and_threshold() -> None:
    engine = AlertEngine([_default("feature_drift")])
    states: dict[str, AlertState] = {}
    # A warning-level ratio waits for a second window (for = 2) ...
    warning = {"psi_ratio.tsb_temp": 1.5, "psi.tsb_temp": 0.19}
    assert engine.evaluate(_window(1000, warning, count=200), states) == []
    (alert,) = engine.evaluate(_window(2000, warning, count=200), states)
    assert alert["alert_id"] == "feature_drift/v1/tsb_temp"
    assert alert["metric"] == "psi_ratio.tsb_temp"
    assert (alert["severity"], alert["threshold"], alert["first_seen"]) == (W, 1.0, 1000)
    assert alert["message"] == (
        "tsb_temp drifted: PSI 0.190 is 1.5x what noise reaches at n=200 (> 1x) for 2 window(s) (model v1)"
    )
    # ... a critical one fires in its first window (for_critical = 1).
    critical = {"psi_ratio.psa_bar": 2.5, "psi.psa_bar": 0.31}
    (alert,) = engine.evaluate(_window(3000, critical, count=200), states)
    assert (alert["alert_id"], alert["severity"], alert["first_seen"]) == (
        "feature_drift/v1/psa_bar",
        C,
        3000,
    )
    assert alert["message"] == (
        "psa_bar drifted: PSI 0.310 is 2.5x what noise reaches at n=200 (> 2x) for 1 window(s) (model v1)"
    )


def test_wildcard_rule_one_alert_per_item_with_its_own_state() -> None:
    rule = _rule(
        metric="psi_ratio.*", also="psi.*", clear_for=2, message="{item}: {value:.1f}x, psi {also:.2f}"
    )
    engine = AlertEngine([rule])
    states: dict[str, AlertState] = {}
    first = {"psi_ratio.a": 1.5, "psi.a": 0.2, "psi_ratio.b": 2.5, "psi.b": 0.4, "psi_ratio.c": 0.5}
    first |= {"drift_score": 9.0, "psi_ratiox": 9.0}  # neither is an item
    out = engine.evaluate(_window(1000, first, subject="rig:rig-2"), states)
    assert [(a["alert_id"], a["metric"], a["severity"], a["message"]) for a in out] == [
        ("r/rig:rig-2/a", "psi_ratio.a", W, "a: 1.5x, psi 0.20"),
        ("r/rig:rig-2/b", "psi_ratio.b", C, "b: 2.5x, psi 0.40"),
    ]
    assert set(states) == {"r/rig:rig-2/a", "r/rig:rig-2/b", "r/rig:rig-2/c"}
    # b heals twice and resolves; a is missing from the windows and keeps firing.
    assert engine.evaluate(_window(2000, {"psi_ratio.b": 0.5}, subject="rig:rig-2"), states) == []
    (resolved,) = engine.evaluate(_window(3000, {"psi_ratio.b": 0.5}, subject="rig:rig-2"), states)
    assert (resolved["alert_id"], resolved["state"]) == ("r/rig:rig-2/b", R)
    assert resolved["message"] == "resolved: b: 0.5x, psi nan"  # no psi.b in the window
    assert states["r/rig:rig-2/a"].severity == W


def test_plain_metric_message_item_is_the_metric_name() -> None:
    engine = AlertEngine([_rule(message="{item}={value}")])
    (alert,) = engine.evaluate(_window(1000, {"m": 1.5}), {})
    assert alert["message"] == "m=1.5"


@pytest.mark.parametrize(
    ("subjects", "fired"),
    [("model", ["r/v1", "r/v2"]), ("rig", ["r/rig:rig-2"]), ("any", ["r/v1", "r/rig:rig-2", "r/v2"])],
)
def test_subjects_scope(subjects: str, fired: list[str]) -> None:
    engine = AlertEngine([_rule(subjects=subjects)])
    states: dict[str, AlertState] = {}
    out = [
        a["alert_id"]
        for subject in ("v1", "rig:rig-2", "v2")
        for a in engine.evaluate(_window(1000, {"m": 1.5}, subject=subject), states)
    ]
    assert out == fired
    assert sorted(states) == sorted(fired)


def test_rig_subject_message_names_the_rig() -> None:
    engine = AlertEngine([_rule(message="({subject})")])
    (alert,) = engine.evaluate(_window(1000, {"m": 1.5}, subject="rig:rig-2"), {})
    assert alert["message"] == "(rig rig-2)"


def test_kind_filter_and_missing_metric() -> None:
    engine = AlertEngine([_rule(kind="health")])
    states: dict[str, AlertState] = {}
    assert engine.evaluate(_window(1000, {"m": 9.0}, kind="drift"), states) == []
    assert engine.evaluate(_window(2000, {"n": 9.0}, kind="health"), states) == []
    assert states == {}
    assert [a["alert_id"] for a in engine.evaluate(_window(3000, {"m": 9.0}, kind="health"), states)] == [
        "r/v1"
    ]


def test_rules_evaluate_in_order_and_keep_separate_states() -> None:
    engine = AlertEngine(
        [_rule(name="a", for_windows=2), _rule(name="b", metric="n"), _rule(name="c", kind="health")]
    )
    states: dict[str, AlertState] = {}
    assert [a["alert_id"] for a in engine.evaluate(_window(1000, {"m": 1.5, "n": 1.5}), states)] == ["b/v1"]
    assert [a["alert_id"] for a in engine.evaluate(_window(2000, {"m": 1.5, "n": 0.5}), states)] == [
        "a/v1",
        "b/v1",
    ]
    assert sorted(states) == ["a/v1", "b/v1"]


def test_alert_records_encode_with_the_avro_codec(codecs: Codecs) -> None:
    engine = AlertEngine([*load_rules().rules, _rule(direction="below", warning=0.0, critical=None)])
    states: dict[str, AlertState] = {}
    metrics = {
        "psi_ratio.tsb_temp": 2.5,
        "psi.tsb_temp": 0.31,
        "drift_score": 1.5,
        "prediction_drift": 3.0,
        "m": -1.0,
    }
    records = []
    for k, scale in enumerate([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]):
        window = _window(60_000 * (k + 1), {name: v * scale for name, v in metrics.items()}, count=500)
        records += engine.evaluate(window, states)
    assert {r["state"] for r in records} == {F, R}
    assert len(records) == 8
    for record in records:
        assert codecs.alert.decode(codecs.alert.encode(record)) == record


# ---------------------------------------------------------------- state


def test_alert_state_dumps_loads_round_trip() -> None:
    fresh = AlertState()
    assert AlertState.loads(fresh.dumps()) == fresh
    engine = AlertEngine([_rule(for_windows=2, clear_for=2, cooldown_s=60)])
    states: dict[str, AlertState] = {}
    for k, v in enumerate([1.5, 2.5, 0.5, 0.5, 1.5]):
        engine.evaluate(_window(1000 * (k + 1), {"m": v}), states)
    state = states["r/v1"]
    assert (state.severity, state.resolved_at, state.breach, state.since, state.last_end) == (
        OK,
        4000,
        1,
        5000,
        5000,
    )
    assert state.last is not None and state.last["state"] == R
    assert AlertState.loads(state.dumps()) == state
    assert AlertState.loads(state.dumps().encode()) == state
    assert replace(state, last=None) != state


def test_restart_mid_streak_with_many_alerts_matches_an_uninterrupted_run() -> None:
    engine = AlertEngine(load_rules().rules)
    windows = []
    for k in range(12):
        ratio = [0.5, 1.5, 1.5, 2.5, 1.5, 0.5, 1.5, 0.5, 0.5, 2.5, 2.5, 0.5][k]
        for subject in ("v1", "rig:rig-2"):
            windows.append(
                _window(
                    60_000 * (k + 1),
                    {"psi_ratio.a": ratio, "psi_ratio.b": 3 - ratio, "psi.a": 0.1, "drift_score": ratio},
                    subject=subject,
                )
            )
            windows.append(windows[-1])  # re-published
    whole: dict[str, AlertState] = {}
    expected = [engine.evaluate(w, whole) for w in windows]
    assert sum(map(len, expected)) > 10
    states: dict[str, AlertState] = {}
    got = [engine.evaluate(w, states) for w in windows[:13]]
    stored = {k: s.dumps() for k, s in states.items()}
    restarted = {k: AlertState.loads(v) for k, v in stored.items()}
    got += [AlertEngine(load_rules().rules).evaluate(w, restarted) for w in windows[13:]]
    assert got == expected
    assert restarted == whole


def test_touched_names_exactly_the_states_a_window_changed() -> None:
    engine = AlertEngine([_rule(metric="psi_ratio.*", clear_for=2)])
    states: dict[str, AlertState] = {}
    engine.evaluate(_window(1000, {"psi_ratio.a": 1.5, "psi_ratio.b": 0.5}), states)
    before = {k: s.dumps() for k, s in states.items()}
    touched: set[str] = set()
    engine.evaluate(_window(2000, {"psi_ratio.b": 2.5}), states, touched)
    assert touched == {k for k, s in states.items() if before.get(k) != s.dumps()} == {"r/v1/b"}
    again: set[str] = set()
    engine.evaluate(_window(2000, {"psi_ratio.b": 2.5}), states, again)  # re-published: no change
    assert again == set()
