"""The data schema: column names, classes and the :class:`Dataset` container.

One row of a :class:`Dataset` is one 60 s load cycle of the hydraulic rig: the
per-cycle mean of each of the 17 sensors and the five condition labels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from rigwatch.exceptions import DataError

__all__ = [
    "CLASSES",
    "CLASS_LABELS",
    "FEATURES",
    "LABEL_COLUMNS",
    "SENSOR_COLUMNS",
    "TARGET",
    "UCI_FILES",
    "Dataset",
]

#: The 17 per-cycle sensor means, in the order of the per-cycle CSV.
SENSOR_COLUMNS: tuple[str, ...] = (
    "psa_bar",
    "psb_bar",
    "psc_bar",
    "psd_bar",
    "pse_bar",
    "psf_bar",
    "fsa_vol_flow",
    "fsb_vol_flow",
    "tsa_temp",
    "tsb_temp",
    "tsc_temp",
    "tsd_temp",
    "pump_eff",
    "vs_vib",
    "cool_eff_pct",
    "cool_pwr_pct",
    "eff_fact_pct",
)

#: The five condition labels, in the column order of the UCI ``profile.txt``.
LABEL_COLUMNS: tuple[str, ...] = (
    "cool_cond_y",
    "valve_cond_y",
    "pump_leak_y",
    "acc_gas_leak_y",
    "stable_y",
)

#: The label the model predicts.
TARGET = "cool_cond_y"

# The public reference model leaves out the cooling efficiency: it is a
# "virtual" sensor computed from the cooler state, so it would leak the target.
#: The 16 model features: every sensor except ``cool_eff_pct``, in CSV order.
FEATURES: tuple[str, ...] = tuple(c for c in SENSOR_COLUMNS if c != "cool_eff_pct")

#: The values of ``cool_cond_y``; class index ``i`` of the model means ``CLASSES[i]``.
CLASSES: tuple[int, ...] = (3, 20, 100)

#: The classes as they travel on the wire (map keys of ``probabilities``).
CLASS_LABELS: tuple[str, ...] = tuple(str(c) for c in CLASSES)

#: Sensor column -> stem of its tab-separated file in the UCI archive.
UCI_FILES: dict[str, str] = {
    "psa_bar": "PS1",
    "psb_bar": "PS2",
    "psc_bar": "PS3",
    "psd_bar": "PS4",
    "pse_bar": "PS5",
    "psf_bar": "PS6",
    "fsa_vol_flow": "FS1",
    "fsb_vol_flow": "FS2",
    "tsa_temp": "TS1",
    "tsb_temp": "TS2",
    "tsc_temp": "TS3",
    "tsd_temp": "TS4",
    "pump_eff": "EPS1",
    "vs_vib": "VS1",
    "cool_eff_pct": "CE",
    "cool_pwr_pct": "CP",
    "eff_fact_pct": "SE",
}

_FEATURE_INDEX = np.array([SENSOR_COLUMNS.index(f) for f in FEATURES], dtype=np.intp)


def _frozen(values: object, dtype: type, name: str, ndim: int) -> np.ndarray:
    """Copy ``values`` into a read-only contiguous little-endian array."""
    try:
        arr = np.array(values, dtype=np.dtype(dtype).newbyteorder("<"), copy=True, order="C")
    except (TypeError, ValueError) as exc:
        raise DataError(f"Dataset.{name}: cannot convert to {np.dtype(dtype)}: {exc}") from exc
    if arr.ndim != ndim:
        raise DataError(f"Dataset.{name}: expected {ndim} dimensions, got shape {arr.shape}")
    # Read-only so that a frozen Dataset really cannot change under its sha256.
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Dataset:
    """Per-cycle sensor means with their condition labels.

    Parameters
    ----------
    cycle
        Cycle numbers, int64, shape ``(n,)``.
    sensors
        Sensor means, float64, shape ``(n, 17)``, columns in :data:`SENSOR_COLUMNS` order.
    labels
        Condition labels, int64, shape ``(n, 5)``, columns in :data:`LABEL_COLUMNS` order.
    source
        Where the rows came from, for people and for lineage
        (``"csv:/path/hydraulic_cycles.csv"``, ``"uci:/path/data.zip"``, ``"simulator(seed=0)"``).

    The arrays are copied and made read-only.

    Examples
    --------
    >>> import numpy as np
    >>> ds = Dataset(np.arange(2), np.ones((2, 17)), np.tile([3, 100, 0, 130, 0], (2, 1)), "doc")
    >>> len(ds), ds.features().shape, ds.cool_cond.tolist()
    (2, (2, 16), [3, 3])
    >>> ds.row(0)["psa_bar"]
    1.0
    """

    cycle: np.ndarray
    sensors: np.ndarray
    labels: np.ndarray
    source: str

    def __post_init__(self) -> None:
        cycle = _frozen(self.cycle, np.int64, "cycle", 1)
        sensors = _frozen(self.sensors, np.float64, "sensors", 2)
        labels = _frozen(self.labels, np.int64, "labels", 2)
        n = len(cycle)
        if sensors.shape != (n, len(SENSOR_COLUMNS)):
            raise DataError(
                f"Dataset.sensors: expected shape ({n}, {len(SENSOR_COLUMNS)}), got {sensors.shape}"
            )
        if labels.shape != (n, len(LABEL_COLUMNS)):
            raise DataError(f"Dataset.labels: expected shape ({n}, {len(LABEL_COLUMNS)}), got {labels.shape}")
        # frozen=True blocks normal assignment; __post_init__ is where it is allowed.
        object.__setattr__(self, "cycle", cycle)
        object.__setattr__(self, "sensors", sensors)
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return len(self.cycle)

    def __repr__(self) -> str:
        return f"Dataset(rows={len(self)}, source={self.source!r})"

    @property
    def cool_cond(self) -> np.ndarray:
        """The target label ``cool_cond_y`` (3, 20 or 100) per row."""
        return self.labels[:, 0]

    def features(self) -> np.ndarray:
        """Return the model inputs, float64 ``(n, 16)`` in :data:`FEATURES` order."""
        return self.sensors[:, _FEATURE_INDEX]

    def sha256(self) -> str:
        """Hex sha256 of the sensor and label bytes: the lineage id of the rows.

        The arrays are little-endian and C-ordered, so the digest is the same on
        every platform for the same values.
        """
        digest = hashlib.sha256()
        digest.update(self.sensors.tobytes())
        digest.update(self.labels.tobytes())
        return digest.hexdigest()

    def row(self, i: int) -> dict[str, float]:
        """Return row ``i`` as ``{sensor name: value}``."""
        return dict(zip(SENSOR_COLUMNS, self.sensors[i].tolist(), strict=True))

    def take(self, indices: np.ndarray, *, source: str | None = None) -> Dataset:
        """Return the rows at ``indices`` (in that order) as a new dataset."""
        idx = np.asarray(indices, dtype=np.intp)
        return Dataset(
            self.cycle[idx],
            self.sensors[idx],
            self.labels[idx],
            self.source if source is None else source,
        )
