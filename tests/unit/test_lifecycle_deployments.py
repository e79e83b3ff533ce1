"""Deployment state folded from records (also after compaction), record keys, actors, reasons, --since."""

from __future__ import annotations

import getpass
from typing import Any

import pytest

from rigwatch.lifecycle.audit import REASONS, actor, check_reason, parse_since
from rigwatch.lifecycle.deployments import check_name, current, pending, record_key
from rigwatch.lifecycle.exceptions import LifecycleError
from rigwatch.schemas import Codecs


def _record(deployment: str, state: str, champion: str, change_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "deployment": deployment,
        "change_id": change_id,
        "state": state,
        "champion": champion,
        "previous_champion": extra.get("previous"),
        "challenger": None,
        "challenger_mode": None,
        "challenger_percent": None,
        "auto_promote": False,
        "min_pairs": 0,
        "requires_approval": extra.get("requires_approval", False),
        "actor": extra.get("actor", "ana"),
        "reason": "other",
        "comment": None,
        "time": extra.get("time", 0),
    }


def _history() -> list[tuple[str, dict[str, Any]]]:
    """(key, record) as the operations write them: create, promote, rollback; a pending change
    approved (active record, then the same record settling the pending key), one rejected, one open."""
    records = [
        _record("cooler", "active", "v1", "c1"),
        _record("other", "active", "w1", "o1", requires_approval=True),
        _record("cooler", "active", "v2", "c2", previous="v1"),
        _record("other", "pending", "w2", "o2", previous="w1"),
        _record("cooler", "active", "v1", "c3", previous="v2"),
    ]
    approved = _record("other", "active", "w2", "o2", previous="w1", actor="ben")
    out = [(record_key(r), r) for r in records]
    out += [("other", approved), ("other/pending", approved)]
    rejected = [
        _record("other", "pending", "w3", "o3", previous="w2"),
        _record("other", "rejected", "w3", "o3"),
    ]
    out += [(record_key(r), r) for r in rejected]
    out.append(("other/pending", _record("other", "pending", "w4", "o4", previous="w2")))
    return out


def _compacted(log: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """What log compaction may leave: the last record of each key, in offset order."""
    last = {key: i for i, (key, _) in enumerate(log)}
    return [record for i, (key, record) in enumerate(log) if last[key] == i]


def test_the_last_active_record_of_each_deployment_is_its_state() -> None:
    state = current(r for _, r in _history())

    assert {name: (r["champion"], r["previous_champion"]) for name, r in state.items()} == {
        "cooler": ("v1", "v2"),
        "other": ("w2", "w1"),
    }
    assert state["other"]["actor"] == "ben"


def test_pending_changes_are_the_ones_no_later_record_settled() -> None:
    assert list(pending(r for _, r in _history())) == ["o4"]


def test_compaction_leaves_the_same_state_and_pending_changes() -> None:
    log = _history()
    compacted = _compacted(log)

    assert len(compacted) < len(log)
    assert current(compacted) == current(r for _, r in log)
    assert pending(compacted) == pending(r for _, r in log)


def test_a_pending_change_never_hides_the_active_record_from_compaction() -> None:
    log = [("cooler", _record("cooler", "active", "v1", "c1"))]
    proposal = _record("cooler", "pending", "v2", "c2", previous="v1")
    log.append((record_key(proposal), proposal))

    assert current(_compacted(log))["cooler"]["champion"] == "v1"
    assert list(pending(_compacted(log))) == ["c2"]


def test_an_approved_change_stays_settled_after_compaction() -> None:
    proposal = _record("cooler", "pending", "v2", "c2", previous="v1")
    approved = _record("cooler", "active", "v2", "c2", previous="v1", actor="ben")
    later = _record("cooler", "active", "v3", "c3", previous="v2")
    log = [("cooler", _record("cooler", "active", "v1", "c1")), ("cooler/pending", proposal)]
    log += [("cooler", approved), ("cooler/pending", approved), ("cooler", later)]

    assert pending(_compacted(log)) == {}
    assert current(_compacted(log))["cooler"]["champion"] == "v3"
    # Without the approval written under the pending key too, compaction would revive the proposal.
    unsettled = [entry for i, entry in enumerate(log) if i != 3]
    assert list(pending(_compacted(unsettled))) == ["c2"]


def test_records_encode_with_the_deployment_schema() -> None:
    codec = Codecs.load().deployment
    for _, record in _history():
        assert codec.decode(codec.encode(record)) == record


def test_record_keys() -> None:
    assert record_key(_record("cooler", "active", "v1", "c1")) == "cooler"
    assert record_key(_record("cooler", "rejected", "v1", "c1")) == "cooler/pending"
    with pytest.raises(LifecycleError, match="state 'live' is not one of active, pending, rejected"):
        record_key(_record("cooler", "live", "v1", "c1"))


def test_deployment_names_cannot_hold_a_slash() -> None:
    assert check_name("cooler-2.b_x") == "cooler-2.b_x"
    for bad in ("", "a/b", "-x", "x" * 65):
        with pytest.raises(LifecycleError, match="deployment name"):
            check_name(bad)


def test_the_actor_is_as_name_then_the_environment_then_the_os_user() -> None:
    assert actor("ana", {"RIGWATCH_ACTOR": "ben"}) == "ana"
    assert actor(None, {"RIGWATCH_ACTOR": " ben "}) == "ben"
    assert actor(None, {}) == getpass.getuser()
    with pytest.raises(LifecycleError, match="--as is empty"):
        actor(" ", {})
    with pytest.raises(LifecycleError, match="RIGWATCH_ACTOR is empty"):
        actor(None, {"RIGWATCH_ACTOR": ""})


def test_a_reason_outside_the_list_is_refused_with_the_list() -> None:
    assert [check_reason(r) for r in REASONS] == list(REASONS)
    with pytest.raises(LifecycleError) as info:
        check_reason("drift")
    assert str(info.value) == (
        "reason 'drift' is not one of: accuracy, data_drift, errors, scheduled_refresh,"
        " scoring_speed, deprecation, other"
    )


def test_since_takes_a_span_or_an_iso_time() -> None:
    now = 1_800_000_000_000
    assert parse_since("10m", now) == now - 600_000
    assert parse_since("2h", now) == now - 7_200_000
    assert parse_since("1.5d", now) == now - 129_600_000
    assert parse_since("30s", now) == now - 30_000
    assert parse_since("2026-12-03T09:00:00+01:00") == parse_since("2026-12-03T08:00:00")
    with pytest.raises(LifecycleError, match="--since 'yesterday': expected a span like 10m"):
        parse_since("yesterday")
