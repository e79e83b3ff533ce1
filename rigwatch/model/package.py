"""A model package: a folder with the LightGBM model, its metadata and reference profile.

::

    model.txt        LightGBM model text (Booster.model_to_string)
    metadata.json    name, version, features, classes, lineage, params, metrics
    reference.json   the drift reference profile and confidence calibration
                     (see rigwatch.model.reference, rigwatch.model.calibration)

The version is derived from the model text, so the same training gives the
same version and any change to the trees gives a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from rigwatch.data.columns import CLASS_LABELS, FEATURES
from rigwatch.exceptions import DataError, ModelError
from rigwatch.model.calibration import ConfidenceCalibration

__all__ = [
    "DEFAULT_NAME",
    "METADATA_FILE",
    "MODEL_FILE",
    "REFERENCE_FILE",
    "ModelPackage",
    "model_version",
]

MODEL_FILE = "model.txt"
METADATA_FILE = "metadata.json"
REFERENCE_FILE = "reference.json"
DEFAULT_NAME = "cooler-lgbm"


def model_version(model_text: str) -> str:
    """First 12 hex digits of the sha256 of the model text."""
    return hashlib.sha256(model_text.encode("utf-8")).hexdigest()[:12]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: missing; a model package needs {path.name}") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: not readable JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ModelError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


class ModelPackage:
    """A trained cooler-condition model with its metadata and reference profile.

    Parameters
    ----------
    booster
        The LightGBM multiclass booster.
    metadata
        Lineage, parameters and metrics (see ``metadata.json``); ``version`` is
        set here from the model text.
    reference
        The reference profile (drift statistics, confidence calibration).

    Examples
    --------
    Loading a package written by ``rigwatch train`` and scoring one row::

        pkg = ModelPackage.load(Path("models/cooler"))
        proba = pkg.predict_proba(x)      # (n, 16) in pkg.features order -> (n, 3)
        dict(zip(pkg.classes, proba[0]))  # {"3": ..., "20": ..., "100": ...}
    """

    def __init__(self, booster: lgb.Booster, metadata: dict[str, Any], reference: dict[str, Any]) -> None:
        self.booster = booster
        self._model_text = booster.model_to_string()
        self.metadata = {**metadata, "version": model_version(self._model_text)}
        self.reference = reference

    def __repr__(self) -> str:
        return f"ModelPackage(name={self.name!r}, version={self.version!r})"

    @property
    def name(self) -> str:
        """Model name (``metadata["name"]``, default ``"cooler-lgbm"``)."""
        return str(self.metadata.get("name", DEFAULT_NAME))

    @property
    def version(self) -> str:
        """12 hex digits of the sha256 of the model text."""
        return str(self.metadata["version"])

    @property
    def features(self) -> tuple[str, ...]:
        """Input columns, in the order :meth:`predict_proba` expects them."""
        return tuple(self.metadata.get("features", FEATURES))

    @property
    def classes(self) -> tuple[str, ...]:
        """Class labels of the probability columns: ``("3", "20", "100")``."""
        return tuple(self.metadata.get("classes", CLASS_LABELS))

    @property
    def calibration(self) -> ConfidenceCalibration:
        """P(prediction correct | top probability), fitted on the held-out rows.

        Packages trained before calibration existed have no ``calibration`` in
        their reference; they get :meth:`ConfidenceCalibration.identity`, which
        takes the model's confidence at its word, so they keep loading.
        """
        if "calibration" not in self.reference:
            return ConfidenceCalibration.identity()
        return ConfidenceCalibration.from_dict(self.reference["calibration"])

    def predict_proba(self, x: np.ndarray, *, num_threads: int = 1) -> np.ndarray:
        """Class probabilities for rows of features.

        Parameters
        ----------
        x
            ``(n, 16)`` (or one row ``(16,)``) float32/float64 in :attr:`features`
            order; NaN means the sensor is missing.
        num_threads
            LightGBM prediction threads; 1 suits many small batches in parallel workers.

        Returns
        -------
        numpy.ndarray
            float64 ``(n, 3)``, columns in :attr:`classes` order, rows sum to 1.
        """
        arr = np.asarray(x)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != len(self.features):
            raise DataError(
                f"predict_proba: x has shape {np.shape(x)}, expected (n, {len(self.features)}) "
                f"with columns {', '.join(self.features)}"
            )
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
        if len(arr) == 0:
            return np.empty((0, len(self.classes)), dtype=np.float64)
        return np.asarray(self.booster.predict(arr, num_threads=num_threads), dtype=np.float64)

    def write(self, directory: str | os.PathLike[str]) -> Path:
        """Write the package into ``directory`` (created) and return it.

        Each file is written under a temporary name and renamed, so a reader
        never sees a half-written file; ``metadata.json`` goes last because it
        names the version of the ``model.txt`` beside it.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _write_atomic(directory / MODEL_FILE, self._model_text)
        _write_atomic(directory / REFERENCE_FILE, json.dumps(self.reference, separators=(",", ":")))
        _write_atomic(directory / METADATA_FILE, json.dumps(self.metadata, indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ModelPackage:
        """Read a package written by :meth:`write`.

        Raises
        ------
        ModelError
            A file is missing or unreadable, the features in ``metadata.json``
            differ from the booster's, ``model.txt`` is not the version the
            metadata names, or the calibration in ``reference.json`` is invalid.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise ModelError(f"{directory}: not a folder, expected a model package")
        model_path = directory / MODEL_FILE
        try:
            text = model_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ModelError(f"{model_path}: missing; a model package needs {MODEL_FILE}") from None
        except OSError as exc:
            raise ModelError(f"{model_path}: cannot read: {exc}") from exc
        try:
            booster = lgb.Booster(model_str=text)
        except lgb.basic.LightGBMError as exc:
            raise ModelError(f"{model_path}: not a LightGBM model: {exc}") from exc
        metadata = _read_json(directory / METADATA_FILE)
        reference = _read_json(directory / REFERENCE_FILE)

        features = metadata.get("features")
        if features != booster.feature_name():
            raise ModelError(
                f"{directory / METADATA_FILE}: features {features} differ from "
                f"{MODEL_FILE} features {booster.feature_name()}"
            )
        classes = metadata.get("classes")
        if not isinstance(classes, list) or len(classes) != booster.num_model_per_iteration():
            raise ModelError(
                f"{directory / METADATA_FILE}: classes {classes}, expected "
                f"{booster.num_model_per_iteration()} labels like {MODEL_FILE}"
            )
        package = cls(booster, metadata, reference)
        if metadata.get("version") != package.version:
            raise ModelError(
                f"{directory / METADATA_FILE}: version {metadata.get('version')!r} but "
                f"{MODEL_FILE} hashes to {package.version!r}; the files are from different models"
            )
        # Read it once here so a broken calibration fails the load, not the
        # first accuracy window hours later.
        try:
            package.calibration  # noqa: B018
        except ModelError as exc:
            raise ModelError(f"{directory / REFERENCE_FILE}: {exc}") from exc
        return package
