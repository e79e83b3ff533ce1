"""``rigwatch bench alerts``: alert freshness, from the first drifted event to its alert on ``rig.alerts``.

Real time, not simulated. One thread here publishes real readings at a steady
rate (``rigs`` rigs round-robin), each stamped with the wall clock as it is
sent; ``rigwatch scorer``, ``rigwatch drift`` and ``rigwatch alerts`` run as
child processes on fresh topics and groups, with short drift windows.

Once the processors are warm (``warm_windows`` model-version drift windows
emitted and evaluated by the alerts service), each injection adds ``delta`` to
``sensor`` in every reading for ``drift_windows`` windows of event time, then
sends clean readings until the alert has resolved, and the next one starts.
An injection starts ``U * window`` into the next window (U uniform in [0, 1)
from ``seed``), so the first drifted event lands at a random point of its
window: one late in a window leaves too few drifted readings there to breach,
and the alert waits for the next window. The report says where each one landed
and which window fired.

Per injection, in epoch milliseconds of this host's clock:

freshness
    wall time the firing Alert of ``feature_drift/<model version>/<sensor>`` is
    first read from ``rig.alerts`` by a consumer in this process, minus the
    event time of the first drifted reading.
resolve delay
    the resolved Alert read, minus the event time of the last drifted reading.

The shipped rules are used with one change: ``feature_drift``'s 120 s cooldown
(no re-fire for 120 s of window time after a resolve) is set to 0, so the
injections need not wait minutes apart; the cooldown suppresses, it does not
delay a first alert. Results go to ``<out>/alerts-<timestamp>.json`` and ``.md``.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loadgen.readings import ReadingStream
from rigwatch.config import Settings
from rigwatch.data import Dataset
from rigwatch.exceptions import ConfigError, RigwatchError
from rigwatch.harness import Process
from rigwatch.model import ModelPackage
from rigwatch.schemas import Codecs
from services.alerts.rules import DEFAULT_RULES, Rule, load_rules

__all__ = [
    "PUBLISHED",
    "AlertsBenchOptions",
    "Feed",
    "Injection",
    "Pipeline",
    "freshness_summary",
    "markdown",
    "percentiles",
    "rules_without_cooldown",
    "run_alerts_bench",
]

RULE = "feature_drift"
#: Vendors' published drift aggregation / evaluation intervals (name, text, lower bound s, source).
#: Not measured here.
PUBLISHED: tuple[tuple[str, str, float, str], ...] = (
    (
        "H2O MLOps",
        "aggregates after 3–5 min",
        180.0,
        "docs.h2o.ai: monitoring views update ~5 min after a new score",
    ),
    (
        "MLRun",
        "≥ 10 min",
        600.0,
        "docs.mlrun.org: the monitoring controller runs every 10 min by default, also the minimum",
    ),
    (
        "DataRobot",
        "≥ 1 h",
        3600.0,
        "docs.datarobot.com: drift statistics in hourly bins; drift notifications at most daily",
    ),
)
#: Pipeline time the target allows beyond one window.
TARGET_SLACK_MS = 2000


@dataclass(frozen=True)
class AlertsBenchOptions:
    """What ``rigwatch bench alerts`` measures; see its ``--help``."""

    injections: int = 5
    window_ms: int = 5_000
    lateness_ms: int = 500
    idle_ms: int = 2_000
    close_interval_ms: int = 200
    rate: float = 200.0
    rigs: int = 2
    sensor: str = "tsb_temp"
    delta: float = 2.0
    #: Windows of event time each injection lasts.
    drift_windows: int = 3
    #: Model-version drift windows emitted and evaluated before the first injection.
    warm_windows: int = 3
    partitions: int = 4
    seed: int = 0
    out: Path = Path("results")


@dataclass
class Injection:
    """One injection: when it was due, and when its readings and alerts were seen (epoch ms)."""

    index: int
    #: Readings with event time in [start_ms, until_ms) are drifted.
    start_ms: int
    until_ms: int
    first_event_ms: int | None = None
    last_event_ms: int | None = None
    fired_read_ms: int | None = None
    #: Kafka timestamps (set by the producing service) of the firing alert and of the window it came from.
    fired_published_ms: int | None = None
    window_published_ms: int | None = None
    fired_window_end: int | None = None
    severity: str | None = None
    value: float | None = None
    resolved_read_ms: int | None = None
    resolved_published_ms: int | None = None
    resolved_window_published_ms: int | None = None
    resolved_window_end: int | None = None

    def figures(self, window_ms: int, lateness_ms: int) -> dict[str, float]:
        """Seconds per measure (``NaN`` where something was not seen).

        Examples
        --------
        >>> i = Injection(0, 0, 15_000, first_event_ms=11_000, fired_read_ms=16_400,
        ...               fired_window_end=15_000)
        >>> f = i.figures(5_000, 500)
        >>> f["freshness_s"], f["offset_in_window_s"], f["windows_waited"], f["pipeline_s"]
        (5.4, 1.0, 0.0, 0.9)
        """
        nan = math.nan

        def s(later: int | None, earlier: int | None) -> float:
            return nan if later is None or earlier is None else (later - earlier) / 1000

        first, end = self.first_event_ms, self.fired_window_end
        closes = None if end is None else end + lateness_ms
        own_end = None if first is None else first - first % window_ms + window_ms
        return {
            "freshness_s": s(self.fired_read_ms, first),
            "offset_in_window_s": nan if first is None else (first % window_ms) / 1000,
            # 0: the window holding the first drifted event fired; 1: the next one did.
            "windows_waited": nan if end is None or own_end is None else (end - own_end) / window_ms,
            "window_wait_s": s(closes, first),
            "pipeline_s": s(self.fired_read_ms, closes),
            "drift_emit_s": s(self.window_published_ms, closes),
            "alert_publish_s": s(self.fired_published_ms, self.window_published_ms),
            "read_s": s(self.fired_read_ms, self.fired_published_ms),
            "resolve_delay_s": s(self.resolved_read_ms, self.last_event_ms),
            "resolve_pipeline_s": s(
                self.resolved_read_ms,
                None if self.resolved_window_end is None else self.resolved_window_end + lateness_ms,
            ),
            "resolve_drift_emit_s": s(
                self.resolved_window_published_ms,
                None if self.resolved_window_end is None else self.resolved_window_end + lateness_ms,
            ),
            "drift_s": s(self.last_event_ms, first),
        }


# ---------------------------------------------------------------- statistics and report (pure)


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p99 (numpy's linear interpolation), min and max of the finite *values*, and their count.

    With a handful of values p99 lies just under the max: it is reported anyway, beside the max.

    Examples
    --------
    >>> percentiles([1.0, 2.0, 3.0, float("nan")])
    {'n': 3.0, 'p50': 2.0, 'p99': 2.98, 'min': 1.0, 'max': 3.0}
    """
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return {"n": 0.0, "p50": math.nan, "p99": math.nan, "min": math.nan, "max": math.nan}
    p50, p99 = np.percentile(x, [50, 99])
    return {
        "n": float(x.size),
        "p50": round(float(p50), 6),
        "p99": round(float(p99), 6),
        "min": float(x.min()),
        "max": float(x.max()),
    }


def freshness_summary(
    rows: Sequence[Mapping[str, float]], window_ms: int, window_emit_s: Sequence[float] = ()
) -> dict[str, Any]:
    """Percentiles of every measure over the injections, and the target ``p99 <= window + 2 s``.

    An injection whose alert never came counts as missed: it is not in the percentiles,
    and any miss fails the target. *window_emit_s*: drift window published minus window
    end + lateness, for every model-version window of the run (a larger sample of that part).
    """
    keys = list(rows[0]) if rows else []
    stats = {key: percentiles([r[key] for r in rows]) for key in keys}
    missed = sum(1 for r in rows if not math.isfinite(r["freshness_s"]))
    target_s = (window_ms + TARGET_SLACK_MS) / 1000
    p99 = stats["freshness_s"]["p99"] if rows else math.nan
    return {
        "stats": stats,
        "injections": len(rows),
        "missed": missed,
        "target_s": target_s,
        "target_met": bool(rows) and missed == 0 and p99 <= target_s,
        "window_emit_s": percentiles(window_emit_s),
    }


def _cell(s: Mapping[str, float], key: str, spec: str = ".2f") -> str:
    value = s.get(key, math.nan)
    return "–" if not math.isfinite(value) else f"{value:{spec}}"


def _utc(ms: int | None) -> str:
    if ms is None:
        return "–"
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}"


def markdown(result: Mapping[str, Any]) -> str:
    """The result as markdown: p50 / p99 / max over the injections, each injection, published figures."""
    o, summary, rule = result["options"], result["summary"], result["rule"]
    stats = summary["stats"]
    window_s = int(o["window_ms"]) / 1000
    lines = [
        f"Alert freshness benchmark, {result['created_at']}, {result['machine']['cpus']} CPUs, "
        f"data {result['data']}, model {result['model_version']}: {float(o['rate']):,.0f} readings/s "
        f"stamped with the wall clock, {o['rigs']} rigs, {window_s:g} s drift windows, lateness "
        f"{o['lateness_ms']} ms, idle {o['idle_ms']} ms, close interval {o['close_interval_ms']} ms; "
        f"{summary['injections']} injections of {o['sensor']} {float(o['delta']):+g} for "
        f"{o['drift_windows']} windows each, starting at a random point of a window; rule {RULE} "
        f"(critical > {rule['critical']:g}x fires at once, for_critical {rule['for_critical']}, "
        f"clear_for {rule['clear_for']}, cooldown 0 here); {result['runtime_s']:.0f} s in all",
        "",
        "| measure, s | p50 | p99 | max | min |",
        "|---|---|---|---|---|",
    ]
    for key, label in (
        ("freshness_s", "**freshness: first drifted event → firing alert read from rig.alerts**"),
        ("window_wait_s", "  of which window wait: event → end of the firing window + lateness"),
        ("pipeline_s", "  of which pipeline: window end + lateness → alert read"),
        ("drift_emit_s", "    drift window published (watermark, close tick, evaluate, flush)"),
        ("alert_publish_s", "    alert published (alerts consumer, rules, Redis, flush)"),
        ("read_s", "    alert read by this process"),
        ("offset_in_window_s", "first drifted event's offset into its window"),
        ("windows_waited", "windows waited (0: its own window fired, 1: the next one)"),
        ("resolve_delay_s", "resolve delay: last drifted event → resolved alert read"),
        ("resolve_pipeline_s", "  of which pipeline: resolving window end + lateness → read"),
        ("resolve_drift_emit_s", "    resolving drift window published"),
    ):
        s = stats.get(key, {})
        lines.append(
            f"| {label} | {_cell(s, 'p50')} | {_cell(s, 'p99')} | {_cell(s, 'max')} | {_cell(s, 'min')} |"
        )
    emit = summary.get("window_emit_s") or {}
    if emit.get("n"):
        lines.append(
            f"| every model-version drift window of the run ({emit['n']:.0f}): published after its end "
            f"+ lateness | {_cell(emit, 'p50')} | {_cell(emit, 'p99')} | {_cell(emit, 'max')} "
            f"| {_cell(emit, 'min')} |"
        )
    fresh = stats.get("freshness_s", {})
    verdict = "met" if summary["target_met"] else "NOT met"
    lines += [
        "",
        f"Target p99 freshness ≤ window + 2 s = {summary['target_s']:g} s: **{verdict}** "
        f"(p99 {_cell(fresh, 'p99')} s, max {_cell(fresh, 'max')} s, "
        f"{summary['missed']} of {summary['injections']} injections without an alert).",
        "",
        "| # | first drifted event (UTC) | s into its window | window that fired | severity "
        "| PSI ratio | freshness s | pipeline s | resolve delay s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for inj, row in zip(result["injections"], result["rows"], strict=True):
        fired = {0.0: "its own", 1.0: "the next"}.get(
            row["windows_waited"], _cell(row, "windows_waited", "+.0f")
        )
        value = "–" if inj["value"] is None else f"{inj['value']:.1f}"
        lines.append(
            f"| {inj['index'] + 1} | {_utc(inj['first_event_ms'])} | {_cell(row, 'offset_in_window_s')} "
            f"| {fired if inj['fired_window_end'] is not None else 'none'} | {inj['severity'] or '–'} "
            f"| {value} | {_cell(row, 'freshness_s')} | {_cell(row, 'pipeline_s')} "
            f"| {_cell(row, 'resolve_delay_s')} |"
        )
    p99 = fresh.get("p99", math.nan)
    lines += [
        "",
        "| system | drift → alert freshness | vendor figure ÷ rigwatch p99 | source |",
        "|---|---|---|---|",
        f"| rigwatch (measured here) | p50 {_cell(fresh, 'p50')} s, p99 {_cell(fresh, 'p99')} s "
        f"| 1 | this run |",
    ]
    for name, text, lower_s, source in PUBLISHED:
        ratio = f"≥ {lower_s / p99:,.0f}x" if math.isfinite(p99) and p99 > 0 else "–"
        lines.append(f"| {name} | {text} | {ratio} | {source} |")
    others = result.get("other_alerts") or {}
    lines += [
        "",
        "The vendor rows are their published aggregation / evaluation intervals, not measured here: "
        "an alert there cannot come sooner than the interval, so the ratio is a lower bound.",
        "",
        "Definitions: times are this host's wall clock (epoch ms). A reading's event time is stamped as "
        "it is sent; the alert is read by a TopicReader in the bench process polling every 20 ms. "
        "Window wait is what event-time windows cost by design (up to one window plus the lateness); "
        "pipeline is everything after. Published times are the Kafka record timestamps the drift and "
        "alerts services' producers set. p99 uses numpy's linear interpolation: over a few injections "
        "it lies just under the max.",
    ]
    if others:
        listed = ", ".join(f"{k} ×{v}" for k, v in sorted(others.items()))
        lines += ["", f"Other alerts seen (rig segments, other rules): {listed}."]
    return "\n".join(lines) + "\n"


def rules_without_cooldown(text: str, rule: str) -> str:
    """The rules TOML *text* with ``cooldown_s = 0`` in the rule named *rule*, every other line as it was.

    Examples
    --------
    >>> rules_without_cooldown('[[rules]]\\nname = "a"\\ncooldown_s = 120\\n', "a")
    '[[rules]]\\nname = "a"\\ncooldown_s = 0\\n'
    """
    blocks = text.split("[[rules]]")
    found = False
    for i, block in enumerate(blocks):
        if re.search(rf'^name\s*=\s*"{re.escape(rule)}"\s*$', block, re.M):
            blocks[i], n = re.subn(r"^cooldown_s\s*=.*$", "cooldown_s = 0", block, flags=re.M)
            found = found or n > 0
    if not found:
        raise ConfigError(f"rules: no rule {rule!r} with a cooldown_s line to set to 0")
    return "[[rules]]".join(blocks)


# ---------------------------------------------------------------- the live run


def _now_ms() -> int:
    return int(time.time() * 1000)


class Feed(threading.Thread):
    """Readings at a steady rate, stamped with the wall clock when sent, drifted inside injections.

    Not ``run_pump``: its shifts are fixed by sequence number before it starts, while the
    bench decides each injection while running and needs the first drifted event's exact time.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        dataset: Dataset,
        options: AlertsBenchOptions,
        codecs: Codecs,
        actuals_topic: str | None = None,
    ) -> None:
        super().__init__(name="bench-alerts-feed", daemon=True)
        self.bootstrap, self.topic, self.dataset, self.options = bootstrap, topic, dataset, options
        self.codec = codecs.sensor_reading
        # With an actuals topic, every reading's Actual follows it at once (observed now).
        self.actuals_topic, self.actual_codec = actuals_topic, codecs.actual
        self.stop = threading.Event()
        self.sent = 0
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._injections: list[Injection] = []

    def inject(self, injection: Injection) -> None:
        with self._lock:
            self._injections.append(injection)

    def _drifting(self, event_ms: int) -> Injection | None:
        with self._lock:
            return next((i for i in self._injections if i.start_ms <= event_ms < i.until_ms), None)

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # handed to the main thread, which checks it every poll
            self.error = exc

    def _run(self) -> None:
        from loadgen.pump import PUMP_LINGER_MS
        from rigwatch.kafka import ReliableProducer

        o = self.options
        # The pump's linger: it adds at most 10 ms to freshness, where 1 ms made a request
        # per record and took most of the local broker's core at 200 readings/s.
        producer = ReliableProducer(self.bootstrap, {"linger.ms": PUMP_LINGER_MS})
        stream = ReadingStream(
            self.dataset,
            self.codec,
            run_id="benchalerts",
            rigs=o.rigs,
            label_coverage=1.0 if self.actuals_topic else 0.0,
            seed=o.seed,
        )
        events = stream.events(_now_ms)
        started = time.monotonic()
        try:
            while not self.stop.is_set():
                # Pace against the schedule, then draw the event: its event time is stamped now.
                ahead = started + self.sent / o.rate - time.monotonic()
                if ahead > 0 and self.stop.wait(ahead):
                    break
                event = next(events)
                reading, value = event.reading, event.value
                assert reading is not None  # no malformed records in this stream
                injection = self._drifting(reading["event_time"])
                if injection is not None and reading[o.sensor] is not None:
                    value = self.codec.encode({**reading, o.sensor: reading[o.sensor] + o.delta})
                    if injection.first_event_ms is None:
                        injection.first_event_ms = reading["event_time"]
                    injection.last_event_ms = reading["event_time"]
                producer.produce(self.topic, value, key=event.key)
                if self.actuals_topic and event.label is not None:
                    actual = {
                        "event_id": reading["event_id"],
                        "rig_id": reading["rig_id"],
                        "label": event.label,
                    }
                    actual["observed_time"] = _now_ms()
                    producer.produce(self.actuals_topic, self.actual_codec.encode(actual), key=event.key)
                self.sent += 1
        finally:
            producer.flush(30)


class Pipeline:
    """Scorer, drift and alerts as child processes on fresh topics; the feed; a reader of the outputs.

    *services* may add ``latency`` and ``accuracy`` (same window settings as drift; accuracy
    then needs a :class:`Feed` with actuals). Every MetricWindow read is kept in ``windows``.
    """

    def __init__(
        self,
        settings: Settings,
        dataset: Dataset,
        version: str,
        options: AlertsBenchOptions,
        say: Callable[[str], None],
        services: Sequence[str] = ("scorer", "drift", "alerts"),
    ) -> None:
        tag = uuid.uuid4().hex[:8]
        self.run_dir = (options.out / "alerts-run").resolve()
        self.settings = settings.model_copy(
            update={"topic_prefix": f"benchalerts{tag}.", "run_dir": self.run_dir}
        )
        self.dataset, self.version, self.options, self.say = dataset, version, options, say
        self.bootstrap = settings.bootstrap or ""
        self.groups = {name: f"benchalerts-{name}-{tag}" for name in services}
        self.logs = options.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.rules_path = self.logs / f"alerts-rules-{tag}.toml"
        self.alert_id = f"{RULE}/{version}/{options.sensor}"
        self.codecs = Codecs.load()
        self.children: dict[str, Process] = {}
        self.window_published: dict[int, int] = {}  # model-version drift window end -> Kafka timestamp
        self.windows: list[tuple[dict[str, Any], int, int]] = []  # (MetricWindow, published ms, read ms)
        self.mine: list[tuple[int, int, dict[str, Any]]] = []  # (read ms, published ms, Alert)
        self.others: Counter[str] = Counter()
        self.exit_codes: dict[str, int] = {}

    # -- set-up and tear-down

    def write_rules(self) -> Rule:
        self.rules_path.write_text(rules_without_cooldown(DEFAULT_RULES.read_text(), RULE))
        rule = next(r for r in load_rules(self.rules_path).rules if r.name == RULE)
        if rule.cooldown_s != 0:
            raise ConfigError(f"{self.rules_path}: {RULE} cooldown_s = {rule.cooldown_s}, expected 0")
        return rule

    def start(self) -> None:
        o = self.options
        windows = {
            "WINDOW_MS": o.window_ms,
            "LATENESS_MS": o.lateness_ms,
            "IDLE_MS": o.idle_ms,
            "CLOSE_INTERVAL_MS": o.close_interval_ms,
        }
        extra: dict[str, Mapping[str, object]] = {
            "drift": windows,
            "latency": windows | ({"SCORER_GROUP": self.groups["scorer"]} if "scorer" in self.groups else {}),
            "accuracy": windows,
            "alerts": {"RULES_FILE": self.rules_path.resolve()},
        }
        for name, group in self.groups.items():
            prefix = f"RIGWATCH_{name.upper()}_"
            env = {f"{prefix}GROUP": group, f"{prefix}METRICS_PORT": "-1"}
            env |= {prefix + key: str(value) for key, value in extra.get(name, {}).items()}
            self.children[name] = Process.start([name], self.settings.to_env(**env), self.log(name))

    def log(self, name: str) -> Path:
        return self.logs / f"{self.groups[name]}.log"

    def stop(self) -> None:
        for name, child in self.children.items():
            outcome = child.stop()
            self.exit_codes[name] = outcome.code
            if not outcome.clean:
                self.say(f"    warning: {outcome.describe()}; see {child.log}")

    def cleanup(self) -> None:
        """Delete this run's topics and Redis keys (nothing else)."""
        from redis import Redis

        from rigwatch.kafka import delete_topics

        delete_topics(self.bootstrap, self.settings.topics.all())
        client = Redis.from_url(self.settings.redis_url or "")
        try:
            for group in self.groups.values():
                keys = list(client.scan_iter(match=f"*{group}*", count=1000))
                for i in range(0, len(keys), 500):
                    client.delete(*keys[i : i + 500])
        finally:
            client.close()

    # -- reading the outputs

    def check(self, feed: Feed) -> None:
        if feed.error is not None:
            raise RigwatchError(f"the reading feed failed: {feed.error!r}") from feed.error
        for child in self.children.values():
            child.check_running()

    def poll(self, reader: Any) -> None:
        """Read what is there (20 ms at most); keep drift window times and this bench's alerts."""
        topics = self.settings.topics
        messages = reader.poll(0.02, max_messages=1000)
        now = _now_ms()
        for msg in messages:
            published = int(msg.timestamp()[1])
            if msg.topic() == topics.metrics:
                window = self.codecs.metric_window.decode(msg.value())
                self.windows.append((window, published, now))
                if window["kind"] == "drift" and window["subject"] == self.version:
                    self.window_published.setdefault(int(window["window_end"]), published)
            else:
                alert = self.codecs.alert.decode(msg.value())
                if alert["alert_id"] == self.alert_id:
                    self.mine.append((now, published, alert))
                else:
                    self.others[f"{alert['alert_id']} {alert['state']}"] += 1

    def alerts_evaluated_up_to(self) -> int:
        """Window end of the last window the alerts service evaluated for this bench's alert (-1: none)."""
        from redis import Redis

        from rigwatch.runtime.checkpoint import HashState
        from rigwatch.windowing import namespace
        from services.alerts.app import alert_states

        client = Redis.from_url(self.settings.redis_url or "")
        try:
            ns = namespace(self.groups["alerts"], self.settings.topic_prefix)
            state = alert_states(HashState(client, ns)).get(self.alert_id)
        finally:
            client.close()
        return -1 if state is None else state.last_end

    def wait_warm(self, reader: Any, feed: Feed) -> None:
        o = self.options
        deadline = time.monotonic() + 180
        next_probe = 0.0
        while time.monotonic() < deadline:
            self.check(feed)
            self.poll(reader)
            if len(self.window_published) < o.warm_windows or time.monotonic() < next_probe:
                continue
            next_probe = time.monotonic() + 0.5
            if self.alerts_evaluated_up_to() >= max(self.window_published):
                return
        raise RigwatchError(
            f"not warm after 180 s: {len(self.window_published)} drift windows of {self.version} "
            f"(want {o.warm_windows}) evaluated by the alerts service; see the logs in {self.logs}"
        )

    def wait_alert(self, reader: Any, feed: Feed, state: str, after: int, until: float) -> int | None:
        """Index in ``self.mine`` of the first *state* alert read after index *after*, or None by *until*."""
        while time.monotonic() < until:
            for k in range(after, len(self.mine)):
                if self.mine[k][2]["state"] == state:
                    return k
            self.check(feed)
            self.poll(reader)
        return None

    def inject(self, reader: Any, feed: Feed, index: int, rng: np.random.Generator) -> Injection:
        o = self.options
        now = _now_ms()
        start = now - now % o.window_ms + o.window_ms + int(rng.uniform(0, o.window_ms))
        injection = Injection(index, start, start + o.drift_windows * o.window_ms)
        already = len(self.mine)
        feed.inject(injection)
        spare = 4 * o.window_ms / 1000 + 30
        end_by = time.monotonic() + (injection.until_ms - _now_ms()) / 1000
        fired = self.wait_alert(reader, feed, "firing", already, end_by + spare)
        if fired is None:
            self.say(f"    no firing alert for {self.alert_id} within {spare:.0f} s after the injection")
            return injection
        read_ms, published_ms, alert = self.mine[fired]
        first = injection.first_event_ms
        # A firing from a window that closed before any drifted reading is noise, not this injection.
        if first is None or int(alert["window_end"]) < first - first % o.window_ms + o.window_ms:
            raise RigwatchError(f"{self.alert_id} fired before injection {index + 1} began: {alert}")
        injection.fired_read_ms, injection.fired_published_ms = read_ms, published_ms
        injection.fired_window_end = int(alert["window_end"])
        injection.window_published_ms = self.window_published.get(injection.fired_window_end)
        injection.severity, injection.value = alert["severity"], float(alert["value"])
        figures = injection.figures(o.window_ms, o.lateness_ms)
        self.say(
            f"    fired ({alert['severity']}, PSI ratio {alert['value']:.1f}) {figures['freshness_s']:.2f} s "
            f"after the first drifted event, {figures['offset_in_window_s']:.2f} s into its window"
        )
        resolved = self.wait_alert(reader, feed, "resolved", fired + 1, end_by + 6 * o.window_ms / 1000 + 30)
        if resolved is None:
            raise RigwatchError(
                f"{self.alert_id} did not resolve after injection {index + 1}; see {self.logs}"
            )
        injection.resolved_read_ms, injection.resolved_published_ms, alert = self.mine[resolved]
        injection.resolved_window_end = int(alert["window_end"])
        injection.resolved_window_published_ms = self.window_published.get(injection.resolved_window_end)
        resolve_s = injection.figures(o.window_ms, o.lateness_ms)["resolve_delay_s"]
        self.say(f"    resolved {resolve_s:.2f} s after the last drifted event")
        return injection


def run_alerts_bench(
    settings: Settings,
    dataset: Dataset,
    model_dir: Path,
    options: AlertsBenchOptions,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Warm the pipeline, run *options.injections* injections, write JSON and markdown; return the result.

    *settings* must be bound to a broker and Redis and name *model_dir* as the model.
    """
    from rigwatch.kafka import TopicReader, create_topics

    began = time.monotonic()
    options.out.mkdir(parents=True, exist_ok=True)
    version = ModelPackage.load(model_dir).version
    pipe = Pipeline(settings, dataset, version, options, say)
    rule = pipe.write_rules()
    rng = np.random.default_rng(options.seed)
    injections: list[Injection] = []
    create_topics(pipe.bootstrap, pipe.settings.topics.all(), options.partitions)
    feed = Feed(pipe.bootstrap, pipe.settings.topics.sensor_readings, dataset, options, pipe.codecs)
    try:
        topics = [pipe.settings.topics.metrics, pipe.settings.topics.alerts]
        with TopicReader(pipe.bootstrap, topics) as reader:
            say(
                f"scorer, drift ({options.window_ms} ms windows) and alerts on "
                f"{pipe.settings.topic_prefix}*; {options.rate:,.0f} readings/s ..."
            )
            pipe.start()
            feed.start()
            pipe.wait_warm(reader, feed)
            warm_s = time.monotonic() - began
            warm_end = max(pipe.window_published)
            say(f"warm after {warm_s:.1f} s ({len(pipe.window_published)} drift windows evaluated)")
            for index in range(options.injections):
                say(
                    f"[{index + 1}/{options.injections}] {options.sensor} {options.delta:+g} for "
                    f"{options.drift_windows} windows, from a random point in a window ..."
                )
                injections.append(pipe.inject(reader, feed, index, rng))
    finally:
        feed.stop.set()
        feed.join(30)
        pipe.stop()
        pipe.cleanup()
    rows = [i.figures(options.window_ms, options.lateness_ms) for i in injections]
    emit_s = [
        (published - end - options.lateness_ms) / 1000
        for end, published in sorted(pipe.window_published.items())
        if end > warm_end
    ]
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "options": {k: str(v) for k, v in options.__dict__.items()},
        "data": dataset.source,
        "model_version": version,
        "alert_id": pipe.alert_id,
        "rule": {k: v for k, v in asdict(rule).items() if k != "message"},
        "injections": [asdict(i) for i in injections],
        "rows": rows,
        "summary": freshness_summary(rows, options.window_ms, emit_s),
        "published": [
            {"system": n, "figure": t, "lower_bound_s": s, "source": src} for n, t, s, src in PUBLISHED
        ],
        "other_alerts": dict(pipe.others),
        "readings_sent": feed.sent,
        "warmup_s": warm_s,
        "runtime_s": time.monotonic() - began,
        "exit_codes": pipe.exit_codes,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (options.out / f"alerts-{stamp}.json").write_text(json.dumps(result, indent=2, default=str))
    table = markdown(result)
    (options.out / f"alerts-{stamp}.md").write_text(table)
    say(table)
    return result
