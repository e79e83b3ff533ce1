"""Drift entrypoint: a faust app wiring Kafka, Redis windows, metrics and shutdown around the handler.

Two agents consume ``rig.sensor-readings`` and ``rig.predictions`` in batches
(``take_events``: faust acks a batch only after it was handled); each batch
becomes one atomic Redis update of the shared windows
(:class:`~rigwatch.windowstore.WindowStore`). A timer seals windows behind
the watermark, and one worker at a time (Redis lock) turns them into
MetricWindow records on ``rig.metrics``, flushed before they are deleted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import faust

from rigwatch.config import Settings
from rigwatch.drift.profile import DriftProfile
from rigwatch.kafka import ReliableProducer
from rigwatch.metrics import serve_metrics
from rigwatch.model import ModelPackage
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
from services.drift.config import DriftSettings
from services.drift.handler import DriftHandler
from services.drift.metrics import DriftMetrics

__all__ = ["DriftProcessor", "build_app", "run"]

log = logging.getLogger("rigwatch.drift")


class DriftProcessor(WindowedProcessor):
    """The I/O around :class:`DriftHandler`: offsets, Redis windows, emission, metrics."""

    def __init__(
        self,
        handler: DriftHandler,
        store: WindowStore,
        producer: ReliableProducer,
        metrics_topic: str,
        codecs: Codecs,
        metrics: DriftMetrics,
    ) -> None:
        super().__init__(store, producer, metrics_topic, codecs, metrics.stream)
        self.handler, self.metrics = handler, metrics

    async def handle(self, events: Sequence[faust.types.EventT], which: str, assigned: Sequence[str]) -> None:
        """Apply one batch of ``readings`` or ``predictions`` events to the windows (exactly once)."""
        started = time.perf_counter()
        handle = self.handler.readings if which == "readings" else self.handler.predictions
        if await self.apply(events, lambda fresh: handle(*values_and_sources(fresh)), assigned):
            self.metrics.batch_seconds.observe(time.perf_counter() - started)

    async def close_and_emit(self) -> int:
        """Seal windows behind the watermark; as the emitter, publish them. Returns the windows sent."""
        await self.store.close_due(now_ms())
        if not await self.store.acquire(ttl_ms=self.lease_ms):
            return 0
        sealed = await self.store.sealed()
        if not sealed:
            return 0
        loop = asyncio.get_running_loop()
        detectors: dict[str, Any] = {}
        done = []
        for subject, start in sealed:
            first_of_subject = subject not in detectors
            if first_of_subject:
                detectors[subject] = self.handler.load_detectors(await self.store.load_state(subject))
            fields, late = await self.store.read(subject, start)
            # Late records not yet reported go with the subject's first window of this round only.
            late = late if first_of_subject else 0
            # Off the event loop: the first window at a new count bootstraps its null
            # thresholds (seconds), and the consumer must keep its group membership meanwhile.
            record = await loop.run_in_executor(
                None, self.handler.window, subject, start, fields, late, detectors[subject]
            )
            self.publish(record)
            # State as of this window: a crash before its finish() re-emits it from here.
            done.append((subject, start, late, self.handler.dump_detectors(detectors[subject]), record))
        await self.flush()
        for subject, start, late, state, record in done:
            await self.store.finish(subject, start, late, (subject, state))
            self.metrics.observe_window(record, self.handler.profile.features)
        return len(done)


def build_app(settings: Settings, config: DriftSettings) -> tuple[faust.App, DriftProcessor]:
    """The faust app with its two agents and the close/emit timer."""
    ends = endpoints(settings)
    topics = settings.topics
    model = ModelPackage.load(config.model_dir or settings.model_dir)
    codecs = Codecs.load()
    profile = DriftProfile.from_reference(model.reference, model.version, model.features, model.classes)
    handler = DriftHandler(
        profile,
        codecs.sensor_reading,
        codecs.prediction,
        size_ms=config.window_ms,
        min_count=config.min_count,
    )
    store = window_store(
        ends.redis_url,
        config.group,
        settings.topic_prefix,
        size_ms=config.window_ms,
        lateness_ms=config.lateness_ms,
        idle_ms=config.idle_ms,
    )
    metrics = DriftMetrics()
    metrics.model.info({"name": model.name, "version": model.version})
    processor = DriftProcessor(
        handler, store, ReliableProducer(ends.bootstrap), topics.metrics, codecs, metrics
    )
    app = faust_app(config.group, ends.bootstrap, settings.run_dir)
    wire(
        app,
        processor,
        {"readings": topics.sensor_readings, "predictions": topics.predictions},
        batch_max=config.batch_max,
        batch_timeout_ms=config.batch_timeout_ms,
        close_interval_ms=config.close_interval_ms,
    )
    port = serve_metrics(metrics.registry, config.metrics_port, config.metrics_host)
    log.info(
        "drift of %s %s: %s + %s -> %s, %d ms windows (lateness %d ms), metrics port %s",
        model.name,
        model.version,
        topics.sensor_readings,
        topics.predictions,
        topics.metrics,
        config.window_ms,
        config.lateness_ms,
        port,
    )
    return app, processor


def run(settings: Settings, config: DriftSettings) -> int:
    """Run one drift worker until SIGTERM/SIGINT; faust finishes the batch in hand and commits."""
    app, processor = build_app(settings, config)
    return run_worker(app, on_exit=processor.producer.flush)
