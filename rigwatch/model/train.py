"""Train the cooler-condition model and build its package.

LightGBM multiclass on the 16 :data:`~rigwatch.data.FEATURES`, target
``cool_cond_y`` (3 / 20 / 100 -> class index 0 / 1 / 2). A seeded stratified
60/20/20 split gives training rows, validation rows for early stopping, and
held-out test rows for the metrics stored in the package.

Parameter choice, measured on the real data over 40 split seeds other than
the default 42: the test log loss of every sensible setting is dominated by the
one or two cycles right after a condition change that land in the test part
(cycle 0, the cold start, and cycle 1464, whose lagging temperatures still look
like cooler class 20). With the parameters below the mean test log loss was
0.0033 +/- 0.0007 (median 0.0009, accuracy 0.9990) after ~60 rounds. Early
stopping only counts validation improvements above ``MIN_DELTA``: without it,
on a validation part with no hard cycles, boosting kept sharpening the
probabilities for ~40 more rounds, which made the model slower to score and
more confidently wrong on those cycles (8 leaves: 0.0042 vs 0.0036).
``min_data_in_leaf`` 20 (the default) gave 0.0045; learning rate 0.05 gave
0.0037 with twice the trees; extremely randomised trees gave 0.006 with ~1000
rounds. Scoring costs ~4 us a row in batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from rigwatch.data.columns import CLASS_LABELS, CLASSES, FEATURES, TARGET, Dataset
from rigwatch.data.resolve import resolve_data
from rigwatch.exceptions import DataError
from rigwatch.model import metrics
from rigwatch.model.package import DEFAULT_NAME, ModelPackage
from rigwatch.model.reference import build_reference

__all__ = [
    "EARLY_STOPPING_ROUNDS",
    "MAX_ROUNDS",
    "MIN_DELTA",
    "SPLIT_FRACTIONS",
    "lightgbm_params",
    "stratified_split",
    "train",
    "train_and_write",
]

#: Train / validation / test shares of every class.
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
#: Upper bound on boosting rounds; early stopping ends far sooner (~60).
MAX_ROUNDS = 1000
#: Rounds without a better validation log loss before training stops.
EARLY_STOPPING_ROUNDS = 50
#: Smallest validation log-loss decrease that counts as better.
MIN_DELTA = 1e-3


def lightgbm_params(seed: int, num_threads: int) -> dict[str, Any]:
    """The LightGBM parameters; deterministic for a seed and thread count."""
    return {
        "objective": "multiclass",
        "num_class": len(CLASSES),
        "metric": "multi_logloss",
        "learning_rate": 0.1,
        # ~1300 training rows: small trees; leaves of 5 rows beat the default
        # 20 (see the module docstring for the measurements).
        "num_leaves": 4,
        "min_data_in_leaf": 5,
        "deterministic": True,
        "force_col_wise": True,
        "seed": seed,
        "num_threads": num_threads,
        "verbosity": -1,
    }


def stratified_split(
    y: np.ndarray, *, seed: int, fractions: tuple[float, float, float] = SPLIT_FRACTIONS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split row indices into train / validation / test, keeping class shares.

    Each class is shuffled with one seeded generator (classes in sorted order)
    and cut at the rounded fractions; the rest of a class goes to test.

    Returns
    -------
    tuple of numpy.ndarray
        Sorted row indices of train, validation and test.

    Examples
    --------
    >>> tr, va, te = stratified_split(np.repeat([0, 1], 10), seed=0)
    >>> len(tr), len(va), len(te)
    (12, 4, 4)
    """
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for cls in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == cls))
        n_train = round(fractions[0] * len(rows))
        n_val = round(fractions[1] * len(rows))
        parts[0].append(rows[:n_train])
        parts[1].append(rows[n_train : n_train + n_val])
        parts[2].append(rows[n_train + n_val :])
    train_rows, val_rows, test_rows = (np.sort(np.concatenate(p)) for p in parts)
    return train_rows, val_rows, test_rows


def _class_indices(dataset: Dataset) -> np.ndarray:
    y = dataset.cool_cond
    unknown = sorted(set(np.unique(y).tolist()) - set(CLASSES))
    if unknown:
        raise DataError(f"{dataset.source}: {TARGET} has values {unknown}, expected {CLASSES}")
    counts = np.bincount(np.searchsorted(CLASSES, y), minlength=len(CLASSES))
    if counts.min() < 10:
        raise DataError(
            f"{dataset.source}: {TARGET} counts {dict(zip(CLASSES, counts.tolist(), strict=True))}, "
            "expected at least 10 rows of every class to split and train"
        )
    return np.searchsorted(CLASSES, y)


def _scores(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    predicted = proba.argmax(axis=1)
    return {
        "log_loss": metrics.log_loss(y, proba),
        "accuracy": metrics.accuracy(y, predicted),
        "mcc": metrics.mcc(y, predicted, len(CLASSES)),
    }


def train(dataset: Dataset, *, seed: int = 42, num_threads: int = 2) -> ModelPackage:
    """Train the model on ``dataset`` and return the package (not yet written).

    Parameters
    ----------
    dataset
        Cycles with ``cool_cond_y`` labels; every class needs at least 10 rows.
    seed
        Seed of the split and of LightGBM; the same seed and data give the same
        model text, hence the same version.
    num_threads
        LightGBM training threads (part of the parameters, so part of the version).

    Raises
    ------
    DataError
        ``cool_cond_y`` has unknown values or too few rows of a class.
    """
    started = time.perf_counter()
    x, y = dataset.features(), _class_indices(dataset)
    train_rows, val_rows, test_rows = stratified_split(y, seed=seed)
    params = lightgbm_params(seed, num_threads)

    train_set = lgb.Dataset(x[train_rows], y[train_rows], feature_name=list(FEATURES))
    val_set = lgb.Dataset(x[val_rows], y[val_rows], reference=train_set)
    fitted = lgb.train(
        params,
        train_set,
        num_boost_round=MAX_ROUNDS,
        valid_sets=[val_set],
        valid_names=["validation"],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False, min_delta=MIN_DELTA)],
    )
    # Round-trip through the text form: the package then holds exactly the
    # best-iteration model that load() will read back, with the same version.
    booster = lgb.Booster(model_str=fitted.model_to_string())

    test_proba = np.asarray(booster.predict(x[test_rows], num_threads=num_threads))
    val_proba = np.asarray(booster.predict(x[val_rows], num_threads=num_threads))
    gain = booster.feature_importance(importance_type="gain")
    reference = build_reference(
        x[train_rows], y[train_rows], x[test_rows], y[test_rows], test_proba, gain, seed=seed
    )
    metadata = {
        "name": DEFAULT_NAME,
        "features": list(FEATURES),
        "classes": list(CLASS_LABELS),
        "target": TARGET,
        "training_data": {
            "source": dataset.source,
            "sha256": dataset.sha256(),
            "rows": len(dataset),
        },
        "split": {
            "seed": seed,
            "stratified_by": TARGET,
            "fractions": dict(zip(("train", "validation", "test"), SPLIT_FRACTIONS, strict=True)),
        },
        "row_counts": {
            "train": len(train_rows),
            "validation": len(val_rows),
            "test": len(test_rows),
        },
        "params": params,
        "max_rounds": MAX_ROUNDS,
        "early_stopping_rounds": EARLY_STOPPING_ROUNDS,
        "early_stopping_min_delta": MIN_DELTA,
        # 0 would mean "early stopping never ran": then every round was kept.
        "best_iteration": int(fitted.best_iteration or fitted.current_iteration()),
        "test_metrics": _scores(y[test_rows], test_proba),
        "validation_metrics": _scores(y[val_rows], val_proba),
        "train_seconds": round(time.perf_counter() - started, 3),
        "lightgbm_version": lgb.__version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return ModelPackage(booster, metadata, reference)


def _printer(console: Any) -> Callable[[str], None]:
    if console is None:
        return print
    try:
        from rich.console import Console
    except ImportError:  # pragma: no cover - rich is a dependency, but any .print works
        return console.print
    if isinstance(console, Console):
        # Paths and sources are data, not markup: "[3]" in a folder name must print as is.
        return lambda line: console.print(line, markup=False)
    return console.print


def train_and_write(
    data: str | Path | None,
    out: Path,
    *,
    seed: int = 42,
    console: Any = None,
) -> ModelPackage:
    """Resolve the data, train, write the package to ``out`` and report.

    Parameters
    ----------
    data
        Data location for :func:`~rigwatch.data.resolve_data` (``None``:
        ``$RIGWATCH_DATA``, the cached UCI archive, a download, or the simulator).
    out
        Package folder (created).
    seed
        Split and LightGBM seed.
    console
        Anything with ``print(str)`` (a ``rich.console.Console``); ``None`` prints
        to stdout.
    """
    say = _printer(console)
    dataset = resolve_data(data, progress=lambda line: say(f"  {line}"))
    say(f"data: {dataset.source} ({len(dataset)} rows, sha256 {dataset.sha256()[:12]})")
    package = train(dataset, seed=seed)
    meta = package.metadata
    rows = meta["row_counts"]
    scores = meta["test_metrics"]
    say(
        f"trained in {meta['train_seconds']:.1f} s on {rows['train']} rows, "
        f"best iteration {meta['best_iteration']} (early stopping on {rows['validation']} rows)"
    )
    say(
        f"test ({rows['test']} rows): log loss {scores['log_loss']:.4f}, "
        f"accuracy {scores['accuracy']:.4f}, MCC {scores['mcc']:.4f}"
    )
    path = package.write(out)
    say(f"model package {package.name} version {package.version} -> {path}")
    return package
