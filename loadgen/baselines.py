"""The benchmark's baselines, each run as its own process like the scorer.

``naive``: the scorer a user writes first — per event: poll one message, decode
it, predict one row, produce one record asynchronously; offsets auto-committed
every 5 s (librdkafka's default). No strawman: no synchronous commit per message.

``passthrough``: the scorer's own batch loop and codec with the model taken out —
decode and re-encode every record. Nothing can score faster than this on the same
machine, so it is the floor the scorer is compared with.

Run as ``python -m loadgen.baselines naive|passthrough``; settings come from the
same ``RIGWATCH_*`` environment as the scorer (group: ``RIGWATCH_SCORER_GROUP``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from contextlib import ExitStack

import numpy as np
from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry

from rigwatch.config import Settings, Topics
from rigwatch.exceptions import DecodeError
from rigwatch.fastcodec import BatchDecoder, compile_encoder
from rigwatch.kafka import StopFlag, client_config
from rigwatch.model import ModelPackage
from rigwatch.runtime.loop import Runtime, RuntimeMetrics, Service
from rigwatch.runtime.records import Batch, Output
from rigwatch.schemas import Codecs
from rigwatch.stack import endpoints
from services.scorer.app import scorer_roles
from services.scorer.config import ScorerSettings

__all__ = ["naive", "passthrough"]


def naive(settings: Settings, scorer: ScorerSettings, stop: StopFlag) -> None:
    """Score one event at a time."""
    bootstrap = endpoints(settings).bootstrap
    topics, codecs = settings.topics, Codecs.load()
    model = ModelPackage.load(scorer.model_dir or settings.model_dir)
    consumer = Consumer(
        client_config(bootstrap, {"auto.offset.reset": "earliest", "session.timeout.ms": 6000})
        | {"group.id": scorer.group}
    )
    producer = Producer(client_config(bootstrap, {"linger.ms": 5}))
    consumer.subscribe([topics.sensor_readings])
    try:
        while not stop:
            msg = consumer.poll(0.1)
            if msg is None or msg.error() is not None:
                continue
            try:
                reading = codecs.sensor_reading.decode(msg.value())
            except DecodeError:
                producer.produce(topics.dlq, msg.value(), key=msg.key())
                continue
            row = [np.nan if reading[f] is None else reading[f] for f in model.features]
            proba = model.predict_proba(np.array([row], dtype=np.float32))[0]
            top = int(proba.argmax())
            prediction = {
                "event_id": reading["event_id"],
                "rig_id": reading["rig_id"],
                "cycle": reading["cycle"],
                "event_time": reading["event_time"],
                "model_name": model.name,
                "model_version": model.version,
                "role": "champion",
                "probabilities": dict(zip(model.classes, proba.tolist(), strict=True)),
                "predicted_label": model.classes[top],
                "confidence": float(proba[top]),
                "scored_time": int(time.time() * 1000),
                "flags": [],
            }
            producer.produce(topics.predictions, codecs.prediction.encode(prediction), key=reading["rig_id"])
            producer.poll(0)
    finally:
        producer.flush(30)
        consumer.close()


class _Passthrough(Service):
    """Decode each reading and re-encode it as the output: the scorer's I/O path without the model."""

    def __init__(self, topics: Topics) -> None:
        codec = Codecs.load().sensor_reading
        self.decoder, self.encode = BatchDecoder(codec), compile_encoder(codec)
        self.topics, self.out = [topics.sensor_readings], topics.predictions

    def on_batch(self, batch: Batch) -> Iterable[Output]:
        columns = self.decoder.decode(batch.values)
        rig_ids = columns.strings["rig_id"]
        return [
            Output(self.out, self.encode(columns.record(row)), rig_ids[row]) for row in range(len(columns))
        ]


def passthrough(settings: Settings, scorer: ScorerSettings, stop: StopFlag) -> None:
    """The scorer's runtime and fast codec without the model: decode and re-encode."""
    with ExitStack() as stack:
        Runtime(
            _Passthrough(settings.topics),
            bootstrap=endpoints(settings).bootstrap,
            group=scorer.group,
            stop=stop,
            metrics=RuntimeMetrics(CollectorRegistry(), "passthrough"),
            roles=scorer_roles(scorer),
            batch_max=scorer.batch_max,
            poll_timeout_ms=scorer.batch_timeout_ms,
            checkpoint_ms=0,
        ).run(stack)


if __name__ == "__main__":
    worker = {"naive": naive, "passthrough": passthrough}[sys.argv[1]]
    worker(Settings(), ScorerSettings(), StopFlag().install())
