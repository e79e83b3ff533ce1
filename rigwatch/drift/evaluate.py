"""A closed window's totals -> its drift metrics and verdict (pure)."""

from __future__ import annotations

from typing import Any

import numpy as np

from rigwatch.drift.counts import WindowTotals
from rigwatch.drift.profile import MIN_PSI_THRESHOLD, DriftProfile
from rigwatch.drift.sketch import ks_from_counts, wasserstein_from_bins
from rigwatch.drift.stats import drift_score, js_distance, psi, top_drifting

__all__ = ["PER_FEATURE", "evaluate"]

#: Per-feature metrics, reported as ``<name>.<feature>``.
PER_FEATURE = (
    "psi",
    "psi_ratio",
    "js",
    "ks",
    "ks_p",
    "wasserstein",
    "missing_rate",
    "out_of_range_rate",
    "mean_shift",
)


def evaluate(
    profile: DriftProfile, totals: WindowTotals, min_count: int
) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics (name -> value) and detail of one window.

    Feature statistics need at least ``min_count`` readings, prediction
    statistics ``min_count`` predictions; below that only the counts are
    reported ("no verdict"). Each PSI is judged against its own null threshold
    at the feature's count (``psi_ratio`` > 1 means drift at a family-wise
    1 % false-alarm rate per window), and ``drift_score`` weights the ratios
    by the model's feature importance.
    """
    metrics: dict[str, float] = {
        "readings": float(totals.readings),
        "predictions": float(totals.predictions),
        "other_version_predictions": float(totals.other_version),
    }
    detail: dict[str, Any] = {"model_version": profile.model_version, "min_count": min_count}
    verdicts = []
    if totals.readings >= min_count:
        verdicts.append(_features(profile, totals, metrics, detail))
    if totals.predictions >= min_count:
        verdicts.append(_predictions(profile, totals, metrics, detail))
    detail["verdict"] = "no_verdict" if not verdicts else ("drift" if any(verdicts) else "ok")
    if verdicts:
        metrics["drift"] = float(any(verdicts))
    return metrics, detail


def _features(
    profile: DriftProfile, t: WindowTotals, metrics: dict[str, float], detail: dict[str, Any]
) -> bool:
    present = t.present
    with np.errstate(invalid="ignore", divide="ignore"):
        threshold = np.maximum(profile.feature_psi_null(present), MIN_PSI_THRESHOLD)
        values = {
            "psi": psi(profile.coarse_expected, t.coarse),
            "js": js_distance(profile.coarse_expected, t.coarse),
            "wasserstein": wasserstein_from_bins(profile.sample, t.fine, t.fine_sums, profile.scale),
            "missing_rate": t.missing / t.readings,
            "out_of_range_rate": np.where(present > 0, (t.below + t.above) / present, np.nan),
            "mean_shift": (t.sums / present - profile.mean) / np.where(profile.std > 0, profile.std, 1.0),
        }
        values["ks"], values["ks_p"] = ks_from_counts(profile.fine_reference, t.fine)
        values["psi_ratio"] = values["psi"] / threshold
    for name in PER_FEATURE:
        for feature, value in zip(profile.features, np.asarray(values[name]).tolist(), strict=True):
            metrics[f"{name}.{feature}"] = float(value)
    ratio = np.asarray(values["psi_ratio"])
    score = drift_score(ratio, profile.importance)
    metrics["drift_score"] = float(score)
    metrics["max_psi_ratio"] = float(np.nanmax(ratio)) if np.isfinite(ratio).any() else float("nan")
    metrics["drifted_features"] = float(np.sum(ratio > 1))
    detail["top_features"] = top_drifting(ratio, profile.features, k=3)
    detail["psi_threshold"] = dict(zip(profile.features, threshold.tolist(), strict=True))
    return bool(np.any(ratio > 1))


def _predictions(
    profile: DriftProfile, t: WindowTotals, metrics: dict[str, float], detail: dict[str, Any]
) -> bool:
    class_psi = psi(profile.class_expected, t.classes)
    conf_psi = psi(profile.confidence_expected, t.confidence)
    class_ratio = class_psi / max(float(profile.class_psi_null(t.predictions)), MIN_PSI_THRESHOLD)
    conf_ratio = conf_psi / max(float(profile.confidence_psi_null(t.predictions)), MIN_PSI_THRESHOLD)
    metrics["prediction.class_psi"] = float(class_psi)
    metrics["prediction.class_js"] = float(js_distance(profile.class_expected, t.classes))
    metrics["prediction.confidence_psi"] = float(conf_psi)
    metrics["prediction.confidence_js"] = float(js_distance(profile.confidence_expected, t.confidence))
    metrics["prediction.confidence_mean"] = t.confidence_sum / t.predictions
    for label, count in zip(profile.classes, t.classes.tolist(), strict=True):
        metrics[f"prediction.share.{label}"] = count / t.predictions
    metrics["prediction_drift"] = max(class_ratio, conf_ratio)
    detail["prediction_ratios"] = {"class": class_ratio, "confidence": conf_ratio}
    return bool(metrics["prediction_drift"] > 1)
