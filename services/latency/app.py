"""Latency entrypoint: a faust app wiring Kafka, Redis windows, the lag probe and metrics around the handler.

Two agents consume ``rig.predictions`` and ``rig.sensor-readings.dlq`` in
batches, each batch one atomic Redis update of the shared health windows. The
windows are in the scorer's time and close on the wall clock once the inputs
go quiet, so a stopped scorer still gets a window every period: an empty one
whose staleness keeps growing. One worker at a time (Redis lease) emits.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

import faust

from rigwatch.config import Settings
from rigwatch.kafka import ReliableProducer
from rigwatch.lag import GroupLag, LagSample
from rigwatch.metrics import serve_metrics
from rigwatch.schemas import Codecs
from rigwatch.stack import endpoints
from rigwatch.streamapp import (
    WindowedProcessor,
    faust_app,
    now_ms,
    run_worker,
    values_and_sources,
    window_store,
    wire,
)
from rigwatch.windowstore import WindowStore
from services.latency.config import LatencySettings
from services.latency.handler import DlqRecord, HealthHandler
from services.latency.metrics import LatencyMetrics

__all__ = ["HealthProcessor", "build_app", "run"]

log = logging.getLogger("rigwatch.latency")

#: Redis state name: per subject, the next window to emit and its last prediction time.
_STATE = "subjects"


def _text(value: bytes | str | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value or ""


def dlq_record(event: faust.types.EventT) -> DlqRecord:
    """The timestamp and headers of a faust DLQ event."""
    message = event.message
    headers = message.headers or []
    pairs: Any = headers.items() if isinstance(headers, dict) else headers
    return DlqRecord(int(message.timestamp * 1000), {_text(k): _text(v) for k, v in pairs})


class HealthProcessor(WindowedProcessor):
    """The I/O around :class:`HealthHandler`: offsets, Redis windows, the lag probe, emission."""

    def __init__(
        self,
        handler: HealthHandler,
        store: WindowStore,
        producer: ReliableProducer,
        metrics_topic: str,
        codecs: Codecs,
        metrics: LatencyMetrics,
        lag: GroupLag | None,
        forget_after_ms: int,
    ) -> None:
        super().__init__(store, producer, metrics_topic, codecs, metrics.stream)
        self.handler, self.metrics = handler, metrics
        self.lag, self.forget_after_ms = lag, forget_after_ms

    async def handle(self, events: Sequence[faust.types.EventT], which: str, assigned: Sequence[str]) -> None:
        """Apply one batch of ``predictions`` or ``dlq`` events to the windows (exactly once)."""
        if which == "predictions":
            await self.apply(
                events, lambda fresh: self.handler.predictions(*values_and_sources(fresh)), assigned
            )
        else:
            await self.apply(
                events,
                lambda fresh: self.handler.dlq([dlq_record(e) for e in fresh], values_and_sources(fresh)[1]),
                assigned,
            )

    async def _sample_lag(self) -> LagSample | None:
        if self.lag is None:
            return None
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self.lag.sample)
        except Exception as exc:
            log.warning("scorer lag not sampled: %s", exc)
            return None

    async def close_and_emit(self) -> int:
        """Close windows (by the watermark, or the clock when quiet); as the emitter, publish them.

        Every known model version gets a window per period up to the closed
        boundary, empty when it had no data, until it has been silent for
        ``forget_after_ms``. Returns the windows sent.
        """
        now = now_ms()
        await self.store.close_due(now, wall_clock_when_idle=True)
        if not await self.store.acquire(ttl_ms=self.lease_ms):
            return 0
        boundary = await self.store.closed_before()
        if boundary is None:
            return 0
        raw = await self.store.load_state(_STATE)
        # subject -> [next window start to emit, last prediction time or None]
        known: dict[str, list[Any]] = json.loads(raw) if raw else {}
        sealed = await self.store.sealed()
        with_data: dict[str, set[int]] = {}
        for subject, start in sealed:
            with_data.setdefault(subject, set()).add(start)
            known.setdefault(subject, [start, None])
        size = self.handler.size_ms
        due: list[tuple[int, str]] = []
        for subject, (next_start, last_ms) in list(known.items()):
            # Sealed windows are always emitted (a crash may have left one behind after the
            # state moved on); empty ones from the next start up to the boundary.
            starts = set(with_data.get(subject, ()))
            silent_since = next_start if last_ms is None else last_ms
            if not starts and boundary - silent_since > self.forget_after_ms:
                del known[subject]  # silent for too long: a retired model version
                continue
            starts.update(range(next_start, boundary, size))
            due += [(start, subject) for start in sorted(starts)]
        if not due:
            return 0
        lag = await self._sample_lag()
        emitted, reported_late = [], set()
        for start, subject in sorted(due):
            fields, late = await self.store.read(subject, start)
            # Late records not yet reported go with the subject's first window of this round only.
            late = 0 if subject in reported_late else late
            reported_late.add(subject)
            record, known[subject][1] = self.handler.window(
                subject, start, fields, late, known[subject][1], lag
            )
            known[subject][0] = max(known[subject][0], start + size)
            self.publish(record)
            emitted.append((subject, start, late, record))
        await self.flush()
        # State first, then delete the windows: a crash in between re-emits a sealed window
        # (at-least-once) rather than emitting an empty one in its place.
        await self.store.save_state(_STATE, json.dumps(known).encode())
        for subject, start, late, record in emitted:
            if start in with_data.get(subject, ()) or late:
                await self.store.finish(subject, start, late)
            self.metrics.windows.observe(record)
        return len(emitted)


def build_app(settings: Settings, config: LatencySettings) -> tuple[faust.App, HealthProcessor]:
    """The faust app with its two agents and the close/emit timer."""
    ends = endpoints(settings)
    topics = settings.topics
    codecs = Codecs.load()
    handler = HealthHandler(codecs.prediction, size_ms=config.window_ms)
    store = window_store(
        ends.redis_url,
        config.group,
        settings.topic_prefix,
        size_ms=config.window_ms,
        lateness_ms=config.lateness_ms,
        idle_ms=config.idle_ms,
    )
    metrics = LatencyMetrics()
    lag = GroupLag(ends.bootstrap, config.scorer_group, topics.sensor_readings, mode=config.lag_mode)
    processor = HealthProcessor(
        handler,
        store,
        ReliableProducer(ends.bootstrap),
        topics.metrics,
        codecs,
        metrics,
        lag,
        config.forget_after_ms,
    )
    app = faust_app(config.group, ends.bootstrap, settings.run_dir)
    wire(
        app,
        processor,
        {"predictions": topics.predictions, "dlq": topics.dlq},
        batch_max=config.batch_max,
        batch_timeout_ms=config.batch_timeout_ms,
        close_interval_ms=config.close_interval_ms,
    )
    port = serve_metrics(metrics.registry, config.metrics_port, config.metrics_host)
    log.info(
        "health: %s + %s -> %s, %d ms windows, lag of group %s (%s), metrics port %s",
        topics.predictions,
        topics.dlq,
        topics.metrics,
        config.window_ms,
        config.scorer_group,
        config.lag_mode,
        port,
    )
    return app, processor


def run(settings: Settings, config: LatencySettings) -> int:
    """Run one latency worker until SIGTERM/SIGINT; faust finishes the batch in hand and commits."""
    app, processor = build_app(settings, config)

    def on_exit() -> None:
        processor.producer.flush()
        if processor.lag is not None:
            processor.lag.close()

    return run_worker(app, on_exit=on_exit)
