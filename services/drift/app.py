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

from rigwatch.config import Settings
from rigwatch.drift.profile import DriftProfile
from rigwatch.kafka import StopFlag
from rigwatch.model import ModelPackage
from rigwatch.runtime.loop import LONG_POLL, run_service
from rigwatch.runtime.records import Output
from rigwatch.runtime.windowed import WindowedService, window_store
from rigwatch.schemas import Codecs
from rigwatch.stack import endpoints
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
            fields, items, late = self.store.read_window(subject, start)
            # Late records not yet reported go with the subject's first window of this round only.
            late = late if first_of_subject else 0
            record = self.handler.window(subject, start, fields, late, detectors[subject], items)
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
        service = DriftService(
            handler,
            window_store(ends.redis_url, config, settings.topic_prefix),
            metrics,
            inputs={
                topics.sensor_readings: lambda b: handler.readings(b.values, b.sources),
                topics.predictions: lambda b: handler.predictions(b.values, b.sources),
                topics.predictions_shadow: lambda b: handler.predictions(b.values, b.sources),
            },
            metrics_topic=topics.metrics,
            window_codec=codecs.metric_window,
        )
        stack.callback(service.close)
        about = (
            f"drift of {model.name} {model.version}: {topics.sensor_readings} + {topics.predictions}"
            f" -> {topics.metrics}, {config.window_ms} ms windows (lateness {config.lateness_ms} ms)"
        )
        return run_service(
            stack,
            service,
            config,
            name="drift",
            about=about,
            bootstrap=ends.bootstrap,
            stop=stop,
            registry=metrics.registry,
            roles=LONG_POLL,
            checkpoint_ms=config.checkpoint_ms,
            tick_ms=config.close_interval_ms,
        )
