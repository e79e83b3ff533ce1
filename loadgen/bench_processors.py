"""``rigwatch bench processors``: events/s, CPU and memory of every service, each as its own process.

One real stream is built once: ``events`` readings of the real cycles, ``rigs``
rigs round-robin, event times ``interval_ms`` apart from a window boundary (at
10 ms a 30 s drift window holds 3,000 readings); the prediction for every
reading, scored here once by :class:`~services.scorer.handler.Scorer` with the
bench's model (``scored_time`` = the batch's last event time + 20 ms); and the
Actual of every reading (``observed_time`` = event time + ``label_delay_ms``).
So drift, latency and accuracy get their real inputs without a scorer running.

Three fresh topic sets are loaded once and read by every repeat, each service
from the beginning with a fresh consumer group; no service's output lands on
another's input:

- the scorer's: the readings (its predictions topic is emptied after each run);
- the processors': readings, predictions and actuals for drift, latency and
  accuracy, whose MetricWindows go to this set's ``metrics`` topic;
- the alerts': MetricWindows. They are the real windows drift, latency and
  accuracy published in the first repeat, repeated with their window times
  shifted forward by the span they cover until there are ``alert_windows``.

Each service runs as ``python -m rigwatch SERVICE`` (:class:`~rigwatch.harness.Process`).
From outside, every ``poll_s`` the bench scrapes the service's own input counter
(``rigwatch_<kind>_events_in_total``; alerts: ``rigwatch_alerts_windows_in_total``)
on its metrics port and reads the child's, the broker's and Redis's CPU time
from ``/proc``. events/s and CPU µs/event come from those samples while the
service was busy, start-up and group join left out
(:func:`~loadgen.bench_processors_report.interval_figures`). An input event is a
consumed record: drift and accuracy read two per reading (reading + prediction,
prediction + actual). A windowed service then runs until its windows stop
coming. Ratios ``<service>/scorer`` are taken within each repeat. The live
phase (:mod:`loadgen.bench_live`) runs them all together in real time.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadgen.bench_processors_report import (
    Sample,
    alert_stream,
    counter_total,
    interval_figures,
    markdown,
    report,
)
from loadgen.readings import ReadingStream, stepping_clock
from rigwatch.config import Settings
from rigwatch.data import Dataset
from rigwatch.exceptions import DataError, ProcessError, RigwatchError
from rigwatch.harness import Process, cpu_seconds, free_port, stack_pids
from rigwatch.kafka import ReliableProducer, TopicReader, create_topics, delete_topics, read_topics
from rigwatch.model import ModelPackage
from rigwatch.schemas import Codecs
from services.scorer.handler import Scorer

__all__ = ["SERVICES", "ProcessorsBenchOptions", "Service", "Stream", "build_stream", "run_processors_bench"]

Records = list[tuple[str, bytes]]
#: Readings scored per Scorer call when the predictions are made (a small batch: close scored_times).
SCORE_BATCH = 200
SCORE_DELAY_MS = 20


@dataclass(frozen=True)
class Service:
    """A service as the bench runs it: CLI command, input counter, input topics."""

    name: str
    counter: str
    inputs: tuple[str, ...]
    #: Publishes MetricWindows (waited for after the input is counted).
    emits_windows: bool = False

    @property
    def env_prefix(self) -> str:
        return f"RIGWATCH_{self.name.upper()}_"


SERVICES: tuple[Service, ...] = (
    Service("scorer", "rigwatch_scorer_events_in_total", ("sensor_readings",)),
    Service("drift", "rigwatch_drift_events_in_total", ("sensor_readings", "predictions"), True),
    # The DLQ is its second input: empty here (no malformed readings).
    Service("latency", "rigwatch_health_events_in_total", ("predictions",), True),
    Service("accuracy", "rigwatch_accuracy_events_in_total", ("predictions", "actuals"), True),
    Service("alerts", "rigwatch_alerts_windows_in_total", ("metrics",)),
)


@dataclass(frozen=True)
class ProcessorsBenchOptions:
    """What ``rigwatch bench processors`` measures; see its ``--help``."""

    events: int = 100_000
    repeats: int = 3
    #: 8 rigs: their keys fall on all 4 partitions (4 rigs leave 2 empty, holding the watermark back).
    rigs: int = 8
    interval_ms: int = 10
    label_delay_ms: int = 5_000
    alert_windows: int = 10_000
    services: tuple[str, ...] = tuple(s.name for s in SERVICES)
    partitions: int = 4
    poll_s: float = 0.1
    #: Seconds without a new record counted (after the first) before a run is declared stuck.
    stall_s: float = 60.0
    #: Once the input is counted, windows are awaited until none came for drain_quiet_s (at most drain_max_s).
    drain_quiet_s: float = 3.0
    drain_max_s: float = 30.0
    #: Seconds of the live phase after warm-up (0: skip it); its rate in readings/s.
    live_s: float = 60.0
    live_rate: float = 200.0
    injections: int = 1
    out: Path = Path("results")


# ---------------------------------------------------------------- the stream


@dataclass
class Stream:
    """The records every run reads, by topic role."""

    records: dict[str, Records] = field(default_factory=dict)
    first_event_ms: int = 0

    def count(self, service: Service) -> int:
        return sum(len(self.records.get(role, ())) for role in service.inputs)


def build_stream(dataset: Dataset, model_dir: Path, options: ProcessorsBenchOptions) -> Stream:
    """Readings, their predictions (scored here) and their actuals; see the module docstring."""
    codecs = Codecs.load()
    now = int(time.time() * 1000)
    start = now - now % 30_000  # a boundary of the default windows (30 s drift and accuracy, 10 s health)
    source = ReadingStream(
        dataset, codecs.sensor_reading, run_id="benchproc", rigs=options.rigs, count=options.events, seed=7
    )
    readings: Records = []
    actuals: Records = []
    times: list[int] = []
    for event in source.events(stepping_clock(start, options.interval_ms)):
        reading = event.reading
        assert reading is not None and event.label is not None  # no malformed records, every one labelled
        readings.append((event.key, event.value))
        times.append(reading["event_time"])
        actual = {
            "event_id": reading["event_id"],
            "rig_id": reading["rig_id"],
            "label": event.label,
            "observed_time": reading["event_time"] + options.label_delay_ms,
        }
        actuals.append((event.key, codecs.actual.encode(actual)))
    scorer = Scorer(ModelPackage.load(model_dir), codecs.sensor_reading, codecs.prediction)
    predictions: Records = []
    for i in range(0, len(readings), SCORE_BATCH):
        batch = [value for _, value in readings[i : i + SCORE_BATCH]]
        scored = scorer.score(batch, times[i + len(batch) - 1] + SCORE_DELAY_MS)
        if scored.rejects:
            raise DataError(f"the scorer rejected real readings: {scored.rejects[0]}")
        predictions += scored.outputs
    return Stream({"sensor_readings": readings, "predictions": predictions, "actuals": actuals}, start)


# ---------------------------------------------------------------- running one service


class _Bench:
    """Topic sets, the services as children, Redis clean-up; one instance per bench run."""

    def __init__(
        self, settings: Settings, options: ProcessorsBenchOptions, say: Callable[[str], None]
    ) -> None:
        self.tag = f"benchproc{uuid.uuid4().hex[:8]}"
        self.run_dir = (options.out / "processors-run").resolve()
        self.settings = settings.model_copy(update={"run_dir": self.run_dir})
        self.options, self.say = options, say
        self.bootstrap = settings.bootstrap or ""
        self.logs = options.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pids = stack_pids(settings)
        self.sets: list[Settings] = []

    def topic_set(self, name: str) -> Settings:
        """Settings on a fresh topic set (deleted by :meth:`cleanup`)."""
        settings = self.settings.model_copy(update={"topic_prefix": f"{self.tag}{name}."})
        create_topics(self.bootstrap, settings.topics.all(), self.options.partitions)
        self.sets.append(settings)
        return settings

    def load(self, settings: Settings, records: Mapping[str, Records]) -> None:
        producer = ReliableProducer(self.bootstrap, {"linger.ms": 20, "batch.size": 1_000_000})
        for role, pairs in records.items():
            topic = getattr(settings.topics, role)
            for key, value in pairs:
                producer.produce(topic, value, key=key)
        producer.flush(300)

    def empty(self, settings: Settings, role: str) -> None:
        """Delete and re-create one topic of a set (a run's outputs must not pile up in the broker)."""
        topic = getattr(settings.topics, role)
        delete_topics(self.bootstrap, [topic])
        create_topics(self.bootstrap, [topic], self.options.partitions)

    def _sample(self, proc: Process, launched: float, count: float) -> Sample:
        def stack_cpu(name: str) -> float:
            pid = self.pids.get(name)
            return cpu_seconds(pid) if pid else math.nan

        return Sample(
            time.monotonic() - launched, count, proc.cpu_seconds(), stack_cpu("broker"), stack_cpu("redis")
        )

    def measure(self, service: Service, settings: Settings, expected: int) -> dict[str, float]:
        """Run *service* on *settings*' topics until it has counted *expected* input records."""
        group = f"{self.tag}-{service.name}-{uuid.uuid4().hex[:6]}"
        port = free_port()
        env = settings.to_env(
            **{f"{service.env_prefix}GROUP": group, f"{service.env_prefix}METRICS_PORT": str(port)}
        )
        launched, launched_ms = time.monotonic(), int(time.time() * 1000)
        proc = Process.start([service.name], env, self.logs / f"{group}.log")
        samples: list[Sample] = []
        drained: dict[str, float] = {}
        try:
            while True:
                proc.check_running()
                count = _scrape(port, service.counter)
                samples.append(self._sample(proc, launched, count))
                if count >= expected:
                    break
                self._check_progress(service, samples, expected, proc)
                time.sleep(self.options.poll_s)
            if service.emits_windows:
                drained = self._drain(settings, launched_ms, proc)
            rss, total_cpu = proc.peak_rss_mb(), proc.cpu_seconds()
        finally:
            outcome = proc.stop()
        if not outcome.clean:
            self.say(f"    warning: {outcome.describe()}; see {proc.log}")
        figures = interval_figures(samples)
        figures |= drained | {
            "expected": float(expected),
            "peak_rss_mb": rss,
            "total_cpu_s": total_cpu,
            "exit_clean": float(outcome.clean),
        }
        return figures

    def _drain(self, settings: Settings, since_ms: int, proc: Process) -> dict[str, float]:
        """With all input counted: wait until the service's MetricWindows stop coming.

        The reader starts only now: polling during the measured interval would add broker load.
        """
        done = time.monotonic()
        windows, last = 0, done
        with TopicReader(self.bootstrap, [settings.topics.metrics], since_ms=since_ms) as reader:
            while time.monotonic() - done < self.options.drain_max_s:
                if windows and time.monotonic() - last > self.options.drain_quiet_s:
                    break
                proc.check_running()
                got = len(reader.poll(0.1, max_messages=10_000))
                if got:
                    windows, last = windows + got, time.monotonic()
        return {"windows": float(windows), "drain_s": last - done if windows else math.nan}

    def _check_progress(
        self, service: Service, samples: Sequence[Sample], expected: int, proc: Process
    ) -> None:
        now, count = samples[-1].t, samples[-1].count
        if count == 0:
            if now > max(120.0, self.options.stall_s):
                raise ProcessError(f"{service.name} counted no input in {now:.0f} s; see {proc.log}")
            return
        since = next(s.t for s in samples if s.count >= count)
        if now - since > self.options.stall_s:
            raise ProcessError(
                f"{service.name} stuck at {count:,.0f} of {expected:,} input records for "
                f"{now - since:.0f} s; see {proc.log}"
            )

    def windows(self, settings: Settings) -> list[dict[str, Any]]:
        """Every MetricWindow on the set's metrics topic (read until 3 s pass without one)."""
        codec = Codecs.load().metric_window
        messages = read_topics(self.bootstrap, [settings.topics.metrics], idle_timeout=3.0)
        return [codec.decode(m.value()) for m in messages]

    def cleanup(self) -> None:
        """Delete this run's topics and Redis keys (all hold the run's tag), and its run folder."""
        from redis import Redis

        for settings in self.sets:
            delete_topics(self.bootstrap, settings.topics.all())
        if self.settings.redis_url:
            client = Redis.from_url(self.settings.redis_url)
            try:
                keys = list(client.scan_iter(match=f"*{self.tag}*", count=1000))
                for i in range(0, len(keys), 500):
                    client.delete(*keys[i : i + 500])
            finally:
                client.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def _scrape(port: int, counter: str) -> float:
    """The counter's total at the child's metrics endpoint; 0 before the endpoint is up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return counter_total(response.read().decode(), counter)
    except OSError:
        return 0.0


# ---------------------------------------------------------------- the run


@contextmanager
def _bench(
    settings: Settings, options: ProcessorsBenchOptions, say: Callable[[str], None]
) -> Iterator[_Bench]:
    bench = _Bench(settings, options, say)
    try:
        yield bench
    finally:
        bench.cleanup()


def run_processors_bench(
    settings: Settings,
    dataset: Dataset,
    model_dir: Path,
    options: ProcessorsBenchOptions,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every service *options.repeats* times, then the live phase; JSON and markdown in *options.out*.

    *settings* must be bound to a broker and Redis and name *model_dir* as the model. A
    service that fails is reported under ``errors``; the others are still measured.
    """
    options.out.mkdir(parents=True, exist_ok=True)
    began, load_before = time.monotonic(), os.getloadavg()[0]
    version = ModelPackage.load(model_dir).version
    say(
        f"building the stream: {options.events:,} readings of {dataset.source}, their predictions and actuals"
    )
    stream = build_stream(dataset, model_dir, options)
    errors: list[str] = []
    live: dict[str, Any] = {}
    with _bench(settings, options, say) as bench:
        runs = _throughput(bench, stream, options, errors)
        if options.live_s > 0:
            from loadgen.bench_alerts import AlertsBenchOptions
            from loadgen.bench_live import run_live

            live_options = AlertsBenchOptions(
                injections=options.injections,
                rate=options.live_rate,
                rigs=options.rigs,
                partitions=options.partitions,
                out=options.out,
            )
            say(f"live: all services, {options.live_rate:,.0f} readings/s, {options.live_s:.0f} s once warm")
            try:
                live = run_live(settings, dataset, version, live_options, options.live_s, say)
            except RigwatchError as exc:
                errors.append(f"live phase: {exc}")
                say(f"    live phase failed: {exc}")
    throughput, ratio_stats, backend = report(runs)
    result: dict[str, Any] = {
        # Other processes on the machine share its CPUs: the 1-minute load before and after says how much.
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_avg_1m": [load_before, os.getloadavg()[0]],
        },
        "options": {k: str(v) for k, v in options.__dict__.items()},
        "data": dataset.source,
        "model_version": version,
        "stream": {role: len(records) for role, records in stream.records.items()}
        | {"first_event_ms": stream.first_event_ms},
        "throughput": throughput,
        "ratios": ratio_stats,
        "broker_cpu": {
            n: {k: v for k, v in f.items() if k.startswith("broker_")} for n, f in backend.items()
        },
        "redis_cpu": {n: {k: v for k, v in f.items() if k.startswith("redis_")} for n, f in backend.items()},
        "live": live,
        "errors": errors,
        "runtime_s": time.monotonic() - began,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (options.out / f"bench-processors-{stamp}.json").write_text(json.dumps(result, indent=2, default=str))
    table = markdown(result)
    (options.out / f"bench-processors-{stamp}.md").write_text(table)
    say(table)
    return result


def _throughput(
    bench: _Bench, stream: Stream, options: ProcessorsBenchOptions, errors: list[str]
) -> list[dict[str, dict[str, float]]]:
    """Per repeat, service -> figures. Alerts' input is built after the processors' first runs."""
    say = bench.say
    say(f"loading the topic sets {bench.tag}*: readings, predictions, actuals ...")
    sets = {"scorer": bench.topic_set("s"), "processors": bench.topic_set("p")}
    bench.load(sets["scorer"], {"sensor_readings": stream.records["sensor_readings"]})
    bench.load(sets["processors"], stream.records)
    chosen = [s for s in SERVICES if s.name in options.services]  # alerts after the processors
    runs: list[dict[str, dict[str, float]]] = []
    for repeat in range(1, options.repeats + 1):
        run: dict[str, dict[str, float]] = {}
        for service in chosen:
            tag = f"[{repeat}/{options.repeats}] {service.name}"
            try:
                if service.name == "alerts" and "alerts" not in sets:
                    sets["alerts"] = _alerts_set(bench, sets["processors"], stream, options)
                target = sets.get(service.name, sets["processors"])
                expected = stream.count(service)
                say(f"{tag}: {expected:,} input records ...")
                try:
                    run[service.name] = f = bench.measure(service, target, expected)
                finally:
                    if service.name == "scorer":
                        bench.empty(target, "predictions")
            except RigwatchError as exc:
                errors.append(f"{tag}: {exc}")
                say(f"    failed: {exc}")
                continue
            say(
                f"    {f['events_per_s']:,.0f} events/s, {f['cpu_us_per_event']:.1f} CPU µs/event, "
                f"peak RSS {f['peak_rss_mb']:.0f} MB, broker CPU {f['broker_cpu_pct']:.0f} %"
            )
        runs.append(run)
    return runs


def _alerts_set(
    bench: _Bench, processors: Settings, stream: Stream, options: ProcessorsBenchOptions
) -> Settings:
    """A topic set holding the alerts' input, built from the windows the processors published."""
    windows = bench.windows(processors)
    bench.say(
        f"    alerts' input: {len(windows)} real MetricWindows repeated to {options.alert_windows:,} ..."
    )
    codec = Codecs.load().metric_window
    records = [
        (f"{w['kind']}/{w['subject']}", codec.encode(w)) for w in alert_stream(windows, options.alert_windows)
    ]
    stream.records["metrics"] = records
    target = bench.topic_set("a")
    bench.load(target, {"metrics": records})
    return target
