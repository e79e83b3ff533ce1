"""The alerts service's pure logic: MetricWindows in, Alert transitions out (no I/O).

Per alert (rule, subject, item) a small state machine with hysteresis:

- a breaching window (value past the warning threshold) adds to a breach
  streak, a healthy one to a healthy streak (each resets the other);
- an inactive alert fires after ``for`` consecutive breaching windows, or
  ``for_critical`` consecutive critical ones, unless it resolved less than
  ``cooldown_s`` of window time ago;
- a firing alert escalates at once when a window reaches a higher severity,
  and de-escalates or resolves only after ``clear_for`` windows below it;
- windows under the rule's ``min_count``, and windows already seen (a
  processor re-publishes after a crash), change nothing.

Only transitions become Alert records: firing (with its severity, again on
every severity change) and resolved.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rigwatch.windowing import is_segment, rig_of
from services.alerts.rules import SEVERITIES, Rule

__all__ = ["AlertEngine", "AlertState", "alert_id"]


def alert_id(rule: Rule, subject: str, item: str) -> str:
    """Stable id of one alert: ``<rule>/<subject>[/<item>]``."""
    return f"{rule.name}/{subject}" + (f"/{item}" if item else "")


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity)


@dataclass
class AlertState:
    """What the engine remembers of one alert between windows (kept in Redis as JSON)."""

    severity: str = "ok"
    breach: int = 0
    healthy: int = 0
    critical: int = 0  # critical windows in a row
    lower: int = 0  # windows in a row below the current severity while firing
    since: int | None = None  # window end of the first window of the current breach streak
    first_seen: int | None = None  # of the firing alert: the start of its breach streak
    resolved_at: int | None = None
    last_end: int = -1
    last: dict[str, Any] | None = None  # the last Alert published, for `rigwatch alerts list`

    def dumps(self) -> str:
        """JSON for Redis."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def loads(cls, text: str | bytes) -> AlertState:
        """The state :meth:`dumps` wrote."""
        return cls(**json.loads(text))


def _subject_text(subject: str) -> str:
    return f"rig {rig_of(subject)}" if is_segment(subject) else f"model {subject}"


class AlertEngine:
    """Evaluate *rules* on windows, window by window, updating per-alert states."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)

    def evaluate(
        self, window: Mapping[str, Any], states: dict[str, AlertState], touched: set[str] | None = None
    ) -> list[dict[str, Any]]:
        """Alert records (as dicts) for the transitions *window* causes; *states* is updated in place.

        The ids of the states it changed are added to *touched* (when given): what a
        checkpoint must write.
        """
        kind, subject = window["kind"], window["subject"]
        metrics: Mapping[str, float] = window["metrics"]
        end, count = int(window["window_end"]), int(window["count"])
        out = []
        for rule in self.rules:
            if rule.kind != kind or not rule.applies_to(subject) or count < rule.min_count:
                continue
            for item, metric in rule.items(metrics):
                value = float(metrics[metric])
                if not math.isfinite(value):
                    continue
                key = alert_id(rule, subject, item)
                state = states.setdefault(key, AlertState())
                if end <= state.last_end:
                    continue  # seen already: a re-published window
                state.last_end = end
                if touched is not None:
                    touched.add(key)
                alert = self._step(rule, state, rule.level(value), end)
                if alert is None:
                    continue
                also = metrics.get(rule.related(item), math.nan) if rule.also else math.nan
                record = self._record(rule, key, state, alert, metric, value, item, subject, count, end, also)
                state.last = record
                out.append(record)
        return out

    @staticmethod
    def _step(rule: Rule, state: AlertState, level: str, end: int) -> str | None:
        """Advance one alert by one window; the new severity when it is a transition, else None."""
        if level == "ok":
            state.healthy, state.breach, state.since = state.healthy + 1, 0, None
        else:
            state.breach, state.healthy = state.breach + 1, 0
            state.since = state.since if state.since is not None else end
        state.critical = state.critical + 1 if level == "critical" else 0
        if state.severity == "ok":
            cooling = state.resolved_at is not None and end - state.resolved_at < rule.cooldown_s * 1000
            due = state.breach >= rule.for_windows or (
                rule.for_critical is not None and state.critical >= rule.for_critical
            )
            if level != "ok" and due and not cooling:
                state.severity, state.first_seen, state.lower = level, state.since, 0
                return level
            return None
        if level == "ok":
            state.lower += 1
            if state.healthy >= rule.clear_for:
                state.severity, state.resolved_at, state.lower = "ok", end, 0
                return "ok"
            return None
        if _rank(level) > _rank(state.severity):
            state.severity, state.lower = level, 0
            return level
        if _rank(level) < _rank(state.severity):
            state.lower += 1
            if state.lower >= rule.clear_for:
                state.severity, state.lower = level, 0
                return level
            return None
        state.lower = 0
        return None

    @staticmethod
    def _record(
        rule: Rule,
        key: str,
        state: AlertState,
        severity: str,
        metric: str,
        value: float,
        item: str,
        subject: str,
        count: int,
        end: int,
        also: float,
    ) -> dict[str, Any]:
        firing = severity != "ok"
        threshold = rule.threshold(severity)
        text = rule.message.format(
            item=item or rule.metric,
            subject=_subject_text(subject),
            value=value,
            op=(">" if rule.direction == "above" else "<")
            if firing
            else ("<=" if rule.direction == "above" else ">="),
            threshold=threshold,
            windows=state.breach if firing else state.healthy,
            severity=severity,
            count=count,
            also=also,
        )
        return {
            "alert_id": key,
            "rule": rule.name,
            "severity": severity,
            "state": "firing" if firing else "resolved",
            "metric": metric,
            "value": value,
            "threshold": threshold,
            "window_end": end,
            "first_seen": state.first_seen if state.first_seen is not None else end,
            "message": text if firing else f"resolved: {text}",
        }
