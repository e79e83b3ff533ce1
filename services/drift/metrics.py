"""The drift processor's Prometheus metrics, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from rigwatch.metrics import StreamCounters

__all__ = ["DriftMetrics"]


class DriftMetrics:
    """Counters, gauges and histograms one drift worker exposes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.stream = StreamCounters(r, "drift")
        self.windows = Counter(
            "rigwatch_drift_windows", "Drift windows emitted, by subject", ["subject"], registry=r
        )
        self.score = Gauge(
            "rigwatch_drift_score",
            "Importance-weighted drift score of the last window",
            ["subject"],
            registry=r,
        )
        self.feature_psi = Gauge(
            "rigwatch_drift_feature_psi",
            "PSI of a feature in the last window",
            ["subject", "feature"],
            registry=r,
        )
        self.feature_ratio = Gauge(
            "rigwatch_drift_feature_psi_ratio",
            "PSI over its null threshold at the window's count (> 1: drift)",
            ["subject", "feature"],
            registry=r,
        )
        self.prediction_drift = Gauge(
            "rigwatch_drift_prediction_drift",
            "Prediction drift ratio of the last window (> 1: drift)",
            ["subject"],
            registry=r,
        )
        self.window_end = Gauge(
            "rigwatch_drift_window_end_seconds",
            "Event-time end of the last emitted window",
            ["subject"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "rigwatch_drift_batch_seconds",
            "Decode + count + Redis update time of one batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.model = Info("rigwatch_drift_model", "The model whose reference profile is used", registry=r)

    def observe_window(self, record: dict[str, object], features: tuple[str, ...]) -> None:
        """Update the gauges from an emitted MetricWindow record."""
        subject = str(record["subject"])
        values = record["metrics"]
        assert isinstance(values, dict)
        self.windows.labels(subject).inc()
        self.window_end.labels(subject).set(int(record["window_end"]) / 1000)  # type: ignore[call-overload]
        if "drift_score" in values:
            self.score.labels(subject).set(values["drift_score"])
        if "prediction_drift" in values:
            self.prediction_drift.labels(subject).set(values["prediction_drift"])
        for feature in features:
            if f"psi.{feature}" in values:
                self.feature_psi.labels(subject, feature).set(values[f"psi.{feature}"])
                self.feature_ratio.labels(subject, feature).set(values[f"psi_ratio.{feature}"])
