"""Latency entrypoint: wires the health windows, the lag probe and metrics around :class:`LatencyHandler`.

Predictions and DLQ records are counted into the shared windows by the runtime
(:mod:`rigwatch.runtime.windowed`). The windows are in the scorer's time and
close on the wall clock once the inputs go quiet, so a stopped scorer still
gets a window every period: an empty one whose staleness keeps growing
(which windows are due is the handler's policy, :meth:`LatencyHandler.due`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from typing import Any

from rigwatch.config import Settings
from rigwatch.kafka import StopFlag
from rigwatch.lag import GroupLag, LagSample
from rigwatch.runtime.loop import LONG_POLL, run_service
from rigwatch.runtime.records import Batch, Output
from rigwatch.runtime.windowed import WindowedService, window_store
from rigwatch.schemas import Codecs
from rigwatch.stack import endpoints
from rigwatch.windowing import Updates
from rigwatch.windowstore import WindowStore
from services.latency.config import LatencySettings
from services.latency.handler import DlqRecord, LatencyHandler
from services.latency.metrics import LatencyMetrics

__all__ = ["LatencyService", "run"]

log = logging.getLogger("rigwatch.latency")

#: Redis state name: the handler's known subjects (next window to emit, last prediction time).
_STATE = "subjects"


def _text(value: bytes | str | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value or ""


def dlq_updates(handler: LatencyHandler, batch: Batch) -> Updates:
    """The handler's updates for a batch of DLQ records (their timestamps and headers)."""
    records = [
        DlqRecord(t, {_text(k): _text(v) for k, v in headers})
        for t, headers in zip(batch.timestamps_ms, batch.headers, strict=True)
    ]
    return handler.dlq(records, batch.sources)


class LatencyService(WindowedService):
    """Health windows, emitted every period per known model version, with the scorer group's lag."""

    wall_clock_when_idle = True

    def __init__(
        self,
        handler: LatencyHandler,
        store: WindowStore,
        metrics: LatencyMetrics,
        lag: GroupLag,
        **kwargs: Any,
    ) -> None:
        super().__init__(store, counters=metrics.stream, **kwargs)
        self.handler, self.metrics, self.lag = handler, metrics, lag

    def _sample_lag(self) -> LagSample | None:
        try:
            return self.lag.sample()
        except Exception as exc:  # a lag probe failure must not stop health windows
            log.warning("scorer lag not sampled: %s", exc)
            return None

    def emit(self, now_ms: int, publish: Callable[[Iterable[Output]], None]) -> None:
        boundary = self.store.closed_before()
        if boundary is None:
            return
        raw = self.store.load_state(_STATE)
        due, known = self.handler.due(json.loads(raw) if raw else {}, self.store.sealed(), boundary)
        if not due:
            return
        lag = self._sample_lag()
        emitted, reported_late = [], set()
        for start, subject in due:
            fields, late = self.store.read(subject, start)
            # Late records not yet reported go with the subject's first window of this round only.
            late = 0 if subject in reported_late else late
            reported_late.add(subject)
            record, known[subject][1] = self.handler.window(
                subject, start, fields, late, known[subject][1], lag
            )
            known[subject][0] = max(known[subject][0], start + self.handler.size_ms)
            emitted.append((subject, start, late, bool(fields), record))
        publish(self.window_output(record) for *_, record in emitted)
        # State first, then delete the windows: a crash in between re-emits a sealed window
        # (at-least-once) rather than emitting an empty one in its place.
        self.store.save_state(_STATE, json.dumps(known).encode())
        for subject, start, late, had_data, record in emitted:
            if had_data or late:
                self.store.finish(subject, start, late)
            self.metrics.windows.observe(record)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.lag.close()


def run(settings: Settings, config: LatencySettings, stop: StopFlag) -> int:
    """Run one latency worker until *stop*; the batch in hand is checkpointed, then 0 is returned."""
    ends = endpoints(settings)
    topics = settings.topics
    codecs = Codecs.load()
    handler = LatencyHandler(
        codecs.prediction, size_ms=config.window_ms, forget_after_ms=config.forget_after_ms
    )
    metrics = LatencyMetrics()
    with ExitStack() as stack:
        lag = GroupLag(ends.bootstrap, config.scorer_group, topics.sensor_readings, mode=config.lag_mode)
        service = LatencyService(
            handler,
            window_store(ends.redis_url, config, settings.topic_prefix),
            metrics,
            lag,
            inputs={
                topics.predictions: lambda b: handler.predictions(b.values, b.sources),
                topics.predictions_shadow: lambda b: handler.predictions(b.values, b.sources),
                topics.dlq: lambda b: dlq_updates(handler, b),
            },
            metrics_topic=topics.metrics,
            window_codec=codecs.metric_window,
        )
        stack.callback(service.close)
        about = (
            f"health: {topics.predictions} + {topics.dlq} -> {topics.metrics}, {config.window_ms} ms windows,"
            f" lag of group {config.scorer_group} ({config.lag_mode})"
        )
        return run_service(
            stack,
            service,
            config,
            name="latency",
            about=about,
            bootstrap=ends.bootstrap,
            stop=stop,
            registry=metrics.registry,
            roles=LONG_POLL,
            checkpoint_ms=config.checkpoint_ms,
            tick_ms=config.close_interval_ms,
        )
