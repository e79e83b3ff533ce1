"""The scorer's Prometheus metrics, on a registry of its own (no import-time globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, Info

__all__ = ["ScorerMetrics"]


class ScorerMetrics:
    """Counters and histograms one scorer process exposes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_in = Counter("rigwatch_scorer_events_in", "Sensor readings consumed", registry=r)
        self.predictions_out = Counter(
            "rigwatch_scorer_predictions_out", "Predictions produced and acknowledged", registry=r
        )
        self.dlq = Counter(
            "rigwatch_scorer_dlq", "Readings sent to the DLQ, by reason", ["reason"], registry=r
        )
        self.batch_size = Histogram(
            "rigwatch_scorer_batch_size",
            "Records per consumed batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "rigwatch_scorer_batch_seconds",
            "Decode + score + produce + flush time of one batch",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.model = Info("rigwatch_scorer_model", "The model this scorer serves", registry=r)
        self.switches = Counter(
            "rigwatch_scorer_model_switches",
            "New champions swapped in (promotions and rollbacks)",
            registry=r,
        )
        self.load_failures = Counter(
            "rigwatch_scorer_model_load_failures",
            "Champions that failed to load or score a sample: the previous one kept serving",
            registry=r,
        )
