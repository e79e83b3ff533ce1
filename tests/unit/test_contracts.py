"""One contract for every stateful window and statistic class (STYLE.md, after river's checks).

State goes to Redis or a changelog, so it must pickle and come back equal in behaviour;
public classes say what they are; no mutable default arguments. Add each new window,
sketch or detector class to ``INSTANCES``.
"""

from __future__ import annotations

import inspect
import pickle

import numpy as np
import pytest

from rigwatch.drift import ChangeDetectors, NullThresholds


def _detectors() -> ChangeDetectors:
    d = ChangeDetectors(["3", "20"], ["t"], per_window=40)
    for _ in range(4):
        d.update([40, 0], [0, 40], [0.9, 1.0], [0.5])
    return d


def _thresholds() -> NullThresholds:
    sample = np.random.default_rng(0).normal(size=(300, 2))
    null = NullThresholds(sample, "ks", resamples=100)
    null(50)
    return null


INSTANCES = [pytest.param(_detectors, id="ChangeDetectors"), pytest.param(_thresholds, id="NullThresholds")]


@pytest.mark.parametrize("make", INSTANCES)
def test_state_survives_pickling(make) -> None:
    original = make()
    copy = pickle.loads(pickle.dumps(original))
    if isinstance(original, ChangeDetectors):
        window = ([0, 40], [0, 40], [0.9, 1.0], [9.0])
        assert copy.update(*window).changes == original.update(*window).changes == ["class.3", "class.20"]
        assert copy.clone().update(*window).changes == original.update(*window).changes
    else:
        np.testing.assert_array_equal(copy(80), original(80))


@pytest.mark.parametrize("make", INSTANCES)
def test_class_is_documented_with_an_example(make) -> None:
    doc = inspect.getdoc(type(make())) or ""
    assert doc.strip() and "Examples" in doc


@pytest.mark.parametrize("make", INSTANCES)
def test_no_mutable_default_arguments(make) -> None:
    for parameter in inspect.signature(type(make())).parameters.values():
        assert not isinstance(parameter.default, list | dict | set), parameter.name
