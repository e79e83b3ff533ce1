"""Alerts entrypoint: rig.metrics in, Alert transitions on rig.alerts, alert state in Redis.

The engine's transitions are produced as each batch is evaluated; at the
checkpoint the runtime flushes them, then the changed alert states are written
with the offsets they cover in one atomic call
(:class:`~rigwatch.runtime.checkpoint.HashState`): the same protocol as the
windowed services. A replayed window therefore changes nothing, a restart
neither re-fires nor forgets, and a crash between the flush and the state
write publishes the same transitions again (at-least-once, same ``alert_id``
and state); nothing is lost. Webhooks are sent once the state is written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from rigwatch.codec import Codec
from rigwatch.config import Settings
from rigwatch.exceptions import DecodeError, StackError
from rigwatch.kafka import StopFlag
from rigwatch.runtime.checkpoint import HashState, SourceSpan
from rigwatch.runtime.loop import LONG_POLL, Service, run_service
from rigwatch.runtime.records import Batch, Output
from rigwatch.schemas import Codecs
from rigwatch.stack import endpoints
from rigwatch.windowing import namespace
from services.alerts.config import AlertsSettings
from services.alerts.handler import AlertEngine, AlertState
from services.alerts.metrics import AlertsMetrics
from services.alerts.notify import WebhookNotifier
from services.alerts.rules import RuleSet, load_rules

__all__ = ["AlertsService", "active_alerts", "alert_states", "run"]

log = logging.getLogger("rigwatch.alerts")


def alert_states(state: HashState) -> dict[str, AlertState]:
    """Every alert's stored state (a few per rule and subject: small)."""
    return {k: AlertState.loads(v) for k, v in state.load().items()}


class AlertsService(Service):
    """The I/O around :class:`AlertEngine`: decode, evaluate, transitions out, states checkpointed."""

    stateful = True

    def __init__(
        self,
        engine: AlertEngine,
        state: HashState,
        windows: Codec,
        alerts: Codec,
        alerts_topic: str,
        metrics: AlertsMetrics,
        notifier: WebhookNotifier | None = None,
        topics: Sequence[str] = (),
    ) -> None:
        self.engine, self.state, self.windows, self.alerts = engine, state, windows, alerts
        self.alerts_topic, self.metrics, self.notifier = alerts_topic, metrics, notifier
        self.topics = list(topics)
        self.states: dict[str, AlertState] = {}
        self._changed: set[str] = set()  # alert ids whose state changed since the checkpoint
        self._sent: list[dict[str, Any]] = []
        self._handled = 0

    def on_batch(self, batch: Batch) -> Iterable[Output]:
        outputs = []
        for value, source, offset in zip(batch.values, batch.sources, batch.offsets, strict=True):
            try:
                window = self.windows.decode(value)
            except DecodeError as exc:
                log.warning("%s offset %d: %s", source, offset, exc)
                self.metrics.undecodable.inc()
                continue
            self.metrics.windows.labels(window["kind"]).inc()
            for alert in self.engine.evaluate(window, self.states, self._changed):
                outputs.append(Output(self.alerts_topic, self.alerts.encode(alert), alert["alert_id"]))
                self._sent.append(alert)
        self._handled += len(batch)
        return outputs

    def pending(self) -> int:
        return self._handled

    def checkpoint(self, spans: Sequence[SourceSpan], assigned: Sequence[str]) -> None:
        self.state.checkpoint(spans, {k: self.states[k].dumps().encode() for k in self._changed})
        for alert in self._sent:
            self.metrics.published.labels(alert["rule"], alert["state"]).inc()
            if self.notifier is not None:
                self.notifier.send(alert)
        self.metrics.set_active(self.states.items())
        self._changed, self._sent, self._handled = set(), [], 0

    def resume_offsets(self) -> Mapping[str, int]:
        # States as of the offsets they cover: read together, before the first batch.
        self.states = alert_states(self.state)
        self.metrics.set_active(self.states.items())
        return self.state.resume_offsets()

    def discard(self) -> None:
        self._changed, self._sent, self._handled = set(), [], 0
        self.states = alert_states(self.state)


def active_alerts(settings: Settings, config: AlertsSettings) -> list[dict[str, Any]]:
    """The alerts firing now (their last published record), most severe first."""
    url = endpoints(settings).redis_url
    redis = Redis.from_url(url)
    try:
        states = alert_states(HashState(redis, namespace(config.group, settings.topic_prefix)))
    except RedisError as exc:
        raise StackError(f"alert state in Redis at {url}: {exc}") from exc
    finally:
        redis.close()
    active = [s.last for s in states.values() if s.severity != "ok" and s.last is not None]
    return sorted(active, key=lambda a: (a["severity"] != "critical", -a["window_end"], a["alert_id"]))


def run(settings: Settings, config: AlertsSettings, stop: StopFlag, rules: RuleSet | None = None) -> int:
    """Evaluate windows until *stop*; finish the batch in hand, checkpoint and return 0."""
    ends = endpoints(settings)
    topics = settings.topics
    rules = rules or load_rules(config.rules_file)
    codecs = Codecs.load()
    metrics = AlertsMetrics()
    with ExitStack() as stack:
        redis = Redis.from_url(ends.redis_url, socket_timeout=5, socket_connect_timeout=2)
        stack.callback(redis.close)
        notifier = None
        if rules.webhook:
            notifier = WebhookNotifier(rules.webhook, on_failure=metrics.webhook_failures.inc)
            stack.callback(notifier.close)
        service = AlertsService(
            AlertEngine(rules.rules),
            HashState(redis, namespace(config.group, settings.topic_prefix)),
            codecs.metric_window,
            codecs.alert,
            topics.alerts,
            metrics,
            notifier,
            topics=[topics.metrics],
        )
        about = (
            f"alerts: {topics.metrics} -> {topics.alerts} with {len(rules.rules)} rules from {rules.source}"
            + (f", webhook {rules.webhook.url}" if rules.webhook else "")
        )
        return run_service(
            stack,
            service,
            config,
            name="alerts",
            about=about,
            bootstrap=ends.bootstrap,
            stop=stop,
            registry=metrics.registry,
            roles=LONG_POLL,
            checkpoint_ms=config.checkpoint_ms,
        )
