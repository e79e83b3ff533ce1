"""The accuracy processor's Prometheus metrics, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from rigwatch.metrics import StreamCounters, WindowGauges

__all__ = ["AccuracyMetrics"]

#: Window metric -> gauge name and help; each gauge is labelled by subject.
_GAUGES = {
    "accuracy": ("rigwatch_accuracy", "Realised accuracy on the labels of the last window"),
    "estimated_accuracy": ("rigwatch_accuracy_estimated", "Accuracy estimated from confidence, last window"),
    "coverage": ("rigwatch_accuracy_label_coverage", "Labels received / predictions made, last window"),
    "log_loss": ("rigwatch_accuracy_log_loss", "Log loss on the labels of the last window"),
    "macro_f1": ("rigwatch_accuracy_macro_f1", "Macro F1 on the labels of the last window"),
    "label_latency_s.p95": ("rigwatch_accuracy_label_latency_p95_seconds", "Event to label, 95th percentile"),
}
#: The same for comparison windows, labelled by the challenger's version.
_COMPARISON_GAUGES = {
    "verdict": (
        "rigwatch_comparison_verdict",
        "Challenger vs champion so far: 1 better, -1 worse, 0 inconclusive",
    ),
    "n": ("rigwatch_comparison_pairs", "Labelled champion/challenger pairs so far"),
    "challenger_accuracy": ("rigwatch_comparison_challenger_accuracy", "Challenger accuracy on the pairs"),
    "champion_accuracy": ("rigwatch_comparison_champion_accuracy", "Champion accuracy on the same pairs"),
    "sequential_p": ("rigwatch_comparison_sequential_p", "Always-valid p-value of the accuracy test"),
}


class AccuracyMetrics:
    """Counters and gauges one accuracy worker exposes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()

        def counter(name: str, text: str, *labels: str) -> Counter:
            return Counter(f"rigwatch_accuracy_{name}", text, labels, registry=r)

        self.stream = StreamCounters(r, "accuracy")
        self.joined = counter("joined_pairs", "Predictions joined with their label")
        self.duplicates = counter("duplicates", "Re-sent predictions or labels ignored, by side", "side")
        self.unlabelled = counter("unlabelled", "Predictions whose label did not come within the horizon")
        self.orphans = counter("orphan_actuals", "Labels no prediction joined within the horizon")
        self.pending = Gauge("rigwatch_accuracy_pending_events", "Events held in the join state", registry=r)
        self.windows = WindowGauges(r, "accuracy", _GAUGES)
        self.comparisons = WindowGauges(r, "comparison", _COMPARISON_GAUGES)
