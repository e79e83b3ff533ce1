"""Scorer: ``rig.sensor-readings`` -> LightGBM -> ``rig.predictions`` (bad input -> DLQ)."""

from services.scorer.config import ScorerSettings
from services.scorer.handler import Reject, ScoredBatch, Scorer, feature_matrix

__all__ = ["Reject", "ScoredBatch", "Scorer", "ScorerSettings", "feature_matrix"]
