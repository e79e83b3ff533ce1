"""The pure parts of a scorer following its deployment: what the records say it serves, the sample check."""

from __future__ import annotations

import numpy as np
import pytest

from rigwatch.exceptions import RigwatchError
from rigwatch.lifecycle.deployments import current
from rigwatch.model import ModelPackage
from services.scorer.follow import Plan, check_scores, plan_of


def _record(deployment: str, state: str, champion: str, previous: str | None = None, **challenge) -> dict:
    record = {"deployment": deployment, "state": state, "champion": champion, "previous_champion": previous}
    return record | {"challenger": None, "challenger_mode": None, "challenger_percent": None} | challenge


def _plans(records: list[dict], name: str) -> tuple[Plan, Plan]:
    state = current(records).get(name)
    return plan_of(state, shadow=False), plan_of(state, shadow=True)


def test_the_last_active_record_of_the_deployment_says_what_each_scorer_serves() -> None:
    records = [
        _record("cooler", "active", "v1"),
        _record("other", "active", "x9"),
        _record("cooler", "active", "v2", "v1"),
        _record("cooler", "pending", "v3", "v2"),  # waits for approval: not served
        _record("cooler", "rejected", "v3", "v2"),
    ]
    assert _plans(records, "cooler") == (Plan("v2", warm="v1"), Plan(None))
    assert _plans(records, "other") == (Plan("x9"), Plan(None))
    assert _plans(records, "absent") == (Plan(None), Plan(None))

    shadow = _record("cooler", "active", "v2", "v1", challenger="v4", challenger_mode="shadow")
    assert _plans([*records, shadow], "cooler") == (Plan("v2", warm="v1"), Plan("v4"))
    canary = shadow | {"challenger_mode": "canary", "challenger_percent": 20.0}
    assert _plans([*records, canary], "cooler") == (Plan("v2", "v4", 20.0, warm="v1"), Plan(None))


def test_a_model_that_scores_a_sample_passes_the_check(real_model: ModelPackage) -> None:
    check_scores(real_model)


class _Broken:
    """A package whose model answers with the wrong shape (e.g. trained for two classes)."""

    def __init__(self, package: ModelPackage, proba: np.ndarray) -> None:
        self.version, self.features, self.classes = package.version, package.features, package.classes
        self.reference, self._proba = package.reference, proba

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self._proba


@pytest.mark.parametrize(
    ("proba", "message"),
    [
        (np.array([[0.5, 0.5]]), "a sample scored"),
        (np.array([[np.nan, 0.5, 0.5]]), "a sample scored"),
        (np.array([[0.5, 0.5, 0.5]]), "sum to 1.5"),
    ],
)
def test_a_model_that_scores_a_sample_wrongly_is_refused(real_model, proba, message) -> None:
    with pytest.raises(RigwatchError, match=message):
        check_scores(_Broken(real_model, proba))  # type: ignore[arg-type]
