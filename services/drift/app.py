"""Drift entrypoint: wires the model profile, Redis windows and metrics around :class:`DriftHandler`.

Readings and predictions are counted into the shared windows by the runtime
(:mod:`rigwatch.runtime.windowed`); here is only what drift adds at emission:
each subject's change detectors, loaded before its first window of a round and
saved with each window it finishes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from typing import Any

from redis import Redis

from rigwatch.config import Settings
from rigwatch.drift.profile import DriftProfile
from rigwatch.kafka import StopFlag
from rigwatch.metrics import serve_metrics
from rigwatch.model import ModelPackage
from rigwatch.runtime.loop import LONG_POLL, Runtime, RuntimeMetrics
from rigwatch.runtime.records import Output
from rigwatch.runtime.windowed import WindowedService
from rigwatch.schemas import Codecs
from rigwatch.stack import endpoints
from rigwatch.windowing import namespace
from rigwatch.windowstore import WindowStore
from services.drift.config import DriftSettings
from services.drift.handler import DriftHandler
from services.drift.metrics import DriftMetrics

__all__ = ["DriftService", "run"]

log = logging.getLogger("rigwatch.drift")


class DriftService(WindowedService):
    """Drift windows: counted by the runtime, evaluated by :class:`DriftHandler` at emission."""

    def __init__(
        self, handler: DriftHandler, store: WindowStore, metrics: DriftMetrics, **kwargs: Any
    ) -> None:
        super().__init__(store, counters=metrics.stream, **kwargs)
        self.handler, self.metrics = handler, metrics

    def emit(self, now_ms: int, publish: Callable[[Iterable[Output]], None]) -> None:
        sealed = self.store.sealed()
        if not sealed:
            return
        detectors: dict[str, Any] = {}
        done = []
        for subject, start in sealed:
            first_of_subject = subject not in detectors
            if first_of_subject:
                detectors[subject] = self.handler.load_detectors(self.store.load_state(subject))
            fields, late = self.store.read(subject, start)
            # Late records not yet reported go with the subject's first window of this round only.
            late = late if first_of_subject else 0
            record = self.handler.window(subject, start, fields, late, detectors[subject])
            # State as of this window: a crash before its finish() re-emits it from here.
            done.append((subject, start, late, self.handler.dump_detectors(detectors[subject]), record))
        publish(self.window_output(record) for *_, record in done)
        for subject, start, late, state, record in done:
            self.store.finish(subject, start, late, (subject, state))
            self.metrics.observe_window(record, self.handler.profile.features)


def run(settings: Settings, config: DriftSettings, stop: StopFlag) -> int:
    """Run one drift worker until *stop*; the batch in hand is checkpointed, then 0 is returned."""
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
    metrics = DriftMetrics()
    metrics.model.info({"name": model.name, "version": model.version})
    with ExitStack() as stack:
        store = WindowStore(
            Redis.from_url(ends.redis_url, socket_timeout=5, socket_connect_timeout=2),
            namespace(config.group, settings.topic_prefix),
            size_ms=config.window_ms,
            lateness_ms=config.lateness_ms,
            idle_ms=config.idle_ms,
        )
        service = DriftService(
            handler,
            store,
            metrics,
            inputs={
                topics.sensor_readings: lambda b: handler.readings(b.values, b.sources),
                topics.predictions: lambda b: handler.predictions(b.values, b.sources),
            },
            metrics_topic=topics.metrics,
            window_codec=codecs.metric_window,
        )
        stack.callback(service.close)
        port = serve_metrics(metrics.registry, config.metrics_port, config.metrics_host, stack)
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
        runtime = Runtime(
            service,
            bootstrap=ends.bootstrap,
            group=config.group,
            stop=stop,
            metrics=RuntimeMetrics(metrics.registry, "drift"),
            roles=LONG_POLL,
            batch_max=config.batch_max,
            poll_timeout_ms=config.batch_timeout_ms,
            checkpoint_ms=config.checkpoint_ms,
            tick_ms=config.close_interval_ms,
        )
        return runtime.run(stack)
