"""``rigwatch bench deploy`` without a broker: per-partition switch analysis, dedup, delays, report."""

from __future__ import annotations

from loadgen.bench_deploy import (
    ChangeMade,
    PartitionSwitches,
    _figures,
    change_delays,
    dedupe,
    markdown,
    partition_switches,
)
from loadgen.pump import PumpReport

T = 1_800_000_000_000
#: promote b at T+1000, roll back to a at T+2000, promote b at T+3000.
CHANGES = [(T + 1_000, "b"), (T + 2_000, "a"), (T + 3_000, "b")]


def _rows(*runs: tuple[str, int, int]) -> list[tuple[str, int]]:
    """(version, first scored_time, count) stretches, one prediction every 10 ms."""
    return [(v, start + 10 * i) for v, start, count in runs for i in range(count)]


def _made(index: int, target: str, at_ms: int) -> ChangeMade:
    kind = "promote" if index % 2 else "rollback"
    return ChangeMade(index, kind, target, at_ms, call_ms=50.0, record_ms=at_ms + 40)


def test_a_partition_that_switches_once_per_change_has_no_violation_and_its_first_times() -> None:
    rows = _rows(("a", T, 50), ("b", T + 1_300, 50), ("a", T + 2_250, 50), ("b", T + 3_400, 20))
    assert partition_switches(rows, "a", CHANGES) == PartitionSwitches((T + 1_300, T + 2_250, T + 3_400), 0)


def test_a_flip_back_between_two_changes_is_one_violation() -> None:
    rows = _rows(("a", T, 50), ("b", T + 1_300, 10), ("a", T + 1_400, 5), ("b", T + 1_450, 30))
    rows += _rows(("a", T + 2_250, 50), ("b", T + 3_400, 20))
    switched = partition_switches(rows, "a", CHANGES)
    assert switched.flips == 1
    assert switched.first_ms == (T + 1_300, T + 2_250, T + 3_400)


def test_a_version_served_before_its_change_was_made_is_a_flip_not_a_switch() -> None:
    rows = _rows(("a", T, 50), ("b", T + 900, 5), ("a", T + 950, 5), ("b", T + 1_200, 20))
    switched = partition_switches(rows, "a", CHANGES)
    assert switched.flips == 1
    assert switched.first_ms[0] == T + 1_200  # the first b scored after the promotion


def test_changes_that_never_reach_a_partition_are_missed() -> None:
    rows = _rows(("a", T, 50), ("b", T + 1_300, 200))
    switched = partition_switches(rows, "a", CHANGES)
    assert switched.first_ms == (T + 1_300, None, None)
    assert switched.missed == 2 and switched.flips == 0


def test_an_unexpected_version_counts_once_per_stretch() -> None:
    rows = _rows(("a", T, 5), ("x", T + 100, 5), ("a", T + 200, 5), ("x", T + 300, 5))
    assert partition_switches(rows, "a", CHANGES).flips == 2


def test_a_repeat_equal_but_for_timing_is_a_replay_and_any_other_is_a_conflict() -> None:
    p = {
        "event_id": "e1",
        "model_version": "a",
        "predicted_label": "3",
        "scored_time": T,
        "processing_ms": 1.0,
    }
    q = {**p, "event_id": "e2"}
    records = [
        (1, 5, {**p, "scored_time": T + 500, "processing_ms": 2.0}),  # read out of order: offset 5
        (1, 0, p),
        (0, 0, q),
        (0, 1, {**q, "model_version": "b"}),
    ]
    out = dedupe(records)
    assert out.unique == 2 and out.replays == 1 and out.conflicts == 1
    assert out.rows == {0: [("a", T)], 1: [("a", T)]}  # the first by offset is kept


def test_delays_are_first_prediction_minus_the_change_per_reached_partition() -> None:
    changes = [_made(1, "b", T + 1_000), _made(2, "a", T + 2_000)]
    switches = {0: PartitionSwitches((T + 1_300, T + 2_100), 0), 1: PartitionSwitches((T + 1_450, None), 0)}
    assert change_delays(switches, changes) == {1: {0: 300.0, 1: 450.0}, 2: {0: 100.0}}


def test_a_run_with_a_missed_switch_is_not_ok_and_the_report_shows_it() -> None:
    changes = [_made(1, "b", T + 1_000), _made(2, "a", T + 2_000)]
    rows = {
        0: _rows(("a", T, 50), ("b", T + 1_300, 50), ("a", T + 2_250, 10)),
        1: _rows(("a", T, 50), ("b", T + 1_400, 100)),  # never rolled back
    }
    records = [
        (p, i, {"event_id": f"{p}-{i}", "model_version": v, "scored_time": t})
        for p in rows
        for i, (v, t) in enumerate(rows[p])
    ]
    cpu0 = {"broker": 1.0, "scorer-1": 2.0, "bench (pump + reader)": 0.5}
    cpu1 = {"broker": 2.0, "scorer-1": 2.5, "bench (pump + reader)": 1.0}
    report = PumpReport("r", readings=len(records) + 1, seconds=3.0)
    result = _figures(1, ("a", "b"), changes, report, dedupe(records), 4.0, cpu0, cpu1, True)
    ok = result["correctness"]
    assert (ok["missing"], ok["missed_switches"], ok["flips"], ok["ok"]) == (1, 1, 0, False)
    assert result["change_to_first_ms"]["promote"]["n"] == 2
    assert result["change_to_first_ms"]["promote"]["max"] == 400.0
    assert result["change_to_first_ms"]["rollback"]["n"] == 1
    assert result["cpu_share"] == {"broker": 0.25, "scorer-1": 0.125, "bench (pump + changes)": 0.125}
    table = markdown(
        {
            "created_at": "2026-01-01T00:00:00Z",
            "machine": {"cpus": 2, "load_avg_1m": [1.0, 2.0]},
            "data": "test",
            "options": {
                "rate": 1000.0,
                "rigs": 8,
                "partitions": 4,
                "changes": 2,
                "every_s": 4.0,
                "warmup_s": 5.0,
            },
            "runs": [result],
        }
    )
    assert "| 1 | promote | 2 | 350 |" in table
    assert "| 1 | rollback | 1 | 250 | 250 | 250 |" in table
    assert "| 1 | 261 | 87 | 1 |" in table and "| 25% | 12% | 12% | yes |" in table
