"""The scorer service: predictions for good readings, DLQ records naming where a bad one came from."""

from __future__ import annotations

import pytest

from rigwatch.config import Topics
from rigwatch.data import SENSOR_COLUMNS
from rigwatch.runtime.records import Batch
from rigwatch.schemas import Codecs
from services.scorer.app import ScorerService
from services.scorer.handler import Scorer
from services.scorer.metrics import ScorerMetrics
from tests.unit.test_scorer_handler import FixedModel


def _batch() -> Batch:
    codec = Codecs.load().sensor_reading
    good = {"event_id": "e", "rig_id": "rig-000", "cycle": 1, "event_time": 5}
    good |= dict.fromkeys(SENSOR_COLUMNS, 1.0)
    topic = "rig.sensor-readings"
    return Batch(
        topic,
        [codec.encode(good), b"junk"],
        [f"{topic}/2", f"{topic}/2"],
        [40, 41],
        [b"rig-000", b"rig-000"],
        [0, 0],
        [[], []],
    )


@pytest.fixture
def service() -> ScorerService:
    codecs = Codecs.load()
    return ScorerService(
        Scorer(FixedModel(), codecs.sensor_reading, codecs.prediction), Topics("rig."), ScorerMetrics()
    )


def test_good_readings_become_predictions_keyed_by_rig(service: ScorerService) -> None:
    outputs = list(service.on_batch(_batch()))
    assert [o.topic for o in outputs] == ["rig.predictions", "rig.sensor-readings.dlq"]
    assert outputs[0].key == "rig-000"
    assert Codecs.load().prediction.decode(outputs[0].value)["event_id"] == "e"


def test_bad_record_goes_to_dlq_with_reason_and_source(service: ScorerService) -> None:
    dlq = list(service.on_batch(_batch()))[1]
    headers = dict(dlq.headers)
    assert dlq.value == b"junk" and dlq.key == b"rig-000"
    assert headers["error"] == "not_single_object"
    assert (headers["source_topic"], headers["source_partition"], headers["source_offset"]) == (
        "rig.sensor-readings",
        "2",
        "41",
    )
    assert dlq.timestamp_ms > 0, "stamped with the batch's scored time"
    assert service.metrics.dlq.labels("not_single_object")._value.get() == 1
    assert service.metrics.events_in._value.get() == 2
