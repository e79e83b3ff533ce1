"""The live phase of ``rigwatch bench processors``: every service at once, in real time.

The pipeline of ``rigwatch bench alerts`` (:class:`~loadgen.bench_alerts.Pipeline`)
with all five services: readings at a fixed rate stamped with the wall clock,
each one's Actual right after it, windows of ``window_ms`` (drift, latency and
accuracy alike). Once warm (drift windows evaluated by the alerts service and a
window of every kind read), for ``seconds``:

window close → arrival
    per MetricWindow on ``rig.metrics``: the wall time a reader in this process
    got it, minus its ``window_end`` + ``lateness_ms`` (when it may close); and
    the same for its Kafka timestamp (published). Per kind.
alert freshness
    ``injections`` drift injections as in ``rigwatch bench alerts``: first
    drifted event → firing alert read, and resolve delay.
CPU at this rate
    each service's, the broker's and Redis's CPU over the measured interval.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from loadgen.bench_alerts import AlertsBenchOptions, Feed, Injection, Pipeline, freshness_summary, percentiles
from rigwatch.config import Settings
from rigwatch.data import Dataset
from rigwatch.exceptions import RigwatchError
from rigwatch.harness import cpu_seconds, stack_pids
from rigwatch.kafka import TopicReader, create_topics

__all__ = ["KINDS", "SERVICES", "close_delays", "markdown", "run_live"]

SERVICES = ("scorer", "drift", "latency", "accuracy", "alerts")
KINDS = ("drift", "health", "accuracy")


def close_delays(
    windows: Sequence[tuple[Mapping[str, Any], int, int]], lateness_ms: int, since_ms: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Seconds from each window's close (end + lateness) to published and to read, by kind.

    Only windows that may close at *since_ms* or later count (earlier ones waited for start-up).

    Examples
    --------
    >>> ws = [({"kind": "drift", "window_end": 10_000}, 10_700, 10_750),
    ...       ({"kind": "drift", "window_end": 5_000}, 9_000, 9_100)]
    >>> d = close_delays(ws, 500, 8_000)
    >>> d["to_read_s"]["drift"]["max"], d["to_published_s"]["drift"]["n"]
    (0.25, 1.0)
    """
    read: dict[str, list[float]] = {}
    published: dict[str, list[float]] = {}
    for window, published_ms, read_ms in windows:
        closes = int(window["window_end"]) + lateness_ms
        if closes < since_ms:
            continue
        read.setdefault(window["kind"], []).append((read_ms - closes) / 1000)
        published.setdefault(window["kind"], []).append((published_ms - closes) / 1000)
    return {
        "to_read_s": {kind: percentiles(v) for kind, v in sorted(read.items())},
        "to_published_s": {kind: percentiles(v) for kind, v in sorted(published.items())},
    }


class _Cpu:
    """CPU seconds of the children and of the local stack's processes, at one moment."""

    def __init__(self, pipe: Pipeline, stack: Mapping[str, int]) -> None:
        self.at = time.monotonic()
        self.seconds = {name: child.cpu_seconds() for name, child in pipe.children.items()}
        self.seconds |= {name: cpu_seconds(pid) for name, pid in stack.items()}

    def pct_since(self, before: _Cpu) -> dict[str, float]:
        elapsed = self.at - before.at
        return {name: 100 * (s - before.seconds[name]) / elapsed for name, s in self.seconds.items()}


def _wait_kinds(pipe: Pipeline, reader: Any, feed: Feed, until: float) -> None:
    while {w["kind"] for w, _, _ in pipe.windows} < set(KINDS):
        if time.monotonic() > until:
            seen = sorted({w["kind"] for w, _, _ in pipe.windows})
            raise RigwatchError(f"live: windows of {seen} only, want {list(KINDS)}; see {pipe.logs}")
        pipe.check(feed)
        pipe.poll(reader)


def run_live(
    settings: Settings,
    dataset: Dataset,
    version: str,
    options: AlertsBenchOptions,
    seconds: float,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every service at *options.rate* for *seconds* once warm; the figures of the module docstring."""
    pipe = Pipeline(settings, dataset, version, options, say, services=SERVICES)
    pipe.write_rules()
    create_topics(pipe.bootstrap, pipe.settings.topics.all(), options.partitions)
    topics = pipe.settings.topics
    feed = Feed(pipe.bootstrap, topics.sensor_readings, dataset, options, pipe.codecs, topics.actuals)
    rng = np.random.default_rng(options.seed)
    injections: list[Injection] = []
    stack = stack_pids(settings)
    try:
        with TopicReader(pipe.bootstrap, [topics.metrics, topics.alerts]) as reader:
            began = time.monotonic()
            pipe.start()
            feed.start()
            pipe.wait_warm(reader, feed)
            _wait_kinds(pipe, reader, feed, began + 180)
            warm_ms, warm_sent, warm_cpu = int(time.time() * 1000), feed.sent, _Cpu(pipe, stack)
            say(f"    warm after {time.monotonic() - began:.1f} s")
            for index in range(options.injections):
                say(
                    f"    [{index + 1}/{options.injections}] {options.sensor} {options.delta:+g} injected ..."
                )
                injections.append(pipe.inject(reader, feed, index, rng))
            until = warm_cpu.at + seconds
            while time.monotonic() < until:
                pipe.check(feed)
                pipe.poll(reader)
            end_cpu, end_sent = _Cpu(pipe, stack), feed.sent
    finally:
        feed.stop.set()
        feed.join(30)
        pipe.stop()
        pipe.cleanup()
    measured_s = end_cpu.at - warm_cpu.at
    rows = [i.figures(options.window_ms, options.lateness_ms) for i in injections]
    emit_s = [
        (published - end - options.lateness_ms) / 1000
        for end, published in sorted(pipe.window_published.items())
        if end + options.lateness_ms >= warm_ms
    ]
    return {
        "options": {k: str(v) for k, v in options.__dict__.items()} | {"seconds": str(seconds)},
        "measured_s": measured_s,
        "readings_per_s": (end_sent - warm_sent) / measured_s,
        "window_close": close_delays(pipe.windows, options.lateness_ms, warm_ms),
        "freshness": freshness_summary(rows, options.window_ms, emit_s),
        "injections": [asdict(i) for i in injections],
        "rows": rows,
        "cpu_pct": end_cpu.pct_since(warm_cpu),
        "exit_codes": pipe.exit_codes,
    }


def _cell(stats: Mapping[str, float] | None, key: str) -> str:
    value = (stats or {}).get(key, math.nan)
    return "–" if not math.isfinite(value) else f"{value:.2f}"


def markdown(live: Mapping[str, Any]) -> list[str]:
    """The live phase as markdown lines."""
    o = live["options"]
    close = live["window_close"]
    lines = [
        f"Live: all five services together, {live['readings_per_s']:,.0f} readings/s (each with its Actual) "
        f"stamped with the wall clock, {o['rigs']} rigs, {int(o['window_ms']) / 1000:g} s windows, lateness "
        f"{o['lateness_ms']} ms, close interval {o['close_interval_ms']} ms; "
        f"measured {live['measured_s']:.0f} s once warm.",
        "",
        "| window close (end + lateness) → | kind | n | p50 s | p99 s | max s |",
        "|---|---|---|---|---|---|",
    ]
    for label, key in (("published (Kafka timestamp)", "to_published_s"), ("read here", "to_read_s")):
        for kind, s in close[key].items():
            cells = " | ".join(_cell(s, k) for k in ("p50", "p99", "max"))
            lines.append(f"| {label} | {kind} | {s['n']:.0f} | {cells} |")
    fresh = live["freshness"]
    stats = fresh["stats"]
    if fresh["injections"]:
        lines += [
            "",
            "| alert freshness, s | n | p50 | p99 | max |",
            "|---|---|---|---|---|",
        ]
        for key, label in (
            ("freshness_s", "first drifted event → firing alert read"),
            ("pipeline_s", "  of which window end + lateness → alert read"),
            ("resolve_delay_s", "last drifted event → resolved alert read"),
        ):
            s = stats.get(key, {})
            cells = " | ".join(_cell(s, k) for k in ("p50", "p99", "max"))
            lines.append(f"| {label} | {s.get('n', 0):.0f} | {cells} |")
        lines.append(f"\n{fresh['missed']} of {fresh['injections']} injections without an alert.")
    cpu = live["cpu_pct"]
    lines += ["", "| CPU % of a core at this rate | " + " | ".join(cpu) + " |"]
    lines += ["|---|" + "---|" * len(cpu), "| | " + " | ".join(f"{v:.1f}" for v in cpu.values()) + " |"]
    lines.append(
        "\nWith a few dozen windows per kind, p99 lies just under the max (numpy's linear interpolation)."
    )
    return lines
