"""Alerts entrypoint: rig.metrics in, Alert transitions on rig.alerts, alert state in Redis.

Per batch of MetricWindows, in this order:

1. alerts left in an outbox by a crash are published first;
2. the engine turns the batch's fresh windows into transitions; the new alert
   states, the last offset per partition and the transitions (into the
   partition's outbox) are written to Redis in one transaction, so a replayed
   window changes nothing and a restart neither re-fires nor forgets an alert;
3. the outbox is published, flushed and emptied; then the input offsets are
   stored. A crash between flush and emptying publishes those records again
   (at-least-once, same ``alert_id`` and state); nothing is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Message
from redis import Redis
from redis.exceptions import RedisError

from rigwatch.codec import Codec
from rigwatch.config import Settings
from rigwatch.exceptions import DecodeError, StackError
from rigwatch.kafka import BatchConsumer, ReliableProducer, StopFlag
from rigwatch.metrics import serve_metrics
from rigwatch.schemas import Codecs
from rigwatch.stack import endpoints
from rigwatch.windowstore import as_text
from services.alerts.config import AlertsSettings
from services.alerts.handler import AlertEngine, AlertState
from services.alerts.metrics import AlertsMetrics
from services.alerts.notify import WebhookNotifier
from services.alerts.rules import RuleSet, load_rules

__all__ = ["AlertStore", "AlertsService", "run"]

log = logging.getLogger("rigwatch.alerts")


def _source(msg: Message) -> str:
    return f"{msg.topic()}/{msg.partition()}"


class AlertStore:
    """Alert states, applied offsets and outboxes of one alerts group in Redis."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self.redis, self.ns = redis, namespace
        self.states_key, self.offsets_key = f"{namespace}:states", f"{namespace}:offsets"

    def outbox(self, source: str) -> str:
        """The outbox list of alerts caused by windows of *source* (``topic/partition``)."""
        return f"{self.ns}:outbox:{source}"

    def states(self) -> dict[str, AlertState]:
        """Every alert's state (a few per rule and subject: small)."""
        return {as_text(k): AlertState.loads(v) for k, v in self.redis.hgetall(self.states_key).items()}

    def applied(self) -> dict[str, int]:
        """Last offset applied per source."""
        return {as_text(k): int(v) for k, v in self.redis.hgetall(self.offsets_key).items()}

    def commit(
        self, states: dict[str, AlertState], offsets: dict[str, int], outboxes: dict[str, list[bytes]]
    ) -> None:
        """Write states, offsets and outboxed alerts in one transaction."""
        pipe = self.redis.pipeline(transaction=True)
        if states:
            pipe.hset(self.states_key, mapping={k: s.dumps() for k, s in states.items()})
        if offsets:
            pipe.hset(self.offsets_key, mapping=offsets)  # type: ignore[arg-type]
        for source, records in outboxes.items():
            if records:
                pipe.rpush(self.outbox(source), *records)
        pipe.execute()


class AlertsService:
    """The I/O around :class:`AlertEngine`: decode, exactly-once state, publish, notify, metrics."""

    def __init__(
        self,
        engine: AlertEngine,
        store: AlertStore,
        windows: Codec,
        alerts: Codec,
        producer: ReliableProducer,
        alerts_topic: str,
        metrics: AlertsMetrics,
        notifier: WebhookNotifier | None = None,
    ) -> None:
        self.engine, self.store, self.windows, self.alerts = engine, store, windows, alerts
        self.producer, self.alerts_topic, self.metrics, self.notifier = (
            producer,
            alerts_topic,
            metrics,
            notifier,
        )

    def handle(self, batch: Sequence[Message]) -> list[dict[str, Any]]:
        """Evaluate one batch of MetricWindow records; returns the alerts published."""
        sources = sorted({_source(m) for m in batch})
        self.publish(sources)  # what a crash left behind, before anything new
        applied = self.store.applied()
        states = self.store.states()
        offsets: dict[str, int] = {}
        outboxes: dict[str, list[bytes]] = {}
        touched: dict[str, AlertState] = {}
        published = []
        for msg in batch:
            source, offset = _source(msg), int(msg.offset())  # type: ignore[arg-type]
            if offset <= applied.get(source, -1):
                continue  # applied before a crash: its transitions are already out
            offsets[source] = offset
            try:
                window = self.windows.decode(msg.value())
            except DecodeError as exc:
                log.warning("%s offset %d: %s", source, offset, exc)
                self.metrics.undecodable.inc()
                continue
            self.metrics.windows.labels(window["kind"]).inc()
            before = {k: s.dumps() for k, s in states.items()}
            for alert in self.engine.evaluate(window, states):
                outboxes.setdefault(source, []).append(self.alerts.encode(alert))
                published.append(alert)
            touched |= {k: s for k, s in states.items() if before.get(k) != s.dumps()}
        self.store.commit(touched, offsets, outboxes)
        self.publish(list(outboxes))
        for alert in published:
            self.metrics.published.labels(alert["rule"], alert["state"]).inc()
            if self.notifier is not None:
                self.notifier.send(alert)
        self.metrics.set_active(states.items())
        return published

    def publish(self, sources: Sequence[str]) -> int:
        """Produce the outboxes of *sources*, flush, then empty them; returns the records sent."""
        sent = []
        for source in sources:
            records: list[bytes] = self.store.redis.lrange(self.store.outbox(source), 0, -1)  # type: ignore[assignment]
            for value in records:
                alert = self.alerts.decode(value)
                self.producer.produce(self.alerts_topic, value, key=alert["alert_id"])
            if records:
                sent.append((source, len(records)))
        if not sent:
            return 0
        self.producer.flush()
        pipe = self.store.redis.pipeline(transaction=True)
        for source, n in sent:
            pipe.ltrim(self.store.outbox(source), n, -1)
        pipe.execute()
        return sum(n for _, n in sent)


def namespace(settings: Settings, config: AlertsSettings) -> str:
    """Redis key prefix of one alerts group on one deployment's topics."""
    return f"rigwatch:{config.group}:{settings.topic_prefix}"


def active_alerts(settings: Settings, config: AlertsSettings) -> list[dict[str, Any]]:
    """The alerts firing now (their last published record), most severe first."""
    url = endpoints(settings).redis_url
    redis = Redis.from_url(url)
    try:
        states = AlertStore(redis, namespace(settings, config)).states()
    except RedisError as exc:
        raise StackError(f"alert state in Redis at {url}: {exc}") from exc
    finally:
        redis.close()
    active = [s.last for s in states.values() if s.severity != "ok" and s.last is not None]
    return sorted(active, key=lambda a: (a["severity"] != "critical", -a["window_end"], a["alert_id"]))


def run(settings: Settings, config: AlertsSettings, stop: StopFlag, rules: RuleSet | None = None) -> int:
    """Evaluate windows until *stop*; finish the batch in hand, commit and return 0."""
    ends = endpoints(settings)
    topics = settings.topics
    rules = rules or load_rules(config.rules_file)
    codecs = Codecs.load()
    metrics = AlertsMetrics()
    redis = Redis.from_url(ends.redis_url)
    notifier = (
        WebhookNotifier(rules.webhook, on_failure=metrics.webhook_failures.inc) if rules.webhook else None
    )
    store = AlertStore(redis, namespace(settings, config))
    service = AlertsService(
        AlertEngine(rules.rules),
        store,
        codecs.metric_window,
        codecs.alert,
        ReliableProducer(ends.bootstrap),
        topics.alerts,
        metrics,
        notifier,
    )
    metrics.set_active(store.states().items())
    port = serve_metrics(metrics.registry, config.metrics_port, config.metrics_host)
    log.info(
        "alerts: %s -> %s with %d rules from %s%s, metrics port %s",
        topics.metrics,
        topics.alerts,
        len(rules.rules),
        rules.source,
        f", webhook {rules.webhook.url}" if rules.webhook else "",
        port,
    )
    consumer = BatchConsumer(ends.bootstrap, config.group, [topics.metrics])
    try:
        for batch in consumer.batches(
            stop, max_messages=config.batch_max, timeout=config.batch_timeout_ms / 1000
        ):
            service.handle(batch)
            consumer.store(batch)
    finally:
        consumer.close()
        if notifier is not None:
            notifier.close()
        redis.close()
    log.info("stopped after committing the last batch")
    return 0
