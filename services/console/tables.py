"""The console's in-memory tables: the control-plane topics folded record by record, no I/O.

The console's faust agents decode each record and hand it to :meth:`Tables.add`;
the API reads the tables. What each keeps:

- ``rig.alerts``: the latest record of every alert (its state now), and the
  newest transitions (bounded);
- ``rig.metrics``: the newest windows per (kind, subject) (bounded), and the
  latest comparison window per (champion, challenger);
- ``rig.deployments``: every record, folded by the lifecycle's own
  :func:`~rigwatch.lifecycle.deployments.current` and
  :func:`~rigwatch.lifecycle.deployments.pending`;
- ``rig.audit``: every event (the trail is small and kept whole);
- ``rig.scorer-status``: the last heartbeat of every scorer.

Delivery is at-least-once, so a record can come twice: a repeated window,
transition or audit event replaces its first copy rather than being listed twice.

Listeners (the server-sent events of a next step) are called with every record
added, after the tables took it: ``listener(kind, record)``.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from rigwatch.lifecycle.deployments import current, pending
from rigwatch.lifecycle.status import GONE_AFTER_MS

__all__ = ["KINDS", "SEVERITY_ORDER", "Listener", "Progress", "Tables"]

#: What :meth:`Tables.add` takes, one per followed topic.
KINDS = ("alert", "window", "deployment", "audit", "heartbeat")
#: Most severe first.
SEVERITY_ORDER = {"critical": 0, "warning": 1, "ok": 2}

Listener = Callable[[str, dict[str, Any]], None]


class _Bounded(OrderedDict[Any, dict[str, Any]]):
    """Records by key, oldest first, at most *limit*: a new key beyond it evicts the oldest."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: Any, record: dict[str, Any]) -> None:
        if key in self:
            self[key] = record  # a repeat replaces its first copy, in place
            return
        self[key] = record
        while len(self) > self.limit:
            self.popitem(last=False)


class Tables:
    """Alerts, windows, deployments, audit events and scorer heartbeats, as the topics said them.

    Parameters
    ----------
    windows_per_subject
        The newest MetricWindows kept per (kind, subject).
    recent_alerts
        The newest alert transitions kept.

    Examples
    --------
    >>> tables = Tables()
    >>> tables.add("alert", {"alert_id": "drift/v1", "state": "firing", "severity": "warning",
    ...                      "first_seen": 1, "window_end": 10})
    >>> [a["alert_id"] for a in tables.active_alerts()]
    ['drift/v1']
    >>> tables.add("alert", {"alert_id": "drift/v1", "state": "resolved", "severity": "ok",
    ...                      "first_seen": 1, "window_end": 20})
    >>> tables.active_alerts(), [a["state"] for a in tables.recent_alerts()]
    ([], ['resolved', 'firing'])
    """

    def __init__(self, windows_per_subject: int = 360, recent_alerts: int = 1000) -> None:
        self.windows_per_subject = windows_per_subject
        self.alerts: dict[str, dict[str, Any]] = {}
        self.transitions = _Bounded(recent_alerts)
        self.windows: dict[tuple[str, str], _Bounded] = {}
        self.comparisons: dict[tuple[str, str], dict[str, Any]] = {}
        self.deployment_records: list[dict[str, Any]] = []
        self.audit = _Bounded(limit=2**62)  # whole: the trail is small, and it is the record
        self.heartbeats: dict[str, dict[str, Any]] = {}
        self.listeners: list[Listener] = []
        self.counts = dict.fromkeys(KINDS, 0)
        self._folded: tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]] | None = None

    # ------------------------------------------------------------------ writing

    def add(self, kind: str, record: dict[str, Any]) -> None:
        """Fold one decoded record of *kind* (:data:`KINDS`) in, then tell the listeners."""
        getattr(self, f"_add_{kind}")(record)
        self.counts[kind] += 1
        for listener in self.listeners:
            listener(kind, record)

    def _add_alert(self, alert: dict[str, Any]) -> None:
        self.alerts[alert["alert_id"]] = alert
        key = (alert["alert_id"], alert["state"], alert["first_seen"], alert["window_end"])
        self.transitions.put(key, alert)

    def _add_window(self, window: dict[str, Any]) -> None:
        subject = (window["kind"], window["subject"])
        kept = self.windows.get(subject)
        if kept is None:
            kept = self.windows[subject] = _Bounded(self.windows_per_subject)
        kept.put((window["window_start"], window["window_end"]), window)
        if window["kind"] == "comparison":
            champion = _detail(window).get("champion")
            if champion is not None:
                pair = (str(champion), window["subject"])
                last = self.comparisons.get(pair)
                if last is None or window["window_end"] >= last["window_end"]:
                    self.comparisons[pair] = window

    def _add_deployment(self, record: dict[str, Any]) -> None:
        self.deployment_records.append(record)
        self._folded = None

    def _add_audit(self, event: dict[str, Any]) -> None:
        self.audit.put(event["event_id"], event)

    def _add_heartbeat(self, beat: dict[str, Any]) -> None:
        self.heartbeats[beat["scorer_id"]] = beat

    # ------------------------------------------------------------------ reading

    def active_alerts(self) -> list[dict[str, Any]]:
        """Alerts firing now, most severe first, then oldest first."""
        firing = [a for a in self.alerts.values() if a["state"] == "firing"]
        return sorted(firing, key=lambda a: (SEVERITY_ORDER.get(a["severity"], 9), a["first_seen"]))

    def recent_alerts(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The newest alert transitions (firing and resolved), newest first."""
        newest = list(reversed(self.transitions.values()))
        return newest if limit is None else newest[:limit]

    def window_list(
        self,
        kind: str | None = None,
        subject: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Windows of *kind* and *subject* (None: any) ending in [*since_ms*, *until_ms*], by end time.

        *limit* keeps the newest that many.
        """
        out = [
            w
            for (k, s), kept in self.windows.items()
            if (kind is None or k == kind) and (subject is None or s == subject)
            for w in kept.values()
            if (since_ms is None or w["window_end"] >= since_ms)
            and (until_ms is None or w["window_end"] <= until_ms)
        ]
        out.sort(key=lambda w: (w["window_end"], w["kind"], w["subject"]))
        return out if limit is None else out[-limit:] if limit else []

    def subjects(self) -> dict[str, list[str]]:
        """The subjects with windows, by kind."""
        out: dict[str, list[str]] = {}
        for kind, subject in sorted(self.windows):
            out.setdefault(kind, []).append(subject)
        return out

    def comparison(self, champion: str, challenger: str) -> dict[str, Any] | None:
        """The latest comparison window of *challenger* against *champion*, if any."""
        return self.comparisons.get((champion, challenger))

    def _fold(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        # The lifecycle's own folds, on the records in topic order: one implementation of the rules.
        if self._folded is None:
            self._folded = (current(self.deployment_records), pending(self.deployment_records))
        return self._folded

    def deployments(self) -> dict[str, dict[str, Any]]:
        """Each deployment's state: its last active record."""
        return self._fold()[0]

    def pending_changes(self, deployment: str | None = None) -> list[dict[str, Any]]:
        """Changes awaiting approval (of *deployment*, or all), oldest first."""
        return [c for c in self._fold()[1].values() if deployment is None or c["deployment"] == deployment]

    def scorers(self, deployment: str, now_ms: int) -> list[dict[str, Any]]:
        """The scorers of *deployment* heard from lately (as ``rigwatch deploy status`` says), by id."""
        return sorted(
            (
                b
                for b in self.heartbeats.values()
                if b["deployment"] == deployment and now_ms - b["time"] <= GONE_AFTER_MS
            ),
            key=lambda b: b["scorer_id"],
        )

    def audit_events(
        self,
        deployment: str | None = None,
        since_ms: int | None = None,
        model_version: str | None = None,
        actions: Iterable[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Audit events, oldest first, filtered by deployment, time, model version and action."""
        wanted = set(actions) if actions is not None else None
        return [
            e
            for e in self.audit.values()
            if (deployment is None or e["deployment"] == deployment)
            and (since_ms is None or e["time"] >= since_ms)
            and (model_version is None or e["model_version"] == model_version)
            and (wanted is None or e["action"] in wanted)
        ]


class Progress:
    """Whether the console has read every partition it follows up to where it ended when first fetched.

    Before that the tables may miss records (an alert firing, the champion), so the
    API says ``ready: false`` and scoring waits. The end is the high watermark of
    the consumer's fetch responses (right on the local broker too, unlike the end
    offsets it lists); once ready, always ready.

    Examples
    --------
    >>> progress = Progress()
    >>> progress.seen("rig.audit", 0, 4)
    >>> progress.check([("rig.audit", 0), ("rig.alerts", 0)], {("rig.audit", 0): 5, ("rig.alerts", 0): 0}.get)
    True
    >>> Progress().check([("rig.audit", 0)], {("rig.audit", 0): None}.get)
    False
    """

    def __init__(self) -> None:
        self.last: dict[tuple[str, int], int] = {}
        self.ready = False

    def seen(self, topic: str, partition: int, offset: int) -> None:
        """The record at *offset* of the partition has been handled."""
        self.last[(topic, partition)] = offset

    def check(self, assigned: Iterable[Any], highwater: Callable[[Any], int | None]) -> bool:
        """Whether every partition of *assigned* ((topic, partition) pairs) is read to its high watermark."""
        if not self.ready:
            parts = list(assigned)
            self.ready = bool(parts) and all(self._done(tuple(tp), highwater(tp)) for tp in parts)
        return self.ready

    def _done(self, tp: tuple[Any, ...], high: int | None) -> bool:
        if high is None:
            return False  # not fetched yet: the end is unknown
        return high <= 0 or self.last.get((tp[0], tp[1]), -1) >= high - 1


def _detail(window: dict[str, Any]) -> dict[str, Any]:
    """A window's ``detail`` JSON (``{}`` when absent or not JSON)."""
    try:
        detail = json.loads(window.get("detail") or "{}")
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {}
