"""Reading a control topic whole: from its beginning to its end, without a consumer group."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from rigwatch.codec import Codec
from rigwatch.config import Settings
from rigwatch.exceptions import DecodeError, StackError
from rigwatch.kafka import groupless_consumer
from rigwatch.stack import StackState

log = logging.getLogger("rigwatch.lifecycle")

#: How long reading a control topic to its end may take.
READ_TIMEOUT_S = 30.0


def bootstrap_of(settings: Settings) -> str:
    """The broker: ``RIGWATCH_BOOTSTRAP``, else the running local stack's (no Redis needed)."""
    if settings.bootstrap:
        return settings.bootstrap
    state = StackState.read(settings.run_dir)
    if state is None:
        raise StackError(
            "no broker configured: run `rigwatch stack up` (or `make demo`), or set RIGWATCH_BOOTSTRAP"
        )
    return state.bootstrap


def read_all(
    bootstrap: str, topic: str, codec: Codec, *, timeout_s: float = READ_TIMEOUT_S
) -> list[dict[str, Any]]:
    """Every record of *topic*, decoded, in offset order (partition by partition).

    The end is each partition's end-of-partition event, which rests on the high
    watermark of fetch responses (right on the local broker too, unlike its
    ListOffsets). Tombstones and records that do not decode are logged and left out.

    Raises
    ------
    StackError
        The topic does not exist, or its end was not reached within *timeout_s*.
    """
    consumer = groupless_consumer(bootstrap, "control-read", partition_eof=True)
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        if metadata.error is not None:
            raise StackError(f"topic {topic}: {metadata.error.str()}; `rigwatch stack up` creates it")
        partitions = sorted(metadata.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        by_partition: dict[int, list[dict[str, Any]]] = {p: [] for p in partitions}
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(partitions):
            if time.monotonic() > deadline:
                raise StackError(f"{topic}: its end was not reached within {timeout_s:.0f} s")
            for msg in consumer.consume(500, 0.2):
                err, partition = msg.error(), msg.partition()
                assert partition is not None  # a fetched record or partition event has one
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(partition)
                    continue
                at_end.discard(partition)
                value = msg.value()
                if value is None:
                    continue
                try:
                    by_partition[partition].append(codec.decode(value))
                except DecodeError as exc:
                    log.warning("%s: offset %d left out: %s", topic, msg.offset(), exc)
    finally:
        consumer.close()
    return [record for p in partitions for record in by_partition[p]]
