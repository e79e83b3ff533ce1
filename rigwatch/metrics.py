"""Serve a service's Prometheus registry on a loopback port; gauges that follow emitted MetricWindows."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

__all__ = ["StreamCounters", "WindowGauges", "serve_metrics"]


def serve_metrics(
    registry: CollectorRegistry, port: int, host: str = "127.0.0.1", stack: ExitStack | None = None
) -> int:
    """Serve *registry* at ``http://host:port/metrics``; port 0 picks a free one. Returns the port.

    A port of -1 disables the endpoint (tests that run many services in one process).
    With *stack*, the server is shut down when the stack closes.
    """
    if port < 0:
        return -1
    server, _thread = start_http_server(port, addr=host, registry=registry)
    if stack is not None:
        stack.callback(server.server_close)
        stack.callback(server.shutdown)
    return int(server.server_port)


class StreamCounters:
    """What a windowed processor consumed, could not use, and got too late (``rigwatch_<kind>_*``)."""

    def __init__(self, registry: CollectorRegistry, kind: str) -> None:
        r = registry
        self.events_in = Counter(
            f"rigwatch_{kind}_events_in", "Records consumed, by topic", ["topic"], registry=r
        )
        self.undecodable = Counter(
            f"rigwatch_{kind}_undecodable", "Records that could not be used, by topic", ["topic"], registry=r
        )
        self.late = Counter(
            f"rigwatch_{kind}_late_records",
            "Records for an already closed window, by subject",
            ["subject"],
            registry=r,
        )

    def count(self, topic: str, consumed: int, unusable: int, late: Mapping[str, int]) -> None:
        """Count one applied batch."""
        self.events_in.labels(topic).inc(consumed)
        self.undecodable.labels(topic).inc(unusable)
        for subject, n in late.items():
            self.late.labels(subject).inc(n)


class WindowGauges:
    """One gauge per window metric, labelled by subject, and a counter of windows emitted.

    Parameters
    ----------
    registry
        Where the metrics are registered.
    kind
        The MetricWindow kind: the counter is ``rigwatch_<kind>_windows``.
    gauges
        Window metric name -> (Prometheus gauge name, help).
    """

    def __init__(self, registry: CollectorRegistry, kind: str, gauges: Mapping[str, tuple[str, str]]) -> None:
        self.windows = Counter(
            f"rigwatch_{kind}_windows",
            f"{kind.capitalize()} windows emitted, by subject",
            ["subject"],
            registry=registry,
        )
        self.gauges = {
            metric: Gauge(name, text, ["subject"], registry=registry)
            for metric, (name, text) in gauges.items()
        }

    def observe(self, record: Mapping[str, object]) -> None:
        """Update the gauges from an emitted MetricWindow record (a metric absent: gauge unchanged)."""
        subject = str(record["subject"])
        values = record["metrics"]
        assert isinstance(values, dict)
        self.windows.labels(subject).inc()
        for metric, gauge in self.gauges.items():
            if metric in values:
                gauge.labels(subject).set(values[metric])
