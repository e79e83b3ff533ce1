"""What the windowed stream processors (drift, latency, accuracy) share: faust app, exactly-once batches.

A processor is a faust app whose agents consume in batches (``take_events``:
faust acks a batch only after it was handled) and turn each batch into one
atomic update of shared Redis windows (:class:`~rigwatch.windowstore.WindowStore`).
:meth:`WindowedProcessor.apply` skips what a previous run already applied, so Kafka's
at-least-once delivery adds nothing twice; a timer then closes and emits windows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
from redis.asyncio import Redis

from rigwatch.codec import Codec
from rigwatch.exceptions import DecodeError
from rigwatch.kafka import ReliableProducer
from rigwatch.metrics import StreamCounters
from rigwatch.schemas import Codecs
from rigwatch.windowstore import SourceBatch, StaleBatch, Update, WindowStore

__all__ = [
    "Applied",
    "Updates",
    "WindowedProcessor",
    "assignment_tracker",
    "decode_valid",
    "faust_app",
    "max_event_per_source",
    "metric_window",
    "now_ms",
    "run_worker",
    "source_of",
    "values_and_sources",
    "window_store",
    "wire",
]

log = logging.getLogger("rigwatch.streamapp")


def now_ms() -> int:
    """Wall-clock epoch milliseconds."""
    return int(time.time() * 1000)


def source_of(message: Any) -> str:
    """A record's source, ``topic/partition``: the unit of offsets and watermarks."""
    return f"{message.topic}/{message.partition}"


def values_and_sources(events: Sequence[faust.types.EventT]) -> tuple[list[bytes | None], list[str]]:
    """The record values of a batch and the source of each."""
    return [e.value for e in events], [source_of(e.message) for e in events]


@dataclass
class Updates:
    """What a handler makes of one batch.

    ``updates`` go to the windows, ``max_event_ms`` is the largest event time
    per source (the watermark), ``undecodable`` counts records that could not
    be used, ``extension_args`` feed the store's Lua extension (if any).
    """

    updates: list[Update]
    max_event_ms: dict[str, int]
    undecodable: int = 0
    extension_args: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Applied:
    """A batch that was applied: its fresh events, the handler's updates, late counts, extension output."""

    events: Sequence[faust.types.EventT]
    updates: Updates
    late: dict[str, int]
    extension: list[Any]


def decode_valid(
    codec: Codec,
    values: Sequence[bytes | None],
    sources: Sequence[str],
    valid: Callable[[dict[str, Any]], bool] = lambda record: True,
) -> tuple[list[dict[str, Any]], list[str], int]:
    """The records of a batch that decode and are *valid*, their sources, and how many were not.

    A bad record is counted, never raised: one record must not stop a partition.
    """
    records, used, bad = [], [], 0
    for value, source in zip(values, sources, strict=True):
        try:
            record = codec.decode(value)
        except DecodeError:
            bad += 1
            continue
        if valid(record):
            records.append(record)
            used.append(source)
        else:
            bad += 1
    return records, used, bad


def metric_window(
    kind: str,
    subject: str,
    start_ms: int,
    end_ms: int,
    count: int,
    metrics: Mapping[str, float],
    detail: dict[str, Any],
) -> dict[str, Any]:
    """A MetricWindow record: non-finite metrics left out, a rig segment named in ``detail``."""
    if subject.startswith("rig:"):
        detail = {**detail, "segment": {"rig_id": subject.removeprefix("rig:")}}
    return {
        "kind": kind,
        "subject": subject,
        "window_start": start_ms,
        "window_end": end_ms,
        "count": count,
        "metrics": {name: float(v) for name, v in metrics.items() if math.isfinite(v)},
        "detail": json.dumps(detail, sort_keys=True, default=float),
    }


def max_event_per_source(sources: Sequence[str], times: Sequence[int]) -> dict[str, int]:
    """The largest event time per source, for :attr:`Updates.max_event_ms`."""
    out: dict[str, int] = {}
    for source, t in zip(sources, times, strict=True):
        if t > out.get(source, -1):
            out[source] = t
    return out


def _spans(events: Sequence[faust.types.EventT], max_event_ms: dict[str, int]) -> list[SourceBatch]:
    """Offsets and largest event time per ``topic/partition`` of a batch."""
    spans: dict[str, list[int]] = {}
    for e in events:
        span = spans.setdefault(source_of(e.message), [e.message.offset, e.message.offset])
        span[0], span[1] = min(span[0], e.message.offset), max(span[1], e.message.offset)
    return [
        SourceBatch(source, first, last, max_event_ms.get(source, -1))
        for source, (first, last) in spans.items()
    ]


def window_store(
    redis_url: str,
    group: str,
    topic_prefix: str,
    *,
    size_ms: int,
    lateness_ms: int,
    idle_ms: int,
    extension: str = "",
) -> WindowStore:
    """A processor group's shared windows, under ``rigwatch:<group>:<topic prefix>`` in Redis."""
    return WindowStore(
        Redis.from_url(redis_url),
        f"rigwatch:{group}:{topic_prefix}",
        size_ms=size_ms,
        lateness_ms=lateness_ms,
        idle_ms=idle_ms,
        extension=extension,
    )


def faust_app(group: str, bootstrap: str, run_dir: Path) -> faust.App:
    """A faust app for raw bytes, configured for the local broker's quirks (DESIGN.md)."""
    datadir = run_dir / "faust" / group
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        group,
        broker=f"kafka://{bootstrap}",
        value_serializer="raw",
        key_serializer="raw",
        datadir=str(datadir),
        web_enabled=False,
        # The local broker's first group join waits half the session timeout (DESIGN.md).
        broker_session_timeout=6,
        broker_rebalance_timeout=6,
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
        topic_allow_declare=False,
    )


def assignment_tracker(app: faust.App) -> Callable[[], list[str]]:
    """A function returning the sources assigned to this worker since it was last called."""
    announced: set[str] = set()

    def newly_assigned() -> list[str]:
        current = {f"{tp.topic}/{tp.partition}" for tp in app.consumer.assignment()}
        fresh = current - announced
        announced.intersection_update(current)
        announced.update(fresh)
        return sorted(fresh)

    return newly_assigned


class WindowedProcessor:
    """What every windowed processor shares around its handler: exactly-once batches, counts, publishing.

    A subclass implements :meth:`handle` (one batch of one input, through
    :meth:`apply`) and :meth:`close_and_emit` (the timer's work); :func:`wire`
    drives both.
    """

    #: The emitter lease: short, so a crashed emitter's successor takes over within seconds.
    lease_ms = 5_000

    def __init__(
        self,
        store: WindowStore,
        producer: ReliableProducer,
        metrics_topic: str,
        codecs: Codecs,
        counters: StreamCounters,
    ) -> None:
        self.store, self.producer, self.metrics_topic = store, producer, metrics_topic
        self.codecs, self.counters = codecs, counters
        self._applied: dict[str, int] | None = None  # last applied offset per source, cached

    async def apply(
        self,
        events: Sequence[faust.types.EventT],
        handle: Callable[[Sequence[faust.types.EventT]], Updates],
        assigned: Sequence[str],
    ) -> Applied | None:
        """Run *handle* on the fresh events and apply its updates exactly once; ``None`` if none was fresh.

        Events at or below a source's applied offset (a replay after a crash or a
        rebalance) are skipped before the handler sees them; a batch that races
        another worker (:class:`StaleBatch`) reloads the offsets and is filtered
        again. What was consumed, unusable and late is counted.
        """
        for attempt in range(2):
            if self._applied is None or attempt:
                self._applied = await self.store.applied_offsets()
            fresh = [e for e in events if e.message.offset > self._applied.get(source_of(e.message), -1)]
            if not fresh:
                if assigned:
                    await self.store.apply([], [], now_ms(), assigned)
                return None
            updates = handle(fresh)
            spans = _spans(fresh, updates.max_event_ms)
            try:
                late, extension = await self.store.apply_batch(
                    spans, updates.updates, now_ms(), assigned, updates.extension_args
                )
            except StaleBatch as exc:
                log.info("%s; reloading applied offsets", exc)
                continue
            for span in spans:
                self._applied[span.source] = span.last_offset
            self.counters.count(fresh[0].message.topic, len(fresh), updates.undecodable, late)
            return Applied(fresh, updates, late, extension)
        return None

    def publish(self, record: dict[str, Any]) -> None:
        """Queue one MetricWindow on the metrics topic, keyed ``kind/subject``."""
        key = f"{record['kind']}/{record['subject']}"
        self.producer.produce(self.metrics_topic, self.codecs.metric_window.encode(record), key=key)

    async def flush(self) -> None:
        """Wait until every queued window is acknowledged, off the event loop."""
        await asyncio.get_running_loop().run_in_executor(None, self.producer.flush)

    async def handle(self, events: Sequence[faust.types.EventT], which: str, assigned: Sequence[str]) -> None:
        """Apply one batch of input *which*."""
        raise NotImplementedError

    async def close_and_emit(self) -> int:
        """Close due windows and, as the emitter, publish them; returns how many."""
        raise NotImplementedError


def wire(
    app: faust.App,
    processor: WindowedProcessor,
    inputs: Mapping[str, str],
    *,
    batch_max: int,
    batch_timeout_ms: int,
    close_interval_ms: int,
) -> None:
    """Give *app* one batch agent per input (name -> topic), the close/emit timer and the shutdown hook."""
    newly_assigned = assignment_tracker(app)
    within = batch_timeout_ms / 1000

    def agent(which: str) -> Callable[[faust.StreamT], Awaitable[None]]:
        async def consume(stream: faust.StreamT) -> None:
            # take_events (faust >= 0.10) acks a batch only after this loop body has handled it.
            async for events in stream.take_events(batch_max, within=within):  # type: ignore[attr-defined]
                await processor.handle(events, which, newly_assigned())

        return consume

    for which, topic in inputs.items():
        app.agent(app.topic(topic), name=which)(agent(which))

    @app.timer(interval=close_interval_ms / 1000)
    async def close_windows() -> None:
        await processor.close_and_emit()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def shut_down(sender: Any, *args: Any, **kwargs: Any) -> None:
        # Hand the emitter lease on now rather than when it expires; close Redis on its own loop.
        await processor.store.release()
        await processor.store.redis.aclose()


def run_worker(app: faust.App, on_exit: Callable[[], None] = lambda: None) -> int:
    """Run *app* until SIGTERM/SIGINT (faust finishes the batch in hand and commits); exit code."""
    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    worker.spinner = None  # a terminal spinner's escape codes would litter logs
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        on_exit()
    return 0
