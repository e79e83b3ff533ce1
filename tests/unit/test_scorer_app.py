"""The scorer's batch step: offsets are stored only after the outputs are acknowledged."""

from __future__ import annotations

import pytest

from rigwatch.config import Topics
from rigwatch.data import SENSOR_COLUMNS
from rigwatch.exceptions import DeliveryError
from rigwatch.schemas import Codecs
from services.scorer.app import handle_batch
from services.scorer.handler import Scorer
from services.scorer.metrics import ScorerMetrics
from tests.unit.test_scorer_handler import FixedModel


class FakeMessage:
    def __init__(self, value: bytes, offset: int) -> None:
        self._value, self._offset = value, offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return b"rig-000"

    def topic(self) -> str:
        return "rig.sensor-readings"

    def partition(self) -> int:
        return 2

    def offset(self) -> int:
        return self._offset


class Recorder:
    """Producer and consumer in one, writing down the order of calls."""

    def __init__(self, fail_flush: bool = False) -> None:
        self.calls: list[tuple] = []
        self.fail_flush = fail_flush

    def produce(self, topic, value, key=None, headers=None, timestamp_ms=0) -> None:
        self.calls.append(("produce", topic, dict(headers or [])))

    def flush(self) -> None:
        self.calls.append(("flush",))
        if self.fail_flush:
            raise DeliveryError("broker said no")

    def store(self, batch) -> None:
        self.calls.append(("store", [m.offset() for m in batch]))


def _batch() -> list[FakeMessage]:
    codec = Codecs.load().sensor_reading
    good = {"event_id": "e", "rig_id": "rig-000", "cycle": 1, "event_time": 5}
    good |= dict.fromkeys(SENSOR_COLUMNS, 1.0)
    return [FakeMessage(codec.encode(good), 40), FakeMessage(b"junk", 41)]


@pytest.fixture
def scorer() -> Scorer:
    codecs = Codecs.load()
    return Scorer(FixedModel(), codecs.sensor_reading, codecs.prediction)


def test_offsets_are_stored_after_the_flush(scorer) -> None:
    io = Recorder()
    handle_batch(_batch(), scorer, io, io, Topics("rig."), ScorerMetrics())
    kinds = [c[0] for c in io.calls]
    assert kinds == ["produce", "produce", "flush", "store"]
    assert io.calls[0][1] == "rig.predictions"
    topic, headers = io.calls[1][1], io.calls[1][2]
    assert topic == "rig.sensor-readings.dlq"
    assert headers["error"] == "not_single_object"
    assert (headers["source_topic"], headers["source_partition"], headers["source_offset"]) == (
        "rig.sensor-readings",
        "2",
        "41",
    )
    assert io.calls[-1] == ("store", [40, 41])


def test_a_failed_flush_stores_no_offset(scorer) -> None:
    io = Recorder(fail_flush=True)
    metrics = ScorerMetrics()
    with pytest.raises(DeliveryError):
        handle_batch(_batch(), scorer, io, io, Topics("rig."), metrics)
    assert not any(c[0] == "store" for c in io.calls)
    assert metrics.events_in._value.get() == 0
