"""``rigwatch bench scorer``: throughput, latency and resources of the scorer, side by side.

Every measurement runs the workers as separate processes against the same broker,
on fresh topics, with the same pre-encoded real readings, and is repeated; the
report gives medians with min–max and ratios taken within each repeat.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadgen.pump import PumpOptions, run_pump
from loadgen.readings import ReadingStream
from rigwatch.config import Settings
from rigwatch.data import Dataset
from rigwatch.harness import Process
from rigwatch.kafka import ReliableProducer, StopFlag, TopicReader, create_topics, delete_topics
from rigwatch.schemas import Codecs
from rigwatch.tail import decode_any

__all__ = ["BenchOptions", "markdown", "run_scorer_bench", "summary"]

#: Worker name -> (command after ``python -m``, processes).
WORKERS: dict[str, tuple[list[str], int]] = {
    "scorer": (["rigwatch", "scorer"], 1),
    "naive": (["loadgen.baselines", "naive"], 1),
    "passthrough": (["loadgen.baselines", "passthrough"], 1),
    "scorer x2": (["rigwatch", "scorer"], 2),
}
WARMUP_S = 3.0


@dataclass(frozen=True)
class BenchOptions:
    """What ``rigwatch bench scorer`` measures; see its ``--help``."""

    events: int = 200_000
    repeats: int = 3
    rate: float = 1000.0
    duration: float = 60.0
    partitions: int = 4
    out: Path = Path("results")
    workers: tuple[str, ...] = tuple(WORKERS)


class _Bench:
    def __init__(self, settings: Settings, options: BenchOptions) -> None:
        self.settings, self.options = settings, options
        self.bootstrap = settings.bootstrap or ""
        self.logs = options.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def fresh_topics(self) -> Iterator[Settings]:
        """Settings with new topics, deleted afterwards so the memory-only broker does not fill."""
        prefix = f"bench{uuid.uuid4().hex[:8]}."
        settings = self.settings.model_copy(update={"topic_prefix": prefix})
        create_topics(self.bootstrap, settings.topics.all(), self.options.partitions)
        try:
            yield settings
        finally:
            delete_topics(self.bootstrap, settings.topics.all())

    def start(self, name: str, settings: Settings, group: str) -> list[Process]:
        (module, *args), count = WORKERS[name]
        env = settings.to_env(RIGWATCH_SCORER_GROUP=group, RIGWATCH_SCORER_METRICS_PORT="-1")
        return [
            Process.start(args, env, self.logs / f"{name.replace(' ', '')}-{group}-{i}.log", module=module)
            for i in range(count)
        ]

    def throughput(self, name: str, encoded: list[tuple[str, bytes]]) -> dict[str, float]:
        with self.fresh_topics() as settings:
            return self._throughput(name, encoded, settings)

    def _throughput(
        self, name: str, encoded: list[tuple[str, bytes]], settings: Settings
    ) -> dict[str, float]:
        producer = ReliableProducer(self.bootstrap, {"linger.ms": 20, "batch.size": 1_000_000})
        for key, value in encoded:
            producer.produce(settings.topics.sensor_readings, value, key=key)
        producer.flush(120)
        launched = time.monotonic()
        procs = self.start(name, settings, f"bench-{uuid.uuid4().hex[:6]}")
        n = len(encoded)
        first = last = 0.0
        seen = first_batch = 0
        deadline = launched + max(120.0, n / 500)
        try:
            with TopicReader(self.bootstrap, [settings.topics.predictions]) as reader:
                while seen < n and time.monotonic() < deadline:
                    for p in procs:
                        p.check_running()  # a crashed worker fails the run now, not at the deadline
                    got = len(reader.poll(0.05, max_messages=10_000))
                    if got:
                        last = time.monotonic()
                        if not seen:
                            first, first_batch = last, got
                        seen += got
            cpu = sum(p.cpu_seconds() for p in procs)
            rss = max(p.peak_rss_mb() for p in procs)
        finally:
            outcomes = [p.stop() for p in procs]
        if seen < n:
            raise RuntimeError(f"{name}: only {seen} of {n} outputs within the time limit; see {self.logs}")
        # Steady state: from the first output to the last (process start and group join excluded).
        rate = (n - first_batch) / (last - first) if last > first else float("nan")
        return {
            "events_per_s": rate,
            "events_per_s_per_process": rate / len(procs),
            "startup_s": first - launched,
            "cpu_s": cpu,
            "cpu_us_per_event": cpu / n * 1e6,
            "peak_rss_mb": rss,
            "exit_codes_ok": float(all(o.clean for o in outcomes)),
        }

    def latency(self, name: str, dataset: Dataset) -> dict[str, float]:
        with self.fresh_topics() as settings:
            return self._latency(name, dataset, settings)

    def _latency(self, name: str, dataset: Dataset, settings: Settings) -> dict[str, float]:
        codecs = Codecs.load()
        codec = codecs.sensor_reading
        procs = self.start(name, settings, f"bench-lat-{uuid.uuid4().hex[:6]}")
        producer = ReliableProducer(self.bootstrap, {"linger.ms": 1})
        stream = ReadingStream(dataset, codec, run_id="warmup", rigs=16, seed=1)
        events = stream.events(lambda: int(time.time() * 1000))
        latencies: list[int] = []
        try:
            with TopicReader(self.bootstrap, [settings.topics.predictions]) as reader:
                # Warm up until the scorer answers (group joined), then offer the fixed load.
                while not reader.poll(0.1):
                    for p in procs:
                        p.check_running()
                    event = next(events)
                    producer.produce(settings.topics.sensor_readings, event.value, key=event.key)
                    producer.flush()
                # The first seconds at full rate warm every partition's fetch and produce path;
                # their latencies are not counted.
                warmup = int(self.options.rate * WARMUP_S)
                total = warmup + int(self.options.rate * self.options.duration)
                load = PumpOptions(rate=self.options.rate, count=total, rigs=16, label_coverage=0, seed=2)
                sender = threading.Thread(
                    target=run_pump, args=(settings, dataset, load, StopFlag(), io.StringIO())
                )
                sender.start()
                deadline = time.monotonic() + WARMUP_S + self.options.duration + 60
                seen = 0
                while seen < total and time.monotonic() < deadline:
                    for msg in reader.poll(0.01):
                        now = int(time.time() * 1000)
                        seen += 1
                        if seen > warmup:
                            # The pass-through writes readings, the scorer predictions: both carry event_time.
                            latencies.append(now - decode_any(codecs, msg.value())[1]["event_time"])
                sender.join()
        finally:
            for p in procs:
                p.stop()
        latencies.sort()

        def pct(q: float) -> float:
            return float(latencies[min(len(latencies) - 1, int(q * len(latencies)))])

        return {
            "count": float(len(latencies)),
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "max_ms": float(latencies[-1]),
        }


def summary(values: list[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements.

    Examples
    --------
    >>> summary([3.0, 1.0, 2.0])
    {'median': 2.0, 'min': 1.0, 'max': 3.0}
    """
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run_scorer_bench(
    settings: Settings, dataset: Dataset, options: BenchOptions, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run every measurement *options.repeats* times; write JSON and markdown; return the result."""
    bench = _Bench(settings, options)
    codec = Codecs.load().sensor_reading
    say(f"encoding {options.events:,} readings from {dataset.source} ...")
    stream = ReadingStream(dataset, codec, run_id="bench", rigs=16, count=options.events, seed=7)
    encoded = [(e.key, e.value) for e in stream.events(lambda: int(time.time() * 1000))]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in options.workers}
    ratios: dict[str, list[float]] = {"scorer/naive": [], "scorer/passthrough": [], "x2/x1": []}
    latency: dict[str, list[dict[str, float]]] = {
        name: [] for name in ("scorer", "passthrough") if name in options.workers
    }
    for repeat in range(1, options.repeats + 1):
        for name in options.workers:
            say(f"[{repeat}/{options.repeats}] throughput: {name} on {options.events:,} readings ...")
            runs[name].append(bench.throughput(name, encoded))
            say(f"    {runs[name][-1]['events_per_s']:,.0f} events/s")
            if not runs[name][-1]["exit_codes_ok"]:
                say(f"    warning: {name} did not exit 0 after SIGTERM; see {options.out / 'logs'}")
        this = {name: r[-1]["events_per_s"] for name, r in runs.items()}
        for ratio, (a, b) in {
            "scorer/naive": ("scorer", "naive"),
            "scorer/passthrough": ("scorer", "passthrough"),
            "x2/x1": ("scorer x2", "scorer"),
        }.items():
            if a in this and b in this:
                ratios[ratio].append(this[a] / this[b])
        for name in latency if options.duration > 0 else ():
            load = f"{options.rate:,.0f}/s for {options.duration:.0f} s"
            say(f"[{repeat}/{options.repeats}] latency: {name} at {load} ...")
            latency[name].append(bench.latency(name, dataset))
            say(f"    p99 {latency[name][-1]['p99_ms']:.0f} ms")
    result = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "options": {k: str(v) for k, v in options.__dict__.items()},
        "data": dataset.source,
        "throughput": {
            name: {key: summary([r[key] for r in rs]) for key in rs[0]} for name, rs in runs.items() if rs
        },
        "ratios": {k: summary(v) for k, v in ratios.items() if v},
        "latency": {
            name: {key: summary([r[key] for r in rs]) for key in rs[0]} for name, rs in latency.items() if rs
        },
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (options.out / f"bench-scorer-{stamp}.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (options.out / f"bench-scorer-{stamp}.md").write_text(table)
    say(table)
    return result


def _fmt(s: dict[str, float], spec: str) -> str:
    return f"{s['median']:{spec}} ({s['min']:{spec}}–{s['max']:{spec}})"


def markdown(result: dict[str, Any]) -> str:
    """The result as a short markdown table: medians with min–max."""
    lines = [
        f"Scorer benchmark, {result['created_at']}, {result['machine']['cpus']} CPUs, data {result['data']}",
        "",
        "| worker | events/s | events/s per process | CPU µs/event | peak RSS MB | start-up s |",
        "|---|---|---|---|---|---|",
    ]
    for name, t in result["throughput"].items():
        lines.append(
            f"| {name} | {_fmt(t['events_per_s'], ',.0f')} | {_fmt(t['events_per_s_per_process'], ',.0f')}"
            f" | {_fmt(t['cpu_us_per_event'], '.1f')} | {_fmt(t['peak_rss_mb'], '.0f')}"
            f" | {_fmt(t['startup_s'], '.1f')} |"
        )
    lines += ["", "| ratio | median (min–max) |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v, '.2f')} |" for k, v in result["ratios"].items()]
    if result["latency"]:
        rate = float(result["options"]["rate"])
        lines += [
            "",
            f"| event → output latency at {rate:,.0f}/s | p50 ms | p95 ms | p99 ms | max ms |",
            "|---|---|---|---|---|",
        ]
        for name, lat in result["latency"].items():
            cells = " | ".join(_fmt(lat[k], ".0f") for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))
            lines.append(f"| {name} | {cells} |")
    return "\n".join(lines) + "\n"
