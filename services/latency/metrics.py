"""The latency processor's Prometheus metrics, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from rigwatch.metrics import StreamCounters, WindowGauges

__all__ = ["LatencyMetrics"]

#: Window metric -> gauge name and help; each gauge is labelled by subject (model version).
_GAUGES = {
    "rate_per_s": ("rigwatch_health_predictions_per_second", "Predictions per second in the last window"),
    "latency_ms.p50": ("rigwatch_health_latency_p50_ms", "Event to prediction latency, median"),
    "latency_ms.p95": ("rigwatch_health_latency_p95_ms", "Event to prediction latency, 95th percentile"),
    "latency_ms.p99": ("rigwatch_health_latency_p99_ms", "Event to prediction latency, 99th percentile"),
    "processing_ms.p99": ("rigwatch_health_processing_p99_ms", "Scorer processing time, 99th percentile"),
    "data_error_rate": ("rigwatch_health_data_error_rate", "Share of records sent to the DLQ for bad data"),
    "system_error_rate": ("rigwatch_health_system_error_rate", "Share of records the scorer failed to score"),
    "staleness_s": (
        "rigwatch_health_staleness_seconds",
        "Last prediction to window end, seconds",
    ),
    "scorer_lag": ("rigwatch_health_scorer_lag", "Records the scorer group has not committed yet"),
}


class LatencyMetrics:
    """Counters and gauges one latency worker exposes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.stream = StreamCounters(r, "health")
        self.windows = WindowGauges(r, "health", _GAUGES)
