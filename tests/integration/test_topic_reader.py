"""Reading "from now on" works on the local broker, whose end offsets are wrong."""

from __future__ import annotations

import time

import pytest

from rigwatch.kafka import ReliableProducer, TopicReader

pytestmark = pytest.mark.integration


def test_reader_from_now_sees_only_new_records(settings) -> None:
    topic = settings.topics.sensor_readings
    producer = ReliableProducer(settings.bootstrap)
    for i in range(50):
        producer.produce(topic, b"old-%d" % i, key=f"k{i % 7}")
    producer.flush()
    time.sleep(0.01)  # timestamps are milliseconds: the new records must be strictly later

    with TopicReader(settings.bootstrap, [topic], since_ms=int(time.time() * 1000)) as reader:
        for i in range(5):
            producer.produce(topic, b"new-%d" % i, key=f"k{i}")
        producer.flush()
        seen: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(seen) < 5 and time.monotonic() < deadline:
            seen += [m.value() for m in reader.poll(0.1)]
        settle = time.monotonic() + 1.0
        while time.monotonic() < settle:
            seen += [m.value() for m in reader.poll(0.1)]
    assert sorted(seen) == [b"new-%d" % i for i in range(5)]


def test_reader_from_beginning_sees_everything(settings) -> None:
    topic = settings.topics.actuals
    producer = ReliableProducer(settings.bootstrap)
    for i in range(30):
        producer.produce(topic, b"%d" % i, key=f"k{i % 5}")
    producer.flush()
    with TopicReader(settings.bootstrap, [topic]) as reader:
        seen: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(seen) < 30 and time.monotonic() < deadline:
            seen += [m.value() for m in reader.poll(0.1)]
    assert sorted(seen, key=int) == [b"%d" % i for i in range(30)]
