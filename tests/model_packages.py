"""Small model packages trained on the real rows, for the lifecycle's tests: fewer features,
renamed features, fewer classes."""

from __future__ import annotations

from collections.abc import Sequence

import lightgbm as lgb
import numpy as np

from rigwatch.data import CLASS_LABELS, FEATURES, SENSOR_COLUMNS, Dataset
from rigwatch.model import ModelPackage, build_reference


def tiny_package(
    dataset: Dataset,
    *,
    features: Sequence[str] = FEATURES,
    names: Sequence[str] | None = None,
    classes: Sequence[str] = CLASS_LABELS,
    rounds: int = 5,
    seed: int = 0,
) -> ModelPackage:
    """A LightGBM package of *rounds* trees on the sensor columns *features* (called *names*
    in the model), on the rows whose cooler label is one of *classes*; its reference profile is
    built like ``rigwatch train`` builds one (training rows stand in for held-out ones)."""
    names = tuple(names or features)
    keep = np.isin(dataset.cool_cond.astype(str), list(classes))
    x = dataset.sensors[keep][:, [SENSOR_COLUMNS.index(f) for f in features]]
    index = {label: i for i, label in enumerate(classes)}
    y = np.array([index[str(v)] for v in dataset.cool_cond[keep]])
    params = {
        "objective": "multiclass",
        "num_class": len(classes),
        "num_leaves": 4,
        "min_data_in_leaf": 5,
        "learning_rate": 0.3,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": 1,
        "seed": seed,
        "verbosity": -1,
    }
    fitted = lgb.train(params, lgb.Dataset(x, y, feature_name=list(names)), num_boost_round=rounds)
    booster = lgb.Booster(model_str=fitted.model_to_string())
    proba = np.asarray(booster.predict(x, num_threads=1))
    gain = booster.feature_importance(importance_type="gain")
    reference = build_reference(x, y, x, y, proba, gain, features=names, classes=classes, seed=seed)
    accuracy = float((proba.argmax(axis=1) == y).mean())
    metadata = {
        "name": "tiny",
        "features": list(names),
        "classes": list(classes),
        "params": params,
        "test_metrics": {"accuracy": accuracy},
    }
    return ModelPackage(booster, metadata, reference)
