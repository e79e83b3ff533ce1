"""The promotion gate's Prometheus metrics, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from rigwatch.metrics import StreamCounters

__all__ = ["GateMetrics"]


class GateMetrics:
    """What the gate read and what it did."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.stream = StreamCounters(r, "gate")
        self.actions = Counter(
            "rigwatch_gate_actions",
            "Lifecycle operations the gate made (promote, end), by result (done, refused)",
            ["kind", "result"],
            registry=r,
        )
