from __future__ import annotations

import math

import numpy as np
import pytest

from rigwatch.codec import MARKER
from rigwatch.data import FEATURES, SENSOR_COLUMNS
from rigwatch.schemas import Codecs
from services.scorer.handler import assemble_features, score_batch


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


def _reading(event_id: str = "e1", **sensors: float | None) -> dict:
    record = {"event_id": event_id, "rig_id": "rig-000", "cycle": 7, "event_time": 1000}
    record |= {name: 10.0 for name in SENSOR_COLUMNS}
    return record | sensors


@pytest.fixture
def codec():
    return Codecs.load().sensor_reading


def test_every_input_is_either_scored_or_rejected(codec) -> None:
    values = [
        codec.encode(_reading("a", tsb_temp=60.0)),
        b"not avro",
        codec.encode(_reading("", tsb_temp=60.0)),
        MARKER + b"\xff" * 8 + b"\x00",
        codec.encode(_reading("b", tsb_temp=20.0))[:20],
        codec.encode(_reading("c", tsb_temp=20.0)),
    ]
    scored = score_batch(values, codec=codec, model=FixedModel(), now_ms=2000)

    assert scored.indices == [0, 5]
    assert [r.index for r in scored.rejects] == [1, 2, 3, 4]
    assert [r.reason for r in scored.rejects] == [
        "not_single_object",
        "missing_field",
        "unknown_schema",
        "bad_body",
    ]
    assert "event_id=''" in scored.rejects[1].detail


def test_prediction_carries_ids_model_and_probabilities(codec) -> None:
    scored = score_batch(
        [codec.encode(_reading("a", tsb_temp=60.0))], codec=codec, model=FixedModel(), now_ms=2000
    )
    (p,) = scored.predictions
    assert (p["event_id"], p["rig_id"], p["cycle"], p["event_time"]) == ("a", "rig-000", 7, 1000)
    assert (p["model_name"], p["model_version"], p["role"]) == ("fixed", "v-test", "champion")
    assert p["predicted_label"] == "100"
    assert p["confidence"] == max(p["probabilities"].values())
    assert math.isclose(sum(p["probabilities"].values()), 1.0)
    assert p["scored_time"] == 2000 and p["flags"] == []
    # The output must be encodable as a Prediction.
    assert Codecs.load().prediction.decode(Codecs.load().prediction.encode(p)) == p


def test_null_and_non_finite_sensors_are_scored_and_flagged(codec) -> None:
    model = FixedModel()
    values = [codec.encode(_reading("a", tsb_temp=None, psa_bar=float("inf")))]
    scored = score_batch(values, codec=codec, model=model, now_ms=0)

    (p,) = scored.predictions
    assert p["flags"] == ["missing:psa_bar", "missing:tsb_temp"]
    assert np.isnan(model.seen[0][0, FEATURES.index("tsb_temp")])
    assert np.isnan(model.seen[0][0, FEATURES.index("psa_bar")])


def test_missing_non_feature_sensor_is_not_flagged(codec) -> None:
    scored = score_batch(
        [codec.encode(_reading("a", cool_eff_pct=None))], codec=codec, model=FixedModel(), now_ms=0
    )
    assert scored.predictions[0]["flags"] == []


def test_features_are_float32_in_model_order() -> None:
    record = {name: float(i) for i, name in enumerate(SENSOR_COLUMNS)}
    x, flags = assemble_features([record, record], FEATURES)
    assert x.dtype == np.float32 and x.shape == (2, 16)
    assert x[0].tolist() == [float(SENSOR_COLUMNS.index(f)) for f in FEATURES]
    assert flags == [[], []]


def test_all_rejected_batch_never_calls_the_model(codec) -> None:
    model = FixedModel()
    scored = score_batch([b"x", b"y"], codec=codec, model=model, now_ms=0)
    assert len(scored.rejects) == 2 and model.seen == []
