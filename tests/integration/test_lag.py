"""Consumer lag is exact on the local broker, whose reported end offsets are wrong."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from rigwatch.exceptions import ConfigError
from rigwatch.lag import GroupLag

pytestmark = pytest.mark.integration

PRODUCED = {0: 100, 1: 57, 2: 0, 3: 20}
COMMITTED = {0: 40, 1: 57, 3: 5}  # partition 2 has nothing to commit


def produce(bootstrap: str, topic: str, counts: dict[int, int]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for partition, n in counts.items():
        for i in range(n):
            producer.produce(topic, b"%d" % i, partition=partition)
    assert producer.flush(30) == 0


def consume_and_commit(bootstrap: str, group: str, topic: str) -> None:
    """A real group member reads everything produced, then commits COMMITTED per partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    try:
        seen = 0
        deadline = time.monotonic() + 30
        while seen < sum(PRODUCED.values()) and time.monotonic() < deadline:
            seen += sum(1 for msg in consumer.consume(500, 0.1) if msg.error() is None)
        assert seen == sum(PRODUCED.values())
        consumer.commit(
            offsets=[TopicPartition(topic, p, offset) for p, offset in COMMITTED.items()], asynchronous=False
        )
    finally:
        consumer.close()


def test_fetch_mode_lag_is_exact(settings) -> None:
    topic, group = settings.topics.sensor_readings, f"lag-{uuid.uuid4().hex[:8]}"
    produce(settings.bootstrap, topic, PRODUCED)
    consume_and_commit(settings.bootstrap, group, topic)

    with GroupLag(settings.bootstrap, group, topic, mode="fetch") as lag:
        sample = lag.sample()
        assert sample.committed == COMMITTED
        assert sample.ends == PRODUCED
        assert sample.lag == {0: 60, 1: 0, 2: 0, 3: 15}
        assert (sample.total, sample.max_partition) == (75, 60)

        more = {0: 10, 2: 7}
        produce(settings.bootstrap, topic, more)
        again = lag.sample()
        assert again.ends == {p: n + more.get(p, 0) for p, n in PRODUCED.items()}
        assert again.lag == {p: n + more.get(p, 0) for p, n in sample.lag.items()}
        assert again.total == sample.total + 17

    with GroupLag(settings.bootstrap, f"idle-{uuid.uuid4().hex[:8]}", topic) as idle:
        nothing = idle.sample()
        assert nothing.committed == {}
        assert nothing.lag == again.ends


def test_unknown_topic_is_a_clear_error(settings) -> None:
    missing = f"{settings.topic_prefix}no-such-topic"
    with GroupLag(settings.bootstrap, "g", missing) as lag, pytest.raises(ConfigError, match="no-such-topic"):
        lag.sample()


def test_unknown_mode_names_the_value(settings) -> None:
    with pytest.raises(ValueError, match="'offsets'"):
        GroupLag(settings.bootstrap, "g", settings.topics.actuals, mode="offsets")
