"""The model package's reference profile as the arrays the drift code computes with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from rigwatch.drift.sketch import fine_edges
from rigwatch.drift.stats import NullThresholds, bin_counts, pad_edges, reference_scale

__all__ = ["ALPHA", "DriftProfile"]

#: Family-wise false-alarm rate per window: the chance that a stationary
#: window flags any of its features (Bonferroni over the features).
ALPHA = 0.01
# PSI thresholds at the corrected level sit ~25 draws deep at this many
# resamples; a PSI draw is a multinomial over ~10 bins, so this is cheap.
_PSI_RESAMPLES = 40_000
# An effect-size floor: PSI under 0.01 means no practical change at any count,
# so huge windows do not alarm on statistically real but meaningless wiggles.
MIN_PSI_THRESHOLD = 0.01


@dataclass(frozen=True)
class DriftProfile:
    """Reference distributions of one model version, in model feature order.

    Built from ``reference.json`` of a model package (see
    :mod:`rigwatch.model.reference`) by :meth:`from_reference`. Feature arrays
    have the features on axis 0; ragged bin edges are padded with ``+inf``.
    """

    model_version: str
    features: tuple[str, ...]
    importance: npt.NDArray[np.float64]
    coarse_edges: npt.NDArray[np.float64]
    coarse_expected: npt.NDArray[np.float64]
    fine_edges: npt.NDArray[np.float64]
    fine_reference: npt.NDArray[np.float64]
    sample: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    mean: npt.NDArray[np.float64]
    std: npt.NDArray[np.float64]
    classes: tuple[str, ...]
    class_expected: npt.NDArray[np.float64]
    confidence_edges: npt.NDArray[np.float64]
    confidence_expected: npt.NDArray[np.float64]

    @classmethod
    def from_reference(
        cls, reference: Mapping[str, Any], model_version: str, features: Sequence[str], classes: Sequence[str]
    ) -> DriftProfile:
        """Arrays from a reference profile dict (``ModelPackage.reference``)."""
        per_feature = [reference["features"][name] for name in features]
        coarse = pad_edges([f["inner_edges"] for f in per_feature])
        expected = np.zeros((len(features), coarse.shape[1] + 1))
        for j, f in enumerate(per_feature):
            expected[j, : len(f["counts"])] = f["counts"]
        sample = np.column_stack(
            [np.asarray(reference["sample"]["values"][name], dtype=np.float64) for name in features]
        )
        fine = fine_edges(sample)
        importance = np.array([reference["feature_importance"]["values"][name] for name in features])
        mix = reference["test_predictions"]["predicted_class"]["counts"]
        return cls(
            model_version=model_version,
            features=tuple(features),
            importance=importance,
            coarse_edges=coarse,
            coarse_expected=expected,
            fine_edges=fine,
            fine_reference=bin_counts(sample, fine).astype(np.float64),
            sample=sample,
            scale=np.asarray(reference_scale(sample), dtype=np.float64),
            low=np.array([f["min"] for f in per_feature]),
            high=np.array([f["max"] for f in per_feature]),
            mean=np.array([f["mean"] for f in per_feature]),
            std=np.array([f["std"] for f in per_feature]),
            classes=tuple(classes),
            class_expected=np.array([mix[label] for label in classes], dtype=np.float64),
            confidence_edges=np.asarray(reference["test_predictions"]["confidence_edges"], dtype=np.float64),
            confidence_expected=np.asarray(
                reference["test_predictions"]["confidence_counts"], dtype=np.float64
            ),
        )

    @property
    def confidence_inner_edges(self) -> npt.NDArray[np.float64]:
        """Inner edges of the confidence histogram (outer bins open-ended)."""
        return self.confidence_edges[1:-1]

    @property
    def confidence_centres(self) -> npt.NDArray[np.float64]:
        """Centre of each confidence bin (what a bin's predictions stand for)."""
        return (self.confidence_edges[:-1] + self.confidence_edges[1:]) / 2

    @cached_property
    def feature_psi_null(self) -> NullThresholds:
        """Per-feature PSI thresholds at the Bonferroni level ``1 - ALPHA / F``."""
        return NullThresholds(
            self.sample,
            "psi",
            quantile=1 - ALPHA / len(self.features),
            resamples=_PSI_RESAMPLES,
            inner_edges=self.coarse_edges,
            expected_counts=self.coarse_expected,
        )

    @cached_property
    def class_psi_null(self) -> NullThresholds:
        """PSI threshold of the predicted-class mix (level ``1 - ALPHA``)."""
        sample = np.repeat(np.arange(len(self.classes), dtype=np.float64), self.class_expected.astype(int))
        return NullThresholds(
            sample,
            "psi",
            quantile=1 - ALPHA,
            resamples=_PSI_RESAMPLES,
            inner_edges=np.arange(len(self.classes) - 1) + 0.5,
            expected_counts=self.class_expected,
        )

    @cached_property
    def confidence_psi_null(self) -> NullThresholds:
        """PSI threshold of the confidence histogram (level ``1 - ALPHA``)."""
        sample = np.repeat(self.confidence_centres, self.confidence_expected.astype(int))
        return NullThresholds(
            sample,
            "psi",
            quantile=1 - ALPHA,
            resamples=_PSI_RESAMPLES,
            inner_edges=self.confidence_inner_edges,
            expected_counts=self.confidence_expected,
        )
