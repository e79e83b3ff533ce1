"""The alerts service's Prometheus metrics, on a registry of its own."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.alerts.handler import AlertState

__all__ = ["AlertsMetrics"]


class AlertsMetrics:
    """Active alerts by rule and severity, transitions published, windows read."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.windows = Counter(
            "rigwatch_alerts_windows_in", "MetricWindows evaluated, by kind", ["kind"], registry=r
        )
        self.undecodable = Counter(
            "rigwatch_alerts_undecodable", "Records on rig.metrics not decodable", registry=r
        )
        self.published = Counter(
            "rigwatch_alerts_published",
            "Alert records published, by rule and state",
            ["rule", "state"],
            registry=r,
        )
        self.webhook_failures = Counter(
            "rigwatch_alerts_webhook_failures",
            "Alerts the webhook did not accept after all retries",
            registry=r,
        )
        self.active = Gauge(
            "rigwatch_alerts_active",
            "Alerts firing now, by rule and severity",
            ["rule", "severity"],
            registry=r,
        )
        self._shown: set[tuple[str, str]] = set()

    def set_active(self, states: Iterable[tuple[str, AlertState]]) -> None:
        """Set the active gauge from every alert's state (combinations gone back to 0)."""
        tally = Tally(
            (key.split("/", 1)[0], state.severity) for key, state in states if state.severity != "ok"
        )
        for combo in self._shown - set(tally):
            self.active.labels(*combo).set(0)
        for combo, n in tally.items():
            self.active.labels(*combo).set(n)
        self._shown = set(tally) | self._shown
