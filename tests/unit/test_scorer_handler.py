from __future__ import annotations

import math

import numpy as np
import pytest

from rigwatch.codec import MARKER
from rigwatch.data import FEATURES, SENSOR_COLUMNS
from rigwatch.schemas import Codecs
from services.scorer.handler import Scorer, feature_matrix


class FixedModel:
    """Pure-logic stand-in: probability of class "100" grows with tsb_temp."""

    name = "fixed"
    version = "v-test"
    features = FEATURES
    classes = ("3", "20", "100")

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.seen.append(x)
        hot = 1 / (1 + np.exp(-(x[:, FEATURES.index("tsb_temp")] - 40)))
        hot = np.nan_to_num(hot, nan=0.5)
        return np.stack([(1 - hot) / 2, (1 - hot) / 2, hot], axis=1)


def _reading(event_id: str = "e1", rig_id: str = "rig-000", **sensors: float | None) -> dict:
    record = {"event_id": event_id, "rig_id": rig_id, "cycle": 7, "event_time": 1000}
    record |= {name: 10.0 for name in SENSOR_COLUMNS}
    return record | sensors


@pytest.fixture
def codecs() -> Codecs:
    return Codecs.load()


@pytest.fixture
def model() -> FixedModel:
    return FixedModel()


@pytest.fixture
def scorer(codecs, model) -> Scorer:
    return Scorer(model, codecs.sensor_reading, codecs.prediction)


def _predictions(codecs, scored) -> list[dict]:
    return [codecs.prediction.decode(value) for _, value in scored.outputs]


def test_every_input_is_either_scored_or_rejected(codecs, scorer) -> None:
    encode = codecs.sensor_reading.encode
    values = [
        encode(_reading("a", tsb_temp=60.0)),
        b"not avro",
        encode(_reading("", tsb_temp=60.0)),
        MARKER + b"\xff" * 8 + b"\x00",
        encode(_reading("b", tsb_temp=20.0))[:20],
        encode(_reading("c", tsb_temp=20.0)),
        encode(_reading("d", rig_id="")),
    ]
    scored = scorer.score(values, now_ms=2000)

    assert scored.indices == [0, 5]
    assert [r.index for r in scored.rejects] == [1, 2, 3, 4, 6]
    assert [r.reason for r in scored.rejects] == [
        "not_single_object",
        "missing_field",
        "unknown_schema",
        "bad_body",
        "missing_field",
    ]
    assert "event_id=''" in scored.rejects[1].detail
    assert "rig_id=''" in scored.rejects[4].detail


def test_outputs_follow_input_order_and_are_keyed_by_rig(codecs, scorer) -> None:
    encode = codecs.sensor_reading.encode
    ids = [f"e{i}" for i in range(50)]
    values = [encode(_reading(e, rig_id=f"rig-{i % 3}", tsb_temp=float(i))) for i, e in enumerate(ids)]
    values.insert(10, b"junk")
    scored = scorer.score(values, now_ms=0)

    predictions = _predictions(codecs, scored)
    assert [p["event_id"] for p in predictions] == ids
    assert [key for key, _ in scored.outputs] == [p["rig_id"] for p in predictions]
    assert scored.indices == [i for i in range(51) if i != 10]


def test_prediction_carries_ids_model_and_probabilities(codecs, scorer) -> None:
    scored = scorer.score([codecs.sensor_reading.encode(_reading("a", tsb_temp=60.0))], now_ms=2000)
    (p,) = _predictions(codecs, scored)
    assert (p["event_id"], p["rig_id"], p["cycle"], p["event_time"]) == ("a", "rig-000", 7, 1000)
    assert (p["model_name"], p["model_version"], p["role"]) == ("fixed", "v-test", "champion")
    assert p["predicted_label"] == "100"
    assert p["confidence"] == max(p["probabilities"].values())
    assert math.isclose(sum(p["probabilities"].values()), 1.0)
    assert p["scored_time"] == 2000 and p["flags"] == []


def test_null_and_non_finite_sensors_are_scored_and_flagged(codecs, scorer, model) -> None:
    values = [
        codecs.sensor_reading.encode(_reading("a", tsb_temp=None, psa_bar=float("inf"))),
        codecs.sensor_reading.encode(_reading("b", fsa_vol_flow=float("nan"))),
        codecs.sensor_reading.encode(_reading("c")),
    ]
    scored = scorer.score(values, now_ms=0)

    flags = [p["flags"] for p in _predictions(codecs, scored)]
    assert flags == [["missing:psa_bar", "missing:tsb_temp"], ["missing:fsa_vol_flow"], []]
    x = model.seen[0]
    assert np.isnan(x[0, FEATURES.index("tsb_temp")]) and np.isnan(x[0, FEATURES.index("psa_bar")])
    assert np.isnan(x[1, FEATURES.index("fsa_vol_flow")])
    assert not np.isnan(x[2]).any()


def test_missing_non_feature_sensor_is_not_flagged(codecs, scorer) -> None:
    scored = scorer.score([codecs.sensor_reading.encode(_reading("a", cool_eff_pct=None))], now_ms=0)
    assert _predictions(codecs, scored)[0]["flags"] == []


def test_features_are_float32_in_model_order() -> None:
    doubles = np.arange(34, dtype=np.float64).reshape(2, 17)
    columns = np.array([SENSOR_COLUMNS.index(f) for f in FEATURES])
    x, missing = feature_matrix(doubles, columns)
    assert x.dtype == np.float32 and x.shape == (2, 16)
    assert x[0].tolist() == [float(SENSOR_COLUMNS.index(f)) for f in FEATURES]
    assert not missing.any()


def test_all_rejected_batch_never_calls_the_model(scorer, model) -> None:
    scored = scorer.score([b"x", b"y"], now_ms=0)
    assert len(scored.rejects) == 2 and scored.outputs == [] and model.seen == []


def test_older_writer_schema_is_scored_with_the_new_field_missing(codecs, model) -> None:
    from rigwatch.codec import Codec

    v1 = dict(codecs.sensor_reading.schema)
    v1["fields"] = [f for f in v1["fields"] if f["name"] != "tsb_temp"]
    readings = Codec(codecs.sensor_reading.schema, writers=[v1])
    scorer = Scorer(model, readings, codecs.prediction)
    old = {k: v for k, v in _reading("old").items() if k != "tsb_temp"}
    scored = scorer.score([Codec(v1).encode(old)], now_ms=0)
    assert _predictions(codecs, scored)[0]["flags"] == ["missing:tsb_temp"]


def test_predictions_of_a_batch_share_one_non_negative_processing_ms(codecs, scorer) -> None:
    encode = codecs.sensor_reading.encode
    values = [encode(_reading(f"e{i}", tsb_temp=float(i))) for i in range(20)]
    times = {p["processing_ms"] for p in _predictions(codecs, scorer.score(values, now_ms=0))}
    assert len(times) == 1 and times.pop() >= 0.0


def test_processing_ms_counts_from_when_the_batch_was_taken(codecs, scorer) -> None:
    import time

    taken = time.perf_counter() - 0.25  # the batch came off the consumer 250 ms ago
    before = time.perf_counter()
    scored = scorer.score([codecs.sensor_reading.encode(_reading("a"))], now_ms=0, started=taken)
    elapsed_ms = (time.perf_counter() - taken) * 1000
    (p,) = _predictions(codecs, scored)
    assert (before - taken) * 1000 <= p["processing_ms"] <= elapsed_ms


def test_a_model_failure_rejects_the_batch_as_a_system_error_naming_the_version(codecs, model) -> None:
    class Broken(FixedModel):
        def predict_proba(self, x: np.ndarray) -> np.ndarray:
            raise RuntimeError("booster freed")

    scorer = Scorer(Broken(), codecs.sensor_reading, codecs.prediction)
    values = [b"garbage", codecs.sensor_reading.encode(_reading("ok"))]
    scored = scorer.score(values, now_ms=0)
    assert scored.outputs == []
    assert [(r.index, r.reason) for r in scored.rejects] == [(0, "not_single_object"), (1, "scoring_failed")]
    assert scored.rejects[1].detail == "model v-test raised RuntimeError: booster freed"
