"""The cooler-condition model: training, the model package, metrics, reference profile."""

from __future__ import annotations

from rigwatch.model.metrics import accuracy, confusion_matrix, log_loss, mcc
from rigwatch.model.package import ModelPackage, model_version
from rigwatch.model.reference import assign_bins, build_reference
from rigwatch.model.train import lightgbm_params, stratified_split, train, train_and_write

__all__ = [
    "ModelPackage",
    "accuracy",
    "assign_bins",
    "build_reference",
    "confusion_matrix",
    "lightgbm_params",
    "log_loss",
    "mcc",
    "model_version",
    "stratified_split",
    "train",
    "train_and_write",
]
