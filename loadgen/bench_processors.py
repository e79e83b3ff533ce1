"""``rigwatch bench processors``: events/s, CPU and memory of every service, each as its own process.

One real stream is built once: ``events`` readings of the real cycles, ``rigs``
rigs round-robin, event times ``interval_ms`` apart from a window boundary (at
10 ms a 30 s drift window holds 3,000 readings); the prediction for every
reading, scored here once by :class:`~services.scorer.handler.Scorer` with the
bench's model (``scored_time`` = the batch's last event time + 20 ms); and the
Actual of every reading (``observed_time`` = event time + ``label_delay_ms``).
So drift, latency and accuracy get their real inputs without a scorer running.
With ``scorer+shadow`` or ``comparison`` chosen, a challenger is trained on the
same data with another seed (``challenger_seed``), and for ``comparison`` every
reading is scored by it too (role ``challenger``, the same ``scored_time``): the
shadow predictions of the same events.

Fresh topic sets are loaded once (those the chosen services read) and read by
every repeat, each service from the beginning with a fresh consumer group; no
service's output lands on another's input:

- the scorer's: the readings, and deployment ``cooler`` with the bench's model
  as champion in a model store of the bench's own (the scorer follows it). Its
  predictions topics are emptied after each run;
- the processors': readings, predictions and actuals for drift, latency and
  accuracy, whose MetricWindows go to this set's ``metrics`` topic;
- the comparison's: predictions, the challenger's shadow predictions and
  actuals, for the accuracy processor's champion/challenger join;
- the alerts': MetricWindows. They are the real windows drift, latency and
  accuracy published in the first repeat, repeated with their window times
  shifted forward by the span they cover until there are ``alert_windows``.

``scorer+shadow`` runs a champion scorer and a shadow scorer (``scorer --shadow``,
group ``<group>-shadow``) at once over the scorer's readings, with the challenger
set on the deployment as its shadow challenger for the run (ended after it, so a
``scorer`` run alone serves the champion only, as it always did). A new shadow group
starts at the end of the readings (``auto.offset.reset=latest``,
:func:`~services.scorer.app.scorer_roles`), so the bench commits offset 0 of every
readings partition for that group before it starts: the shadow scorer runs with the
configuration it has in production and reads every reading.

Each service runs as ``python -m rigwatch SERVICE`` (:class:`~rigwatch.harness.Process`).
From outside, every ``poll_s`` the bench scrapes the service's own input counter
(``rigwatch_<kind>_events_in_total``; alerts: ``rigwatch_alerts_windows_in_total``)
on its metrics port and reads the child's, the broker's and Redis's CPU time
from ``/proc``. events/s and CPU µs/event come from those samples while the
service was busy, start-up and group join left out
(:func:`~loadgen.bench_processors_report.interval_figures`). An input event is a
consumed record: drift and accuracy read two per reading (reading + prediction,
prediction + actual), comparison three (prediction, shadow prediction, actual).
``scorer+shadow``'s figures are the champion scorer's, beside them ``shadow_*``
(the shadow scorer's) and ``combined_*`` (both processes' counts and CPU added
up, :func:`~loadgen.bench_processors_report.combined`). A windowed service then
runs until its windows stop coming; comparison's ``comparison_windows`` counts its
``kind=comparison`` MetricWindows. Ratios ``<service>/scorer`` are taken within each
repeat (``scorer+shadow/scorer``: the champion's events/s with the shadow running
over the scorer's alone). The live phase (:mod:`loadgen.bench_live`) runs them all
together in real time.
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

from confluent_kafka import Consumer, KafkaException, TopicPartition

from loadgen.bench_processors_report import (
    Sample,
    alert_stream,
    busy_overlap,
    combined,
    counter_total,
    interval_figures,
    markdown,
    report,
)
from loadgen.readings import ReadingStream, stepping_clock
from rigwatch.config import Settings
from rigwatch.data import Dataset
from rigwatch.exceptions import DataError, ProcessError, RigwatchError, StackError
from rigwatch.harness import Process, cpu_seconds, free_port, stack_pids
from rigwatch.kafka import (
    ReliableProducer,
    TopicReader,
    client_config,
    create_rig_topics,
    create_topics,
    delete_topics,
    read_topics,
)
from rigwatch.lifecycle.deployments import SHADOW
from rigwatch.lifecycle.operations import (
    DEFAULT_DEPLOYMENT,
    create_deployment,
    end_challenge,
    registered_version,
    start_challenge,
)
from rigwatch.model import ModelPackage, train
from rigwatch.schemas import Codecs
from services.scorer.handler import Scorer

__all__ = ["SERVICES", "ProcessorsBenchOptions", "Service", "Stream", "build_stream", "run_processors_bench"]

Records = list[tuple[str, bytes]]
#: Readings scored per Scorer call when the predictions are made (a small batch: close scored_times).
SCORE_BATCH = 200
SCORE_DELAY_MS = 20
#: Who the bench's deployment changes are audited as.
ACTOR = "rigwatch-bench-processors"


@dataclass(frozen=True)
class Service:
    """A service as the bench runs it: CLI command, input counter, input topics, topic set."""

    name: str
    counter: str
    inputs: tuple[str, ...]
    #: Publishes MetricWindows (waited for after the input is counted).
    emits_windows: bool = False
    #: The ``rigwatch`` command it runs; empty: its name.
    command: str = ""
    #: The topic set it reads: ``scorer``, ``processors``, ``comparison`` or ``alerts``.
    topic_set: str = "processors"
    #: Topics of its set emptied after each run (its outputs must not pile up in the broker).
    outputs: tuple[str, ...] = ()
    #: A shadow scorer (``scorer --shadow``, its own group) runs beside it over the same input.
    shadow: bool = False
    #: A MetricWindow kind also counted apart in its output, as ``<kind>_windows``.
    counts_kind: str = ""

    @property
    def args(self) -> tuple[str, ...]:
        return (self.command or self.name,)

    @property
    def env_prefix(self) -> str:
        return f"RIGWATCH_{(self.command or self.name).upper()}_"


SERVICES: tuple[Service, ...] = (
    Service(
        "scorer",
        "rigwatch_scorer_events_in_total",
        ("sensor_readings",),
        topic_set="scorer",
        outputs=("predictions",),
    ),
    Service(
        "scorer+shadow",
        "rigwatch_scorer_events_in_total",
        ("sensor_readings",),
        command="scorer",
        topic_set="scorer",
        outputs=("predictions", "predictions_shadow"),
        shadow=True,
    ),
    Service("drift", "rigwatch_drift_events_in_total", ("sensor_readings", "predictions"), True),
    # The DLQ is its second input: empty here (no malformed readings).
    Service("latency", "rigwatch_health_events_in_total", ("predictions",), True),
    Service("accuracy", "rigwatch_accuracy_events_in_total", ("predictions", "actuals"), True),
    Service(
        "comparison",
        "rigwatch_accuracy_events_in_total",
        ("predictions", "predictions_shadow", "actuals"),
        True,
        command="accuracy",
        topic_set="comparison",
        counts_kind="comparison",
    ),
    Service("alerts", "rigwatch_alerts_windows_in_total", ("metrics",), topic_set="alerts"),
)
#: What ``--services`` runs unless told: the services measured before champion/challenger.
DEFAULT_SERVICES = ("scorer", "drift", "latency", "accuracy", "alerts")
#: Services that need the challenger model: a shadow scorer serves it, or they read its predictions.
CHALLENGER_SERVICES = tuple(s.name for s in SERVICES if s.shadow or "predictions_shadow" in s.inputs)


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
    services: tuple[str, ...] = DEFAULT_SERVICES
    #: Seed of the challenger (scorer+shadow, comparison); the champion is the bench's seed-42 model.
    challenger_seed: int = 7
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


def build_stream(
    dataset: Dataset, model_dir: Path, options: ProcessorsBenchOptions, challenger_dir: Path | None = None
) -> Stream:
    """Readings, their predictions (scored here) and their actuals; see the module docstring.

    With *challenger_dir*, also ``predictions_shadow``: the challenger's predictions of
    the same readings (role ``challenger``), scored in the same batches at the same time.
    """
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
    scorers = {"predictions": Scorer(ModelPackage.load(model_dir), codecs.sensor_reading, codecs.prediction)}
    if challenger_dir is not None:
        challenger = ModelPackage.load(challenger_dir)
        scorers["predictions_shadow"] = Scorer(
            challenger, codecs.sensor_reading, codecs.prediction, role="challenger"
        )
    scored_records: dict[str, Records] = {role: [] for role in scorers}
    for i in range(0, len(readings), SCORE_BATCH):
        batch = [value for _, value in readings[i : i + SCORE_BATCH]]
        now_ms = times[i + len(batch) - 1] + SCORE_DELAY_MS
        for role, scorer in scorers.items():
            scored = scorer.score(batch, now_ms)
            if scored.rejects:
                raise DataError(f"the {scorer.role} rejected real readings: {scored.rejects[0]}")
            scored_records[role] += scored.outputs
    records = {"sensor_readings": readings, "predictions": scored_records["predictions"], "actuals": actuals}
    if "predictions_shadow" in scored_records:
        records["predictions_shadow"] = scored_records["predictions_shadow"]
    return Stream(records, start)


# ---------------------------------------------------------------- running one service


class _Bench:
    """Topic sets, the services as children, Redis clean-up; one instance per bench run."""

    def __init__(
        self, settings: Settings, options: ProcessorsBenchOptions, say: Callable[[str], None]
    ) -> None:
        self.tag = f"benchproc{uuid.uuid4().hex[:8]}"
        self.run_dir = (options.out / "processors-run").resolve()
        # A model store of the bench's own (deleted with the run folder), not the operator's.
        self.settings = settings.model_copy(
            update={"run_dir": self.run_dir, "model_store": self.run_dir / "store"}
        )
        self.options, self.say = options, say
        self.bootstrap = settings.bootstrap or ""
        self.logs = options.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pids = stack_pids(settings)
        self.sets: list[Settings] = []

    def topic_set(self, name: str) -> Settings:
        """Settings on a fresh topic set (deleted by :meth:`cleanup`), control topics included."""
        settings = self.settings.model_copy(update={"topic_prefix": f"{self.tag}{name}."})
        create_rig_topics(self.bootstrap, settings.topics, self.options.partitions)
        self.sets.append(settings)
        return settings

    def deployment(self, settings: Settings, model_dir: Path) -> None:
        """Deployment ``cooler`` on *settings*' topics, the package at *model_dir* its champion.

        Made here, not by the scorer that finds none: two scorers starting at once would both create it.
        """
        version = registered_version(settings, model_dir, actor=ACTOR)
        create_deployment(settings, DEFAULT_DEPLOYMENT, version, actor=ACTOR, comment="bench processors")

    @contextmanager
    def challenge(self, settings: Settings, version: str | None) -> Iterator[None]:
        """*version* as the deployment's shadow challenger while in the block (nothing when None)."""
        if version is None:
            yield
            return
        start_challenge(settings, DEFAULT_DEPLOYMENT, version, mode=SHADOW, actor=ACTOR, comment="bench")
        try:
            yield
        finally:
            end_challenge(settings, DEFAULT_DEPLOYMENT, actor=ACTOR, comment="bench")

    def commit_beginning(self, group: str, topic: str) -> None:
        """Commit offset 0 of every partition of *topic* for *group*, which has no member yet.

        The group's first member then starts there, whatever its ``auto.offset.reset`` says.
        """
        consumer = Consumer(client_config(self.bootstrap) | {"group.id": group, "enable.auto.commit": False})
        try:
            metadata = consumer.list_topics(topic, timeout=10).topics[topic]
            offsets = [TopicPartition(topic, p, 0) for p in metadata.partitions]
            failed = [tp for tp in consumer.commit(offsets=offsets, asynchronous=False) or () if tp.error]
        except KafkaException as exc:
            raise StackError(f"could not commit offset 0 of {topic} for group {group}: {exc}") from exc
        finally:
            consumer.close()
        if failed:
            raise StackError(f"could not commit offset 0 of {topic} for group {group}: {failed[0].error}")

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

    def _samples(self, procs: Sequence[Process], launched: float, counts: Sequence[float]) -> list[Sample]:
        """One sample per process, taken together (one look at the broker's and Redis's CPU)."""

        def stack_cpu(name: str) -> float:
            pid = self.pids.get(name)
            return cpu_seconds(pid) if pid else math.nan

        t, broker, redis = time.monotonic() - launched, stack_cpu("broker"), stack_cpu("redis")
        return [Sample(t, c, p.cpu_seconds(), broker, redis) for p, c in zip(procs, counts, strict=True)]

    def measure(self, service: Service, settings: Settings, expected: int) -> dict[str, float]:
        """Run *service* on *settings*' topics until it has counted *expected* input records.

        With a shadow scorer (``service.shadow``) both processes run at once, each until it has
        counted *expected*; the shadow's figures are ``shadow_*``, both added up ``combined_*``.
        """
        group = f"{self.tag}-{service.name.replace('+', '-')}-{uuid.uuid4().hex[:6]}"
        # Per process: its arguments, its consumer group (also its log's name), its figures' prefix, a label.
        runs = [(service.args, group, "", service.name)]
        if service.shadow:
            # A shadow scorer's group is <group>-shadow, and a new one starts at the end of the readings.
            shadow = f"{group}-shadow"
            self.commit_beginning(shadow, settings.topics.sensor_readings)
            runs.append(((*service.args, "--shadow"), shadow, "shadow_", f"{service.name} (shadow)"))
        ports = [free_port() for _ in runs]
        launched, launched_ms = time.monotonic(), int(time.time() * 1000)
        procs: list[Process] = []
        series: list[list[Sample]] = [[] for _ in runs]
        drained: dict[str, float] = {}
        try:
            for (args, name, _, _), port in zip(runs, ports, strict=True):
                env = settings.to_env(
                    **{f"{service.env_prefix}GROUP": group, f"{service.env_prefix}METRICS_PORT": str(port)}
                )
                procs.append(Process.start(list(args), env, self.logs / f"{name}.log"))
            while True:
                for proc in procs:
                    proc.check_running()
                counts = [_scrape(port, service.counter) for port in ports]
                for samples, sample in zip(series, self._samples(procs, launched, counts), strict=True):
                    samples.append(sample)
                if min(counts) >= expected:
                    break
                for (*_, label), samples, proc in zip(runs, series, procs, strict=True):
                    if samples[-1].count < expected:
                        self._check_progress(label, samples, expected, proc)
                time.sleep(self.options.poll_s)
            if service.emits_windows:
                drained = self._drain(settings, launched_ms, procs[0], service.counts_kind)
            ends = [(p.peak_rss_mb(), p.cpu_seconds()) for p in procs]
        finally:
            outcomes = [p.stop() for p in procs]
        for proc, outcome in zip(procs, outcomes, strict=True):
            if not outcome.clean:
                self.say(f"    warning: {outcome.describe()}; see {proc.log}")
        figures: dict[str, float] = dict(drained)
        for (_, _, prefix, _), samples, (rss, total_cpu), outcome in zip(
            runs, series, ends, outcomes, strict=True
        ):
            own = interval_figures(samples) | {
                "expected": float(expected),
                "peak_rss_mb": rss,
                "total_cpu_s": total_cpu,
                "exit_clean": float(outcome.clean),
            }
            figures |= {prefix + k: v for k, v in own.items()}
        if len(series) > 1:
            figures |= {f"combined_{k}": v for k, v in interval_figures(combined(series)).items()}
            figures["shadow_overlap"] = busy_overlap(figures, "shadow_")
            # The run's exit_clean: every process of it.
            figures["exit_clean"] = float(all(o.clean for o in outcomes))
        return figures

    def _drain(self, settings: Settings, since_ms: int, proc: Process, kind: str = "") -> dict[str, float]:
        """With all input counted: wait until the service's MetricWindows stop coming.

        The reader starts only now: polling during the measured interval would add broker load.
        With *kind*, the windows of that kind are also counted (``<kind>_windows``).
        """
        codec = Codecs.load().metric_window
        done = time.monotonic()
        windows, of_kind, last = 0, 0, done
        with TopicReader(self.bootstrap, [settings.topics.metrics], since_ms=since_ms) as reader:
            while time.monotonic() - done < self.options.drain_max_s:
                if windows and time.monotonic() - last > self.options.drain_quiet_s:
                    break
                proc.check_running()
                got = reader.poll(0.1, max_messages=10_000)
                if got:
                    windows, last = windows + len(got), time.monotonic()
                    if kind:
                        of_kind += sum(1 for m in got if codec.decode(m.value())["kind"] == kind)
        figures = {"windows": float(windows), "drain_s": last - done if windows else math.nan}
        return figures | ({f"{kind}_windows": float(of_kind)} if kind else {})

    def _check_progress(self, name: str, samples: Sequence[Sample], expected: int, proc: Process) -> None:
        now, count = samples[-1].t, samples[-1].count
        if count == 0:
            if now > max(120.0, self.options.stall_s):
                raise ProcessError(f"{name} counted no input in {now:.0f} s; see {proc.log}")
            return
        since = next(s.t for s in samples if s.count >= count)
        if now - since > self.options.stall_s:
            raise ProcessError(
                f"{name} stuck at {count:,.0f} of {expected:,} input records for "
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
    challenger_dir = None
    if set(CHALLENGER_SERVICES) & set(options.services):
        challenger_dir = _challenger(dataset, version, options, say)
    reads_shadow = any("predictions_shadow" in s.inputs for s in SERVICES if s.name in options.services)
    shadow = challenger_dir if reads_shadow else None
    say(
        f"building the stream: {options.events:,} readings of {dataset.source}, their predictions"
        + (" (champion and challenger)" if shadow else "")
        + " and actuals"
    )
    stream = build_stream(dataset, model_dir, options, shadow)
    errors: list[str] = []
    live: dict[str, Any] = {}
    with _bench(settings, options, say) as bench:
        runs = _throughput(bench, stream, options, errors, (model_dir, challenger_dir))
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
        "challenger_version": ModelPackage.load(challenger_dir).version if challenger_dir else None,
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


def _challenger(
    dataset: Dataset, champion: str, options: ProcessorsBenchOptions, say: Callable[[str], None]
) -> Path:
    """The challenger: the same data, seed ``options.challenger_seed``; a version of its own."""
    challenger_dir = train(dataset, seed=options.challenger_seed, num_threads=1).write(
        options.out / "model-challenger"
    )
    version = ModelPackage.load(challenger_dir).version
    if version == champion:
        raise RigwatchError(
            f"seed {options.challenger_seed} gave the champion's version {version}: pick another"
        )
    say(f"challenger: {challenger_dir} (seed {options.challenger_seed}), version {version}")
    return challenger_dir


def _set_roles(name: str) -> list[str]:
    """The stream's topics a topic set is loaded with: every input of the services reading it."""
    return list(dict.fromkeys(role for s in SERVICES if s.topic_set == name for role in s.inputs))


def _throughput(
    bench: _Bench,
    stream: Stream,
    options: ProcessorsBenchOptions,
    errors: list[str],
    models: tuple[Path, Path | None],
) -> list[dict[str, dict[str, float]]]:
    """Per repeat, service -> figures. Alerts' input is built after the processors' first runs.

    *models*: the champion's package and the challenger's (None when no service chosen needs it).
    """
    say = bench.say
    chosen = [s for s in SERVICES if s.name in options.services]  # alerts after the processors
    # The alerts' input comes from the windows published on the processors' set.
    wanted = {"processors" if s.topic_set == "alerts" else s.topic_set for s in chosen}
    sets: dict[str, Settings] = {}
    challenger: str | None = None
    for name in ("scorer", "processors", "comparison"):
        if name not in wanted:
            continue
        roles = _set_roles(name)
        say(f"loading the topic set {bench.tag}{name[0]}: {', '.join(roles)} ...")
        sets[name] = bench.topic_set(name[0])
        bench.load(sets[name], {role: stream.records[role] for role in roles})
    if "scorer" in sets:
        champion_dir, challenger_dir = models
        bench.deployment(sets["scorer"], champion_dir)
        if challenger_dir is not None and any(s.shadow for s in chosen):
            challenger = registered_version(sets["scorer"], challenger_dir, actor=ACTOR)
    runs: list[dict[str, dict[str, float]]] = []
    for repeat in range(1, options.repeats + 1):
        run: dict[str, dict[str, float]] = {}
        for service in chosen:
            tag = f"[{repeat}/{options.repeats}] {service.name}"
            try:
                if service.topic_set == "alerts" and "alerts" not in sets:
                    sets["alerts"] = _alerts_set(bench, sets["processors"], stream, options)
                target = sets[service.topic_set]
                expected = stream.count(service)
                say(f"{tag}: {expected:,} input records ...")
                try:
                    with bench.challenge(target, challenger if service.shadow else None):
                        run[service.name] = f = bench.measure(service, target, expected)
                finally:
                    for role in service.outputs:
                        bench.empty(target, role)
            except RigwatchError as exc:
                errors.append(f"{tag}: {exc}")
                say(f"    failed: {exc}")
                continue
            say(
                f"    {f['events_per_s']:,.0f} events/s, {f['cpu_us_per_event']:.1f} CPU µs/event, "
                f"peak RSS {f['peak_rss_mb']:.0f} MB, broker CPU {f['broker_cpu_pct']:.0f} %"
            )
            if service.shadow:
                say(
                    f"    shadow scorer {f['shadow_events_per_s']:,.0f} events/s, both "
                    f"{f['combined_cpu_pct']:.0f} % CPU ({f['combined_cpu_us_per_event']:.1f} µs per record "
                    f"consumed), busy together {f['shadow_overlap']:.0%} of the champion's interval"
                )
            if service.counts_kind:
                n = f[f"{service.counts_kind}_windows"]
                say(f"    {n:,.0f} {service.counts_kind} windows of {f['windows']:,.0f}")
                if not n:
                    say(f"    warning: no {service.counts_kind} window came in {options.drain_max_s:g} s")
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
