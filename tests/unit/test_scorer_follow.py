"""The pure parts of a scorer following its deployment: which record names the champion, the sample check."""

from __future__ import annotations

import numpy as np
import pytest

from rigwatch.exceptions import RigwatchError
from rigwatch.model import ModelPackage
from services.scorer.follow import _champion, check_scores


def _record(deployment: str, state: str, champion: str, previous: str | None = None) -> dict:
    return {"deployment": deployment, "state": state, "champion": champion, "previous_champion": previous}


def test_the_last_active_record_of_the_deployment_names_the_champion() -> None:
    records = [
        _record("cooler", "active", "v1"),
        _record("other", "active", "x9"),
        _record("cooler", "active", "v2", "v1"),
        _record("cooler", "pending", "v3", "v2"),  # waits for approval: not served
        _record("cooler", "rejected", "v3", "v2"),
    ]
    assert _champion(records, "cooler") == ("v2", "v1")
    assert _champion(records, "other") == ("x9", None)
    assert _champion(records, "absent") == (None, None)


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
