"""The scorer service: predictions for good readings, DLQ records naming where a bad one came from;
a canary's share of rigs served by the challenger, a shadow scorer serving nobody."""

from __future__ import annotations

import pytest

from rigwatch.config import Topics
from rigwatch.data import SENSOR_COLUMNS
from rigwatch.runtime.records import Batch
from rigwatch.schemas import Codecs
from services.scorer.app import ScorerService
from services.scorer.follow import Serving, in_canary
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
        Serving(Scorer(FixedModel(), codecs.sensor_reading, codecs.prediction)),
        Topics("rig."),
        ScorerMetrics(),
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


class OtherModel(FixedModel):
    version = "v-challenger"


def _rigs_batch(n_rigs: int = 40) -> Batch:
    """One reading per rig, and a junk record from a canary rig."""
    codec = Codecs.load().sensor_reading
    topic = "rig.sensor-readings"
    keys = [f"rig-{i:03d}".encode() for i in range(n_rigs)]
    values = []
    for i, key in enumerate(keys):
        reading = {"event_id": f"e{i}", "rig_id": key.decode(), "cycle": i, "event_time": 5}
        values.append(codec.encode(reading | dict.fromkeys(SENSOR_COLUMNS, 1.0)))
    junk_key = next(k for k in keys if in_canary(k, 50.0))
    return Batch(
        topic,
        [*values, b"junk"],
        [f"{topic}/0"] * (n_rigs + 1),
        list(range(n_rigs + 1)),
        [*keys, junk_key],
        [0] * (n_rigs + 1),
        [[]] * (n_rigs + 1),
    )


def test_a_canary_serves_its_rigs_with_the_challenger_and_pairs_them_with_the_champion_on_shadow() -> None:
    codecs = Codecs.load()
    champion = Scorer(FixedModel(), codecs.sensor_reading, codecs.prediction, role="champion")
    challenger = Scorer(OtherModel(), codecs.sensor_reading, codecs.prediction, role="challenger")
    service = ScorerService(Serving(champion, challenger, 50.0), Topics("rig."), ScorerMetrics())
    batch = _rigs_batch()
    outputs = list(service.on_batch(batch))

    decode = codecs.prediction.decode
    served = [decode(o.value) for o in outputs if o.topic == "rig.predictions"]
    shadow = [decode(o.value) for o in outputs if o.topic == "rig.predictions.shadow"]
    canary = {k.decode() for k in batch.keys[:-1] if in_canary(k, 50.0)}
    assert 0 < len(canary) < 40
    # Exactly one served prediction per reading: the canary rigs' by the challenger.
    assert sorted(p["event_id"] for p in served) == sorted(f"e{i}" for i in range(40))
    for p in served:
        expected = ("v-challenger", "challenger") if p["rig_id"] in canary else ("v-test", "champion")
        assert (p["model_version"], p["role"]) == expected
    # The champion on exactly the canary's readings, never served.
    assert sorted(p["rig_id"] for p in shadow) == sorted(canary)
    assert {(p["model_version"], p["role"]) for p in shadow} == {("v-test", "champion")}
    # The junk record from a canary rig: one DLQ record, from the model that serves it.
    dlq = [o for o in outputs if o.topic == "rig.sensor-readings.dlq"]
    assert len(dlq) == 1 and dict(dlq[0].headers)["model_version"] == "v-challenger"
    assert dict(dlq[0].headers)["source_offset"] == "40"


def test_a_shadow_scorer_writes_only_to_the_shadow_topic_and_idles_without_a_challenger() -> None:
    codecs = Codecs.load()
    challenger = Scorer(OtherModel(), codecs.sensor_reading, codecs.prediction, role="challenger")
    service = ScorerService(Serving(challenger), Topics("rig."), ScorerMetrics(), shadow=True)
    outputs = list(service.on_batch(_rigs_batch()))
    assert {o.topic for o in outputs} == {"rig.predictions.shadow"}
    assert len(outputs) == 40  # the junk record goes to the DLQ from the champion's scorers only

    idle = ScorerService(Serving(None), Topics("rig."), ScorerMetrics(), shadow=True)
    assert list(idle.on_batch(_rigs_batch())) == []
    assert idle.metrics.events_in._value.get() == 41
