"""The demo data pump: publish readings at a rate, then each Actual after its label delay."""

from __future__ import annotations

import collections
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any, TextIO

from loadgen.readings import ReadingStream, Shift, WrongLabels, stepping_clock
from loadgen.scenarios import Effect
from rigwatch.config import Settings
from rigwatch.data import Dataset
from rigwatch.kafka import ReliableProducer, StopFlag
from rigwatch.schemas import Codecs
from rigwatch.stack import endpoints

__all__ = ["PumpOptions", "PumpReport", "run_pump"]

#: The pump's producer linger. The local broker is saturated by request count: alone at
#: 1,000 readings/s, the pump took 32 % of its core with a 1 ms linger, 19 % with 5 ms and
#: 7 % with 20 ms (README); 10 ms adds at most 10 ms to a reading's event -> prediction time.
PUMP_LINGER_MS = 10


@dataclass(frozen=True)
class PumpOptions:
    """What ``rigwatch pump`` sends; see ``rigwatch pump --help``."""

    rate: float = 100.0
    count: int | None = None
    duration: float | None = None
    order: str = "iid"
    rigs: int = 1
    label_delay: float = 5.0
    label_coverage: float = 1.0
    bad_rate: float = 0.0
    seed: int = 0
    run_id: str | None = None
    #: Simulated event time: readings stamped this many ms apart (None: the wall clock).
    event_interval_ms: int | None = None
    #: First simulated event time, epoch ms (None: now).
    event_start_ms: int | None = None
    shifts: tuple[Shift, ...] = ()
    wrong_labels: WrongLabels | None = None
    #: Scenario effects (loadgen.scenarios), beside the shifts and wrong labels above.
    effects: tuple[Effect, ...] = ()
    #: Producer linger (the request pattern on the broker: see :data:`PUMP_LINGER_MS`).
    linger_ms: int = PUMP_LINGER_MS


@dataclass
class PumpReport:
    """What the pump sent."""

    run_id: str
    readings: int = 0
    bad: int = 0
    actuals: int = 0
    seconds: float = 0.0


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Progress:
    """One refreshing status line (only when writing to a terminal, else a line every 5 s)."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.tty, self._last = out, out.isatty(), 0.0

    def show(self, text: str, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < (0.2 if self.tty else 5.0):
            return
        self._last = now
        if self.tty:
            self.out.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            self.out.write(text + "\n")
        self.out.flush()


def run_pump(
    settings: Settings,
    dataset: Dataset,
    options: PumpOptions,
    stop: StopFlag,
    out: TextIO = sys.stderr,
) -> PumpReport:
    """Publish readings (and delayed actuals) until count, duration or *stop*; flush everything."""
    codecs = Codecs.load()
    topics = settings.topics
    report = PumpReport(run_id=options.run_id or uuid.uuid4().hex[:10])
    stream = ReadingStream(
        dataset,
        codecs.sensor_reading,
        run_id=report.run_id,
        order=options.order,
        rigs=options.rigs,
        count=options.count,
        bad_rate=options.bad_rate,
        label_coverage=options.label_coverage,
        seed=options.seed,
        effects=(
            *options.effects,
            *(shift.effect() for shift in options.shifts),
            *((options.wrong_labels.effect(),) if options.wrong_labels else ()),
        ),
    )
    simulated = options.event_interval_ms is not None
    clock = (
        stepping_clock(options.event_start_ms or _now_ms(), options.event_interval_ms or 0)
        if simulated
        else _now_ms
    )
    # A short linger: a reading's event time is stamped when it is queued, so time spent
    # waiting to fill a producer batch counts as pipeline latency.
    producer = ReliableProducer(endpoints(settings).bootstrap, {"linger.ms": options.linger_ms})
    pending: collections.deque[tuple[float, str, dict[str, Any]]] = collections.deque()
    progress = _Progress(out)
    started = time.monotonic()
    deadline = started + options.duration if options.duration is not None else float("inf")

    # An Actual is due label_delay after its reading: in wall seconds, or in simulated
    # event time (ms), where the clock is the last reading's event time.
    sim_now = 0.0

    def clock_now() -> float:
        return sim_now if simulated else time.monotonic()

    def send_due_actuals(until: float) -> None:
        while pending and pending[0][0] <= until:
            due, key, actual = pending.popleft()
            # The label is observed when it is sent: that is what label latency measures.
            actual["observed_time"] = int(due) if simulated else _now_ms()
            producer.produce(topics.actuals, codecs.actual.encode(actual), key=key)
            report.actuals += 1

    def status() -> str:
        elapsed = max(time.monotonic() - started, 1e-9)
        sent = report.readings + report.bad
        return (
            f"pump {report.run_id}: sent {sent}{f'/{options.count}' if options.count else ''}"
            f" ({sent / elapsed:,.0f}/s), malformed {report.bad}, actuals {report.actuals},"
            f" actuals pending {len(pending)}"
        )

    for seq, event in enumerate(stream.events(clock)):
        now = time.monotonic()
        if stop or now >= deadline:
            break
        if options.rate > 0:
            # Pace against the schedule, not the previous send, so the rate does not drift.
            ahead = started + seq / options.rate - now
            if ahead > 0:
                stop.wait(ahead)
        producer.produce(topics.sensor_readings, event.value, key=event.key)
        if event.bad_kind:
            report.bad += 1
        else:
            report.readings += 1
        if event.reading is not None:
            sim_now = event.reading["event_time"]
        if event.label is not None and event.reading is not None:
            reading = event.reading
            actual = {"event_id": reading["event_id"], "rig_id": reading["rig_id"], "label": event.label}
            delay = options.label_delay * 1000 if simulated else options.label_delay
            pending.append((clock_now() + delay, event.key, actual))
        send_due_actuals(clock_now())
        progress.show(status())

    # Labels still owed are delivered on schedule, unless asked to stop; simulated
    # time simply moves on to them.
    if simulated and not stop:
        send_due_actuals(float("inf"))
    while pending and not stop:
        progress.show(status())
        stop.wait(min(0.1, max(0.0, pending[0][0] - time.monotonic())))
        send_due_actuals(time.monotonic())
    producer.flush()
    report.seconds = time.monotonic() - started
    progress.show(status() + f", done in {report.seconds:.1f} s", final=True)
    return report
