"""Accuracy entrypoint: wires the Redis join and windows and metrics around :class:`AccuracyHandler`.

Predictions and actuals are accumulated by the runtime and joined at each
checkpoint inside the window store's script, after its offset guard
(:mod:`services.accuracy.join`), so a replayed span joins nothing twice and a
restarted worker finds every waiting prediction and label where it left them.
One worker at a time (the emitter lease) expires join state past the horizon
and emits the windows the watermark closed: ``kind=accuracy`` per version and
rig, and ``kind=comparison`` per champion/challenger pair, whose verdict is on
every window of the pair so far (kept per window in ``NS:compared:<subject>``,
so a window emitted again after a crash is not counted twice).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from typing import Any

from rigwatch.config import Settings
from rigwatch.kafka import StopFlag
from rigwatch.model import ModelPackage
from rigwatch.runtime.checkpoint import as_text
from rigwatch.runtime.loop import LONG_POLL, run_service
from rigwatch.runtime.records import Output
from rigwatch.runtime.windowed import WindowedService, window_store
from rigwatch.schemas import Codecs
from rigwatch.stack import endpoints
from rigwatch.windowstore import WindowStore
from services.accuracy.config import AccuracySettings
from services.accuracy.handler import AccuracyHandler
from services.accuracy.join import JOIN_LUA, SWEEP_LUA, comparison_versions
from services.accuracy.metrics import AccuracyMetrics

__all__ = ["AccuracyService", "run"]

log = logging.getLogger("rigwatch.accuracy")

#: Events expired per sweep script call (each call blocks Redis while it runs).
_SWEEP_LIMIT = 5_000


class AccuracyService(WindowedService):
    """Label-time accuracy windows over the prediction/actual join."""

    def __init__(
        self, handler: AccuracyHandler, store: WindowStore, metrics: AccuracyMetrics, **kwargs: Any
    ) -> None:
        super().__init__(store, counters=metrics.stream, extension_args=handler.join_args, **kwargs)
        self.handler, self.metrics = handler, metrics
        self._sweep = store.redis.register_script(SWEEP_LUA)
        self._expiry, self._unlabelled = f"{store.ns}:expiry", f"{store.ns}:unlabelled"

    def checkpointed(self, extension: list[Any]) -> None:
        joined, dup_predictions, dup_actuals = (int(x) for x in extension)
        self.metrics.joined.inc(joined)
        self.metrics.duplicates.labels("prediction").inc(dup_predictions)
        self.metrics.duplicates.labels("actual").inc(dup_actuals)

    def expire(self, watermark: float | None) -> int:
        """Drop join state of events the watermark left behind by the horizon; returns how many."""
        if watermark is None or watermark == float("-inf"):
            return 0
        total = 0
        while True:
            events, unlabelled, orphans = self._sweep(  # type: ignore[misc]
                keys=[self._expiry, self._unlabelled],
                args=[f"{self.store.ns}:", int(watermark), _SWEEP_LIMIT],
            )
            total += int(events)
            self.metrics.unlabelled.inc(int(unlabelled))
            self.metrics.orphans.inc(int(orphans))
            if int(events) < _SWEEP_LIMIT:
                break
        self.metrics.pending.set(self.store.redis.zcard(self._expiry))  # type: ignore[arg-type]
        return total

    def emit(self, now_ms: int, publish: Callable[[Iterable[Output]], None]) -> None:
        self.expire(self.store.watermark(now_ms))
        sealed = self.store.sealed()
        if not sealed:
            return
        counts = self.store.redis.hgetall(self._unlabelled)
        unlabelled = {as_text(k): int(v) for k, v in counts.items()}  # type: ignore[union-attr]
        done, reported = [], set()
        for subject, start in sealed:
            fields, items, late = self.store.read_window(subject, start)
            if comparison_versions(subject) is not None:
                done.append((subject, start, late, 0, self._comparison(subject, start, fields, items)))
                continue
            # Late and expired counts not yet reported go with the subject's first window of this round.
            first = subject not in reported
            reported.add(subject)
            late, expired = (late, unlabelled.get(subject, 0)) if first else (0, 0)
            record = self.handler.window(subject, start, fields, items, late, expired)
            done.append((subject, start, late, expired, record))
        publish(self.window_output(record) for *_, record in done)
        for subject, start, late, expired, record in done:
            self.store.finish(subject, start, late)
            if expired:
                self.store.redis.hincrby(self._unlabelled, subject, -expired)
            gauges = self.metrics.comparisons if record["kind"] == "comparison" else self.metrics.windows
            gauges.observe(record)

    def _comparison(
        self, subject: str, start: int, fields: dict[bytes, bytes], items: list[bytes]
    ) -> dict[str, object]:
        """The comparison window's record, its counts first added to the pair's cumulative."""
        counted = self.handler.window_counts(fields, items)
        key = f"{self.store.ns}:compared:{subject}"
        # Keyed by window: written again after a crash, it replaces itself.
        self.store.redis.hset(key, str(start), json.dumps(counted))
        cumulative = [json.loads(v) for v in self.store.redis.hvals(key)]  # type: ignore[union-attr]
        return self.handler.comparison(subject, start, counted, cumulative)


def run(settings: Settings, config: AccuracySettings, stop: StopFlag) -> int:
    """Run one accuracy worker until *stop*; the batch in hand is checkpointed, then 0 is returned."""
    ends = endpoints(settings)
    topics = settings.topics
    model = ModelPackage.load(config.model_dir or settings.model_dir)
    codecs = Codecs.load()
    metrics = AccuracyMetrics()
    with ExitStack() as stack:
        store = window_store(ends.redis_url, config, settings.topic_prefix, extension=JOIN_LUA)
        handler = AccuracyHandler(
            codecs.prediction,
            codecs.actual,
            model.classes,
            model.calibration,
            namespace=store.ns,
            size_ms=config.window_ms,
            horizon_ms=config.horizon_ms,
            min_count=config.min_count,
            compare_alpha=config.compare_alpha,
            compare_min_pairs=config.compare_min_pairs,
        )
        service = AccuracyService(
            handler,
            store,
            metrics,
            inputs={
                topics.predictions: lambda b: handler.predictions(b.values, b.sources),
                # A challenger's, and the champion's where a canary served: per version, like the others.
                topics.predictions_shadow: lambda b: handler.predictions(b.values, b.sources),
                topics.actuals: lambda b: handler.actuals(b.values, b.sources),
            },
            metrics_topic=topics.metrics,
            window_codec=codecs.metric_window,
        )
        stack.callback(service.close)
        about = (
            f"accuracy of {model.name} {model.version}: {topics.predictions} + {topics.actuals}"
            f" -> {topics.metrics}, {config.window_ms} ms windows in label time,"
            f" horizon {config.horizon_ms} ms"
        )
        return run_service(
            stack,
            service,
            config,
            name="accuracy",
            about=about,
            bootstrap=ends.bootstrap,
            stop=stop,
            registry=metrics.registry,
            roles=LONG_POLL,
            checkpoint_ms=config.checkpoint_ms,
            checkpoint_records=config.checkpoint_records,
            tick_ms=config.close_interval_ms,
        )
