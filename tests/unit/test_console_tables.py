"""The console's tables: the control-plane topics folded record by record."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from services.console.events import Hub
from services.console.tables import KINDS, Progress, Tables


def _alert(alert_id: str, state: str, severity: str = "warning", first_seen: int = 1, end: int = 10) -> dict:
    return {
        "alert_id": alert_id,
        "state": state,
        "severity": severity,
        "first_seen": first_seen,
        "window_end": end,
    }


def _window(kind: str, subject: str, end: int, **detail: Any) -> dict[str, Any]:
    return {
        "kind": kind, "subject": subject, "window_start": end - 10, "window_end": end, "count": 1,
        "metrics": {"x": float(end)}, "detail": json.dumps(detail) if detail else None,
    }  # fmt: skip


def test_active_alerts_most_severe_first_and_recent_transitions_newest_first() -> None:
    tables = Tables()
    tables.add("alert", _alert("a", "firing", "warning", first_seen=1))
    tables.add("alert", _alert("b", "firing", "critical", first_seen=5))
    tables.add("alert", _alert("c", "firing", "warning", first_seen=3))
    tables.add("alert", _alert("c", "resolved", "ok", first_seen=3, end=20))
    tables.add("alert", _alert("c", "resolved", "ok", first_seen=3, end=20))  # a repeat

    assert [a["alert_id"] for a in tables.active_alerts()] == ["b", "a"]
    assert [(a["alert_id"], a["state"]) for a in tables.recent_alerts()] == [
        ("c", "resolved"), ("c", "firing"), ("b", "firing"), ("a", "firing"),
    ]  # fmt: skip
    assert len(tables.recent_alerts(2)) == 2


def test_recent_transitions_are_bounded() -> None:
    tables = Tables(recent_alerts=3)
    for i in range(10):
        tables.add("alert", _alert(f"a{i}", "firing"))

    assert [a["alert_id"] for a in tables.recent_alerts()] == ["a9", "a8", "a7"]
    assert len(tables.alerts) == 10, "the state of every alert is kept"


def test_windows_by_kind_subject_and_time_bounded_per_subject_repeats_once() -> None:
    tables = Tables(windows_per_subject=3)
    for end in (10, 20, 30, 40):
        tables.add("window", _window("drift", "v1", end))
    tables.add("window", _window("drift", "v1", 40))  # a repeat
    tables.add("window", _window("health", "v1", 25))
    tables.add("window", _window("drift", "rig:7", 35))

    drift_v1 = tables.window_list("drift", "v1")
    assert [w["window_end"] for w in drift_v1] == [20, 30, 40]
    assert [w["window_end"] for w in tables.window_list(since_ms=25, until_ms=35)] == [25, 30, 35]
    assert [w["window_end"] for w in tables.window_list("drift", limit=2)] == [35, 40]
    assert tables.window_list(limit=0) == []
    assert tables.subjects() == {"drift": ["rig:7", "v1"], "health": ["v1"]}


def test_the_latest_comparison_per_champion_and_challenger() -> None:
    tables = Tables()
    tables.add("window", _window("comparison", "b", 20, champion="a", verdict="inconclusive"))
    tables.add("window", _window("comparison", "b", 10, champion="a", verdict="worse"))  # late, older
    tables.add("window", _window("comparison", "b", 30, champion="z", verdict="better"))

    found = tables.comparison("a", "b")
    assert found is not None and json.loads(found["detail"])["verdict"] == "inconclusive"
    assert tables.comparison("a", "c") is None


def _deployment(name: str, state: str, champion: str, change_id: str, **more: Any) -> dict[str, Any]:
    return {"deployment": name, "state": state, "champion": champion, "change_id": change_id, **more}


def test_deployments_are_folded_as_the_lifecycle_folds_them() -> None:
    tables = Tables()
    tables.add("deployment", _deployment("cooler", "active", "a", "1"))
    tables.add("deployment", _deployment("cooler", "pending", "b", "2", actor="ana"))
    assert tables.deployments()["cooler"]["champion"] == "a"
    assert [c["change_id"] for c in tables.pending_changes("cooler")] == ["2"]

    tables.add("deployment", _deployment("cooler", "active", "b", "2"))

    assert tables.deployments()["cooler"]["champion"] == "b" and tables.pending_changes() == []


def test_scorers_heard_from_lately_and_audit_filters() -> None:
    tables = Tables()
    tables.add("heartbeat", {"scorer_id": "h:1", "deployment": "cooler", "version": "a", "time": 100_000})
    tables.add("heartbeat", {"scorer_id": "h:2", "deployment": "cooler", "version": "b", "time": 50_000})
    tables.add("heartbeat", {"scorer_id": "h:3", "deployment": "other", "version": "a", "time": 100_000})
    event = {"event_id": "e1", "time": 5, "actor": "ana", "action": "comment", "deployment": None,
             "model_version": "a"}  # fmt: skip
    tables.add("audit", event)
    tables.add("audit", dict(event))  # a repeat
    tables.add("audit", event | {"event_id": "e2", "action": "promote", "deployment": "cooler", "time": 9})

    assert [b["scorer_id"] for b in tables.scorers("cooler", now_ms=101_000)] == ["h:1"]
    assert [e["event_id"] for e in tables.audit_events()] == ["e1", "e2"]
    assert [e["event_id"] for e in tables.audit_events(deployment="cooler")] == ["e2"]
    assert [e["event_id"] for e in tables.audit_events(since_ms=6)] == ["e2"]
    assert [e["event_id"] for e in tables.audit_events(model_version="a", actions=["comment"])] == ["e1"]


def test_listeners_hear_every_record_after_the_tables_took_it() -> None:
    tables = Tables()
    heard: list[tuple[str, int]] = []
    tables.listeners.append(lambda kind, record: heard.append((kind, len(tables.active_alerts()))))

    tables.add("alert", _alert("a", "firing"))

    assert heard == [("alert", 1)] and tables.counts["alert"] == 1


def test_progress_is_ready_once_every_partition_is_read_to_its_high_watermark() -> None:
    progress = Progress()
    highs: dict[tuple[str, int], int | None] = {("alerts", 0): 3, ("alerts", 1): 0, ("audit", 0): None}
    assigned = list(highs)

    assert not progress.check([], highs.get), "nothing assigned yet"
    assert not progress.check(assigned, highs.get), "audit not fetched yet"
    highs[("audit", 0)] = 1
    progress.seen("audit", 0, 0)
    progress.seen("alerts", 0, 1)
    assert not progress.check(assigned, highs.get), "alerts[0] has offsets 2 and 3 to go"
    progress.seen("alerts", 0, 2)
    assert progress.check(assigned, highs.get)
    highs[("alerts", 0)] = 99
    assert progress.check(assigned, highs.get), "once ready, always ready"


def test_event_hub_filters_kinds_and_ends_streams_on_close() -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        hub = Hub()
        alerts, everything = hub.subscribe(["alert"]), hub.subscribe(KINDS)
        tables = Tables()
        tables.listeners.append(hub.publish)
        tables.add("alert", _alert("a", "firing"))
        tables.add("window", _window("drift", "v1", 10))
        hub.close()
        late = hub.subscribe(["alert"])
        return [e async for e in alerts], [e async for e in everything] + [e async for e in late]

    alerts, everything = asyncio.run(scenario())

    assert [(kind, record["alert_id"]) for _, kind, record in alerts] == [("alert", "a")]
    assert [kind for _, kind, _ in everything] == ["alert", "window"]
    assert [event_id for event_id, _, _ in everything] == [1, 2]


def test_a_subscriber_that_falls_behind_is_dropped_with_one_overflow_event() -> None:
    async def scenario() -> tuple[list[str], int]:
        hub = Hub(maxsize=3)
        slow, fast = hub.subscribe(["alert"]), hub.subscribe(["alert"])
        got_fast = []
        for i in range(5):
            hub.publish("alert", {"alert_id": str(i)})
            got_fast.append(await anext(fast))
        return [kind async for _, kind, _ in slow], len(hub)

    kinds, left = asyncio.run(scenario())

    assert kinds == ["overflow"] and left == 1, "the slow one is gone, the fast one stays"
