"""Scorer: ``rig.sensor-readings`` -> LightGBM -> ``rig.predictions`` (bad input -> DLQ)."""

from services.scorer.config import ScorerSettings
from services.scorer.handler import Reject, ScoredBatch, assemble_features, score_batch

__all__ = ["Reject", "ScoredBatch", "ScorerSettings", "assemble_features", "score_batch"]
