"""Scorer humility rules: uncertain, outlying and missing inputs are flagged, overridden or rejected."""

from __future__ import annotations

import re

import numpy as np
import pytest

from rigwatch.config import Topics
from rigwatch.data import FEATURES
from rigwatch.exceptions import ConfigError, ModelError
from rigwatch.runtime.records import Batch
from rigwatch.schemas import Codecs
from services.scorer.app import ScorerService, humility_rules
from services.scorer.config import ScorerSettings
from services.scorer.follow import Serving
from services.scorer.handler import Scorer
from services.scorer.humility import HumilityRules, judge, training_range
from services.scorer.metrics import ScorerMetrics
from tests.unit.test_scorer_handler import FixedModel, _reading

#: Every feature trained on [0, 20] except tsb_temp on [35.3, 58.0]; _reading() sends 10.0.
REFERENCE = {
    "features": {name: {"min": 0.0, "max": 20.0} for name in FEATURES}
    | {"tsb_temp": {"min": 35.3, "max": 58.0}},
}
IN_RANGE = 45.0  # tsb_temp inside its range, and confident: P("100") ~ 0.99


class ProfiledModel(FixedModel):
    """FixedModel with a reference profile holding each feature's training range."""

    def __init__(self, reference: dict | None = None) -> None:
        super().__init__()
        self.reference = REFERENCE if reference is None else reference


@pytest.fixture
def codecs() -> Codecs:
    return Codecs.load()


def _score(codecs, rules: HumilityRules | None, *readings: dict, model=None):
    scorer = Scorer(model or ProfiledModel(), codecs.sensor_reading, codecs.prediction, rules=rules)
    scored = scorer.score([codecs.sensor_reading.encode(r) for r in readings], now_ms=0)
    return scored, [codecs.prediction.decode(value) for _, value in scored.outputs]


def test_feature_beyond_its_training_range_and_margin_is_flagged_outlying(codecs) -> None:
    # Range 35.3..58.0 is 22.7 wide: +- 10 % reaches 33.03..60.27.
    _, (p,) = _score(codecs, HumilityRules(), _reading("a", tsb_temp=61.2))
    assert p["flags"] == ["outlying:tsb_temp"]
    assert p["predicted_label"] == "100"


def test_feature_outside_the_range_but_within_the_margin_is_not_flagged(codecs) -> None:
    # 34.0 is below 40, where the stand-in is unsure; only the outlying rule is under test.
    rules = HumilityRules(uncertain_below=None)
    _, predictions = _score(codecs, rules, _reading("a", tsb_temp=60.0), _reading("b", tsb_temp=34.0))
    assert [p["flags"] for p in predictions] == [[], []]


def test_several_outlying_features_are_flagged_in_model_order(codecs) -> None:
    _, (p,) = _score(
        codecs, HumilityRules(), _reading("a", tsb_temp=IN_RANGE, psb_bar=-5.0, fsb_vol_flow=99.0)
    )
    outlying = [f"outlying:{name}" for name in FEATURES if name in ("psb_bar", "fsb_vol_flow")]
    assert p["flags"] == outlying


def test_confidence_below_the_threshold_is_flagged_uncertain(codecs) -> None:
    # tsb_temp=40: the stand-in gives P("100") = 0.5 and 0.25 to the others.
    rules = HumilityRules(uncertain_below=0.6)
    _, predictions = _score(codecs, rules, _reading("a", tsb_temp=40.0), _reading("b", tsb_temp=IN_RANGE))
    assert [p["flags"] for p in predictions] == [["uncertain"], []]


def test_flags_keep_the_order_missing_outlying_uncertain(codecs) -> None:
    rules = HumilityRules(uncertain_below=0.6)
    _, (p,) = _score(codecs, rules, _reading("a", tsb_temp=None, psb_bar=99.0))
    assert p["flags"] == ["missing:tsb_temp", "outlying:psb_bar", "uncertain"]


def test_default_rules_flag_only(codecs) -> None:
    readings = [
        _reading("a", tsb_temp=None),
        _reading("b", tsb_temp=99.0),
        _reading("c", tsb_temp=40.3),  # confidence 0.57: not uncertain
        _reading("d", tsb_temp=39.0, psb_bar=-50.0),
    ]
    scored, predictions = _score(codecs, None, *readings)
    assert scored.rejects == [] and scored.indices == [0, 1, 2, 3]
    assert [p["predicted_label"] for p in predictions] == ["100", "100", "100", "3"]
    assert [p["flags"] for p in predictions] == [
        ["missing:tsb_temp"],
        ["outlying:tsb_temp"],
        [],
        ["outlying:psb_bar", "uncertain"],
    ]
    assert not any(f.startswith("override:") for p in predictions for f in p["flags"])


def test_missing_input_with_reject_goes_to_the_dlq_as_humility_missing(codecs) -> None:
    rules = HumilityRules(missing_action="reject")
    scored, predictions = _score(
        codecs,
        rules,
        _reading("a", tsb_temp=IN_RANGE),
        _reading("b", psa_bar=None),
        _reading("c", tsb_temp=IN_RANGE),
    )
    assert scored.indices == [0, 2] and [p["event_id"] for p in predictions] == ["a", "c"]
    (reject,) = scored.rejects
    assert (reject.index, reject.reason) == (1, "humility:missing")
    assert reject.detail.startswith("missing: psa_bar")


def test_outlying_reject_names_the_feature_its_value_and_the_range(codecs) -> None:
    scored, predictions = _score(
        codecs, HumilityRules(outlying_action="reject"), _reading("a", tsb_temp=61.2)
    )
    assert predictions == []
    (reject,) = scored.rejects
    assert reject.reason == "humility:outlying"
    assert reject.detail == "outlying: tsb_temp=61.2 outside training range [35.3, 58] +- 10 %"


def test_uncertain_reject_names_the_confidence_and_the_threshold(codecs) -> None:
    scored, _ = _score(
        codecs, HumilityRules(uncertain_below=0.6, uncertain_action="reject"), _reading("a", tsb_temp=40.0)
    )
    (reject,) = scored.rejects
    assert (reject.reason, reject.detail) == ("humility:uncertain", "uncertain: confidence 0.5 below 0.6")


def test_override_emits_the_fallback_label_and_keeps_the_model_probabilities(codecs) -> None:
    rules = HumilityRules(outlying_action="override", fallback_label="3")
    scored, (p,) = _score(codecs, rules, _reading("a", tsb_temp=99.0))
    assert scored.rejects == []
    assert p["predicted_label"] == "3"
    assert p["flags"] == ["outlying:tsb_temp", "override:outlying"]
    # The model's own view stays: its top class and confidence, not the fallback's.
    assert max(p["probabilities"], key=p["probabilities"].get) == "100"
    assert p["confidence"] == p["probabilities"]["100"]


def test_reject_wins_over_override(codecs) -> None:
    rules = HumilityRules(
        uncertain_below=0.6, uncertain_action="override", outlying_action="reject", fallback_label="3"
    )
    scored, predictions = _score(
        codecs, rules, _reading("a", tsb_temp=40.0), _reading("b", tsb_temp=40.0, psb_bar=99.0)
    )
    assert [p["flags"] for p in predictions] == [["uncertain", "override:uncertain"]]
    (reject,) = scored.rejects
    assert (reject.index, reject.reason) == (1, "humility:outlying")
    # A DLQ record carries no flags: the detail also tells what else fired.
    assert reject.detail.startswith("outlying: psb_bar=99") and "uncertain: confidence 0.5" in reject.detail


def test_the_first_rule_names_the_reason_when_several_reject(codecs) -> None:
    rules = HumilityRules(missing_action="reject", outlying_action="reject")
    scored, _ = _score(codecs, rules, _reading("a", tsb_temp=None, psb_bar=99.0))
    assert [r.reason for r in scored.rejects] == ["humility:missing"]


def test_every_input_ends_up_in_exactly_one_of_outputs_or_rejects_in_order(codecs) -> None:
    rules = HumilityRules(outlying_action="reject", missing_action="override", fallback_label="20")
    model = ProfiledModel()
    scorer = Scorer(model, codecs.sensor_reading, codecs.prediction, rules=rules)
    encode = codecs.sensor_reading.encode
    values = [
        encode(_reading("a", tsb_temp=IN_RANGE)),
        encode(_reading("b", tsb_temp=99.0)),
        b"junk",
        encode(_reading("c", psa_bar=None, tsb_temp=IN_RANGE)),
        encode(_reading("d", tsb_temp=0.0)),
        encode(_reading("e", tsb_temp=IN_RANGE)),
    ]
    scored = scorer.score(values, now_ms=0)
    assert scored.indices == [0, 3, 5]
    assert [(r.index, r.reason) for r in scored.rejects] == [
        (1, "humility:outlying"),
        (2, "not_single_object"),
        (4, "humility:outlying"),
    ]
    labels = [codecs.prediction.decode(v)["predicted_label"] for _, v in scored.outputs]
    assert labels == ["100", "20", "100"]


def test_humility_reject_reaches_the_dlq_with_reason_and_detail_headers(codecs) -> None:
    scorer = Scorer(
        ProfiledModel(),
        codecs.sensor_reading,
        codecs.prediction,
        rules=HumilityRules(outlying_action="reject"),
    )
    encode = codecs.sensor_reading.encode
    topic = "rig.sensor-readings"
    batch = Batch(
        topic,
        [encode(_reading("a", tsb_temp=IN_RANGE)), encode(_reading("b", tsb_temp=99.0))],
        [f"{topic}/0"] * 2,
        [1, 2],
        [b"rig-000"] * 2,
        [0, 0],
        [[], []],
    )
    metrics = ScorerMetrics()
    produced = list(ScorerService(Serving(scorer), Topics("rig."), metrics).on_batch(batch))
    assert [out.topic for out in produced] == ["rig.predictions", "rig.sensor-readings.dlq"]
    headers = dict(produced[1].headers)
    assert headers["error"] == "humility:outlying" and headers["source_offset"] == "2"
    assert "tsb_temp=99" in str(headers["error_detail"])
    assert (
        metrics.registry.get_sample_value("rigwatch_scorer_dlq_total", {"reason": "humility:outlying"}) == 1
    )


def test_a_model_without_a_reference_profile_skips_the_outlying_rule(codecs) -> None:
    rules = HumilityRules(outlying_action="reject")
    scored, (p,) = _score(codecs, rules, _reading("a", tsb_temp=1e6), model=FixedModel())
    assert scored.rejects == [] and p["flags"] == []
    scorer = Scorer(FixedModel(), codecs.sensor_reading, codecs.prediction, rules=rules)
    assert scorer.outlying_features == ()


def test_features_without_a_range_in_the_reference_are_not_checked(codecs) -> None:
    model = ProfiledModel({"features": {"tsb_temp": {"min": 35.3, "max": 58.0}}})
    _, (p,) = _score(codecs, HumilityRules(), _reading("a", tsb_temp=99.0, psb_bar=1e6), model=model)
    assert p["flags"] == ["outlying:tsb_temp"]


def test_switched_off_rules_do_not_flag(codecs) -> None:
    rules = HumilityRules(uncertain_below=None, outlying_margin=None)
    _, (p,) = _score(codecs, rules, _reading("a", tsb_temp=0.0, psb_bar=99.0))
    assert p["flags"] == []


def test_zero_margin_flags_anything_past_the_training_range() -> None:
    x = np.array([[58.0], [58.01]], dtype=np.float32)
    low, high = np.array([35.3]), np.array([58.0])
    verdicts = judge(HumilityRules(outlying_margin=0.0), x, np.isnan(x), np.ones(2), low, high, ["tsb_temp"])
    assert verdicts[0] is None
    assert verdicts[1] is not None and verdicts[1].flags == ("outlying:tsb_temp",)


def test_a_clean_batch_gets_no_verdicts() -> None:
    x = np.full((1000, 2), 5.0, dtype=np.float32)
    verdicts = judge(
        HumilityRules(), x, np.zeros(x.shape, bool), np.ones(1000), np.zeros(2), np.full(2, 10.0), ["a", "b"]
    )
    assert verdicts == [None] * 1000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"uncertain_action": "override"},
            "fallback_label=None: required when uncertain_action is 'override'",
        ),
        ({"missing_action": "skip"}, "missing_action='skip': expected one of none, override, reject"),
        ({"outlying_action": "Reject"}, "outlying_action='Reject'"),
        ({"uncertain_below": 1.5}, "uncertain_below=1.5"),
        ({"outlying_margin": -0.1}, "outlying_margin=-0.1"),
        ({"outlying_margin": float("nan")}, "outlying_margin=nan"),
    ],
)
def test_bad_rules_are_config_errors_naming_the_field_and_value(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        HumilityRules(**kwargs)


def test_a_fallback_label_that_is_not_a_class_is_a_config_error(codecs) -> None:
    rules = HumilityRules(outlying_action="override", fallback_label="50")
    with pytest.raises(
        ConfigError, match=r"fallback_label='50': not a class of the model; expected one of 3, 20, 100"
    ):
        Scorer(ProfiledModel(), codecs.sensor_reading, codecs.prediction, rules=rules)


def test_a_non_numeric_training_range_is_a_model_error() -> None:
    with pytest.raises(ModelError, match=r"features.tsb_temp: min='cold'"):
        training_range({"features": {"tsb_temp": {"min": "cold", "max": 58.0}}}, ["tsb_temp"])


def test_settings_build_the_rules_and_an_empty_value_switches_a_rule_off(monkeypatch) -> None:
    monkeypatch.setenv("RIGWATCH_SCORER_UNCERTAIN_BELOW", "")
    monkeypatch.setenv("RIGWATCH_SCORER_OUTLYING_MARGIN", "0.25")
    monkeypatch.setenv("RIGWATCH_SCORER_OUTLYING_ACTION", "override")
    monkeypatch.setenv("RIGWATCH_SCORER_FALLBACK_LABEL", "100")
    rules = humility_rules(ScorerSettings())
    assert rules == HumilityRules(
        uncertain_below=None, outlying_margin=0.25, outlying_action="override", fallback_label="100"
    )


def test_default_settings_give_the_default_rules() -> None:
    assert humility_rules(ScorerSettings()) == HumilityRules()


def test_a_bad_setting_names_the_environment_and_the_field(monkeypatch) -> None:
    monkeypatch.setenv("RIGWATCH_SCORER_MISSING_ACTION", "drop")
    with pytest.raises(ConfigError, match=r"RIGWATCH_SCORER_\*\): missing_action='drop'"):
        humility_rules(ScorerSettings())
