"""Scorer entrypoint: wires Kafka, the model, metrics and shutdown around :func:`score_batch`."""

from __future__ import annotations

import logging
import time

from rigwatch.config import Settings
from rigwatch.kafka import BatchConsumer, ReliableProducer, StopFlag
from rigwatch.metrics import serve_metrics
from rigwatch.model import ModelPackage
from rigwatch.schemas import Codecs
from rigwatch.stack import endpoints
from services.scorer.config import ScorerSettings
from services.scorer.handler import score_batch
from services.scorer.metrics import ScorerMetrics

__all__ = ["run"]

log = logging.getLogger("rigwatch.scorer")


def run(settings: Settings, scorer: ScorerSettings, stop: StopFlag) -> int:
    """Score until *stop* is set; finish the batch in hand, flush, commit and return 0."""
    ends = endpoints(settings)
    topics = settings.topics
    model = ModelPackage.load(scorer.model_dir or settings.model_dir)
    codecs = Codecs.load()
    metrics = ScorerMetrics()
    metrics.model.info({"name": model.name, "version": model.version, "role": scorer.role})
    port = serve_metrics(metrics.registry, scorer.metrics_port, scorer.metrics_host)
    log.info(
        "scoring %s -> %s with %s %s (group %s, metrics port %s)",
        topics.sensor_readings,
        topics.predictions,
        model.name,
        model.version,
        scorer.group,
        port,
    )
    producer = ReliableProducer(ends.bootstrap, **{"linger.ms": scorer.linger_ms})
    consumer = BatchConsumer(ends.bootstrap, scorer.group, [topics.sensor_readings])
    encode = codecs.prediction.encode
    try:
        for batch in consumer.batches(
            stop, max_messages=scorer.batch_max, timeout=scorer.batch_timeout_ms / 1000
        ):
            started = time.perf_counter()
            scored = score_batch(
                [msg.value() for msg in batch],
                codec=codecs.sensor_reading,
                model=model,
                now_ms=int(time.time() * 1000),
                role=scorer.role,
            )
            for prediction in scored.predictions:
                producer.produce(topics.predictions, encode(prediction), key=prediction["rig_id"])
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
                    ],
                )
                metrics.dlq.labels(reject.reason).inc()
            # Outputs acknowledged first, offsets stored second: a crash replays, never loses.
            producer.flush()
            consumer.store(batch)
            metrics.events_in.inc(len(batch))
            metrics.predictions_out.inc(len(scored.predictions))
            metrics.batch_size.observe(len(batch))
            metrics.batch_seconds.observe(time.perf_counter() - started)
    finally:
        consumer.close()
    log.info("stopped after committing the last batch")
    return 0
