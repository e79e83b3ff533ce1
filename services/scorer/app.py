"""Scorer entrypoint: wires Kafka, the model, metrics and shutdown around :class:`Scorer`."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import fields
from typing import Protocol

from confluent_kafka import Message

from rigwatch.config import Settings, Topics
from rigwatch.exceptions import ConfigError
from rigwatch.kafka import BatchConsumer, ReliableProducer, StopFlag
from rigwatch.metrics import serve_metrics
from rigwatch.model import ModelPackage
from rigwatch.schemas import Codecs
from rigwatch.stack import endpoints
from services.scorer.config import ScorerSettings
from services.scorer.handler import Scorer
from services.scorer.humility import HumilityRules
from services.scorer.metrics import ScorerMetrics

__all__ = ["handle_batch", "humility_rules", "run"]

log = logging.getLogger("rigwatch.scorer")


class _Committer(Protocol):
    def store(self, batch: Sequence[Message]) -> None: ...


def handle_batch(
    batch: Sequence[Message],
    scorer: Scorer,
    producer: ReliableProducer,
    consumer: _Committer,
    topics: Topics,
    metrics: ScorerMetrics,
) -> None:
    """Score one batch, produce predictions and DLQ records, flush, then store the offsets.

    A failed flush raises before anything is stored: the batch is consumed again
    after a restart (at-least-once), never lost. The predictions' ``processing_ms``
    counts from *started*, read as this function gets the batch off the consumer.
    """
    started = time.perf_counter()
    now_ms = int(time.time() * 1000)
    scored = scorer.score([msg.value() for msg in batch], now_ms=now_ms, started=started)
    predictions = topics.predictions
    for key, value in scored.outputs:
        producer.produce(predictions, value, key=key)
    for reject in scored.rejects:
        msg = batch[reject.index]
        producer.produce(
            topics.dlq,
            msg.value() or b"",
            key=msg.key(),
            headers=[
                ("error", reject.reason),
                ("error_detail", reject.detail),
                ("source_topic", msg.topic() or ""),
                ("source_partition", str(msg.partition())),
                ("source_offset", str(msg.offset())),
                # Which deployment rejected it: health windows are per model version.
                ("model_version", scorer.model.version),
            ],
            # The batch's scored_time: health windows count a rejected record beside the
            # predictions of the same batch.
            timestamp_ms=now_ms,
        )
        metrics.dlq.labels(reject.reason).inc()
    # Outputs acknowledged first, offsets stored second: a crash replays, never loses.
    producer.flush()
    consumer.store(batch)
    metrics.events_in.inc(len(batch))
    metrics.predictions_out.inc(len(scored.outputs))
    metrics.batch_size.observe(len(batch))
    metrics.batch_seconds.observe(time.perf_counter() - started)


def humility_rules(config: ScorerSettings) -> HumilityRules:
    """The humility rules *config* asks for.

    Raises
    ------
    ConfigError
        A bad rule setting, named as the environment variable that set it.
    """
    try:
        return HumilityRules(**{f.name: getattr(config, f.name) for f in fields(HumilityRules)})
    except ConfigError as exc:
        # The fields are spelled as settings; an operator sets them as RIGWATCH_SCORER_<FIELD>.
        raise ConfigError(f"scorer humility settings (RIGWATCH_SCORER_*): {exc}") from exc


def run(settings: Settings, config: ScorerSettings, stop: StopFlag) -> int:
    """Score until *stop* is set; finish the batch in hand, flush, commit and return 0."""
    ends = endpoints(settings)
    topics = settings.topics
    model = ModelPackage.load(config.model_dir or settings.model_dir)
    codecs = Codecs.load()
    rules = humility_rules(config)
    scorer = Scorer(model, codecs.sensor_reading, codecs.prediction, role=config.role, rules=rules)
    metrics = ScorerMetrics()
    metrics.model.info({"name": model.name, "version": model.version, "role": config.role})
    port = serve_metrics(metrics.registry, config.metrics_port, config.metrics_host)
    log.info(
        "scoring %s -> %s with %s %s (group %s, metrics port %s)",
        topics.sensor_readings,
        topics.predictions,
        model.name,
        model.version,
        config.group,
        port,
    )
    log.info("humility rules: %s", rules.describe())
    if rules.outlying_margin is not None and not scorer.outlying_features:
        # Said once here, or the rule would look on while it can never fire.
        log.warning("outlying rule inactive: model %s has no training ranges in its reference", model.version)
    producer = ReliableProducer(ends.bootstrap, **{"linger.ms": config.linger_ms})
    consumer = BatchConsumer(ends.bootstrap, config.group, [topics.sensor_readings])
    try:
        for batch in consumer.batches(
            stop, max_messages=config.batch_max, timeout=config.batch_timeout_ms / 1000
        ):
            handle_batch(batch, scorer, producer, consumer, topics, metrics)
    finally:
        consumer.close()
    log.info("stopped after committing the last batch")
    return 0
