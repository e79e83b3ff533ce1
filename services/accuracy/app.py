"""Accuracy entrypoint: a faust app wiring Kafka, the Redis join and windows, and metrics around the handler.

Two agents consume ``rig.predictions`` and ``rig.actuals`` in batches. Each
batch is one Redis script: the offset guard of the window store, then the
join (:mod:`services.accuracy.join`), so a replayed batch joins nothing twice
and a restarted worker finds every waiting prediction and label where it left
them. One worker at a time (Redis lease) expires join state past the horizon
and emits the windows the watermark closed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import faust

from rigwatch.config import Settings
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
from rigwatch.windowstore import WindowStore, as_text
from services.accuracy.config import AccuracySettings
from services.accuracy.handler import AccuracyHandler
from services.accuracy.join import JOIN_LUA, SWEEP_LUA
from services.accuracy.metrics import AccuracyMetrics

__all__ = ["AccuracyProcessor", "build_app", "run"]

log = logging.getLogger("rigwatch.accuracy")

#: Events expired per sweep script call (each call blocks Redis while it runs).
_SWEEP_LIMIT = 5_000


class AccuracyProcessor(WindowedProcessor):
    """The I/O around :class:`AccuracyHandler`: offsets and join in Redis, expiry, emission, metrics."""

    def __init__(
        self,
        handler: AccuracyHandler,
        store: WindowStore,
        producer: ReliableProducer,
        metrics_topic: str,
        codecs: Codecs,
        metrics: AccuracyMetrics,
    ) -> None:
        super().__init__(store, producer, metrics_topic, codecs, metrics.stream)
        self.handler, self.metrics = handler, metrics
        self._sweep = store.redis.register_script(SWEEP_LUA)
        self._expiry, self._unlabelled = f"{store.ns}:expiry", f"{store.ns}:unlabelled"

    async def handle(self, events: Sequence[faust.types.EventT], which: str, assigned: Sequence[str]) -> None:
        """Join one batch of ``predictions`` or ``actuals`` events (exactly once)."""
        handle = self.handler.predictions if which == "predictions" else self.handler.actuals
        applied = await self.apply(events, lambda fresh: handle(*values_and_sources(fresh)), assigned)
        if applied is None:
            return
        joined, dup_predictions, dup_actuals = (int(x) for x in applied.extension)
        self.metrics.joined.inc(joined)
        self.metrics.duplicates.labels("prediction").inc(dup_predictions)
        self.metrics.duplicates.labels("actual").inc(dup_actuals)

    async def expire(self, watermark: float | None) -> int:
        """Drop join state of events the watermark left behind by the horizon; returns how many."""
        if watermark is None or watermark == float("-inf"):
            return 0
        total = 0
        while True:
            events, unlabelled, orphans = await self._sweep(
                keys=[self._expiry, self._unlabelled],
                args=[f"{self.store.ns}:", int(watermark), _SWEEP_LIMIT],
            )
            total += int(events)
            self.metrics.unlabelled.inc(int(unlabelled))
            self.metrics.orphans.inc(int(orphans))
            if int(events) < _SWEEP_LIMIT:
                break
        self.metrics.pending.set(await self.store.redis.zcard(self._expiry))
        return total

    async def close_and_emit(self) -> int:
        """Seal windows behind the watermark; as the emitter, expire old join state and publish windows."""
        now = now_ms()
        await self.store.close_due(now)
        if not await self.store.acquire(ttl_ms=self.lease_ms):
            return 0
        await self.expire(await self.store.watermark(now))
        sealed = await self.store.sealed()
        if not sealed:
            return 0
        counts = await self.store.redis.hgetall(self._unlabelled)
        unlabelled = {as_text(k): int(v) for k, v in counts.items()}
        done, reported = [], set()
        for subject, start in sealed:
            fields, late = await self.store.read(subject, start)
            items = await self.store.read_items(subject, start)
            # Late and expired counts not yet reported go with the subject's first window of this round.
            first = subject not in reported
            reported.add(subject)
            late, expired = (late, unlabelled.get(subject, 0)) if first else (0, 0)
            record = self.handler.window(subject, start, fields, items, late, expired)
            self.publish(record)
            done.append((subject, start, late, expired, record))
        await self.flush()
        for subject, start, late, expired, record in done:
            await self.store.finish(subject, start, late)
            if expired:
                await self.store.redis.hincrby(self._unlabelled, subject, -expired)
            self.metrics.windows.observe(record)
        return len(done)


def build_app(settings: Settings, config: AccuracySettings) -> tuple[faust.App, AccuracyProcessor]:
    """The faust app with its two agents and the close/emit timer."""
    ends = endpoints(settings)
    topics = settings.topics
    model = ModelPackage.load(config.model_dir or settings.model_dir)
    codecs = Codecs.load()
    store = window_store(
        ends.redis_url,
        config.group,
        settings.topic_prefix,
        size_ms=config.window_ms,
        lateness_ms=config.lateness_ms,
        idle_ms=config.idle_ms,
        extension=JOIN_LUA,
    )
    handler = AccuracyHandler(
        codecs.prediction,
        codecs.actual,
        model.classes,
        model.calibration,
        namespace=store.ns,
        size_ms=config.window_ms,
        horizon_ms=config.horizon_ms,
        min_count=config.min_count,
    )
    metrics = AccuracyMetrics()
    processor = AccuracyProcessor(
        handler, store, ReliableProducer(ends.bootstrap), topics.metrics, codecs, metrics
    )
    app = faust_app(config.group, ends.bootstrap, settings.run_dir)
    wire(
        app,
        processor,
        {"predictions": topics.predictions, "actuals": topics.actuals},
        batch_max=config.batch_max,
        batch_timeout_ms=config.batch_timeout_ms,
        close_interval_ms=config.close_interval_ms,
    )
    port = serve_metrics(metrics.registry, config.metrics_port, config.metrics_host)
    log.info(
        "accuracy of %s %s: %s + %s -> %s, %d ms windows in label time, horizon %d ms, metrics port %s",
        model.name,
        model.version,
        topics.predictions,
        topics.actuals,
        topics.metrics,
        config.window_ms,
        config.horizon_ms,
        port,
    )
    return app, processor


def run(settings: Settings, config: AccuracySettings) -> int:
    """Run one accuracy worker until SIGTERM/SIGINT; faust finishes the batch in hand and commits."""
    app, processor = build_app(settings, config)
    return run_worker(app, on_exit=processor.producer.flush)
