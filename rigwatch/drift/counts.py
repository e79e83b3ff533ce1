"""Window state as additive counts: what a batch adds, and what a closed window holds.

The drift processor never keeps raw events. Every record adds to fixed-size
count vectors per window and subject (histogram bins, missing and
out-of-range counts, sums), so the state of a window is the sum of its
batches' contributions: batches from any partition or worker merge by
addition, and the statistics are computed once, from the totals, when the
window closes.

A :class:`DriftLayout` names every slot. The drift service hands a window's
vectors to the store as :attr:`Update.counts <rigwatch.windowing.Update.counts>`:
one packed item per window and checkpoint (:func:`~rigwatch.windowing.pack_counts`),
added up when the window is read. A window can also hold its counts as hash
fields (integer slots ``"<index>"``, float slots ``"f<index>"``, added with
``HINCRBY``; :meth:`DriftLayout.fields`): :meth:`DriftLayout.totals` adds both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rigwatch.drift.profile import DriftProfile
from rigwatch.windowing import unpack_counts

__all__ = ["DriftLayout", "WindowTotals"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def _bins(x: FloatArray, edges: FloatArray) -> IntArray:
    """Bin index per value under the reference rule (right-closed), feature by feature."""
    out = np.empty(x.shape, dtype=np.int64)
    for j in range(x.shape[1]):
        out[:, j] = np.searchsorted(edges[j], x[:, j], side="left")
    return out


@dataclass(frozen=True)
class WindowTotals:
    """Everything a closed window holds, as arrays (features on axis 0)."""

    readings: int
    coarse: IntArray
    fine: IntArray
    fine_sums: FloatArray
    missing: IntArray
    below: IntArray
    above: IntArray
    sums: FloatArray
    predictions: int
    classes: IntArray
    confidence: IntArray
    confidence_sum: float
    other_version: int

    @property
    def present(self) -> IntArray:
        """Non-missing values per feature."""
        return self.readings - self.missing


class DriftLayout:
    """Slot layout of one window's counts for a :class:`DriftProfile`.

    Integer slots: readings, coarse (PSI) bins, fine (KS / Wasserstein) bins,
    missing, below and above the training range, per feature; predictions,
    predicted-class counts, confidence bins, predictions of another model
    version. Float slots: value sums per feature and per fine bin, confidence sum.
    """

    def __init__(self, profile: DriftProfile) -> None:
        self.profile = profile
        n_feat = len(profile.features)
        self.n_features = n_feat
        self.k_coarse = profile.coarse_edges.shape[1] + 1
        self.k_fine = profile.fine_edges.shape[1] + 1
        self.k_conf = len(profile.confidence_edges) - 1
        self.n_classes = len(profile.classes)
        sizes = {
            "readings": 1,
            "coarse": n_feat * self.k_coarse,
            "fine": n_feat * self.k_fine,
            "missing": n_feat,
            "below": n_feat,
            "above": n_feat,
            "predictions": 1,
            "classes": self.n_classes,
            "confidence": self.k_conf,
            "other_version": 1,
        }
        self.int_slots = self._offsets(sizes)
        self.float_slots = self._offsets(
            {"sums": n_feat, "fine_sums": n_feat * self.k_fine, "confidence_sum": 1}
        )
        self.n_int = sum(sizes.values())
        self.n_float = n_feat + n_feat * self.k_fine + 1
        self._int_names = np.array([str(i) for i in range(self.n_int)], dtype=object)
        self._float_names = np.array([f"f{i}" for i in range(self.n_float)], dtype=object)

    @staticmethod
    def _offsets(sizes: Mapping[str, int]) -> dict[str, slice]:
        out, at = {}, 0
        for name, size in sizes.items():
            out[name] = slice(at, at + size)
            at += size
        return out

    # ------------------------------------------------------------ batch -> counts

    def readings(
        self, x: npt.ArrayLike, groupings: Sequence[npt.ArrayLike], n_groups: int
    ) -> tuple[IntArray, FloatArray]:
        """Counts a batch of readings adds to each of ``n_groups`` windows.

        Parameters
        ----------
        x
            ``(n, F)`` features in model order, ``NaN`` where missing.
        groupings
            One or more ``(n,)`` arrays: the group (window and subject) of each
            row in ``[0, n_groups)``; a row counts once in each grouping (e.g.
            its model version's window and its rig's). Values are binned once.
        n_groups
            Number of groups.

        Returns
        -------
        tuple
            ``(ints (n_groups, n_int), floats (n_groups, n_float))``.
        """
        x = np.asarray(x, dtype=np.float64)
        p, s, f = self.profile, self.int_slots, self.float_slots
        n = x.shape[0]
        present = ~np.isnan(x)
        pr, pj = np.nonzero(present)
        mr, mj = np.nonzero(~present)
        values = x[pr, pj]
        fine_bin = s["fine"].start + pj * self.k_fine + _bins(x, p.fine_edges)[pr, pj]
        low, high = values < p.low[pj], values > p.high[pj]
        # Slot of every count a row adds, and the row it belongs to: group-independent.
        slots = np.concatenate(
            [
                np.full(n, s["readings"].start),
                s["coarse"].start + pj * self.k_coarse + _bins(x, p.coarse_edges)[pr, pj],
                fine_bin,
                s["missing"].start + mj,
                s["below"].start + pj[low],
                s["above"].start + pj[high],
            ]
        )
        rows = np.concatenate([np.arange(n), pr, pr, mr, pr[low], pr[high]])
        fslots = np.concatenate([f["sums"].start + pj, f["fine_sums"].start + (fine_bin - s["fine"].start)])
        weights = np.concatenate([values, values])
        frows = np.concatenate([pr, pr])
        gs = [np.asarray(g, dtype=np.int64) for g in groupings]
        ints = np.bincount(
            np.concatenate([g[rows] * self.n_int + slots for g in gs]), minlength=n_groups * self.n_int
        )
        floats = np.bincount(
            np.concatenate([g[frows] * self.n_float + fslots for g in gs]),
            weights=np.tile(weights, len(gs)),
            minlength=n_groups * self.n_float,
        )
        return (
            ints.reshape(n_groups, self.n_int).astype(np.int64),
            floats.reshape(n_groups, self.n_float).astype(np.float64),
        )

    def predictions(
        self,
        class_index: npt.ArrayLike,
        confidence: npt.ArrayLike,
        same_version: npt.ArrayLike,
        groupings: Sequence[npt.ArrayLike],
        n_groups: int,
    ) -> tuple[IntArray, FloatArray]:
        """Counts a batch of predictions adds (groupings as :meth:`readings`).

        Predictions of another model version are only counted.
        """
        cls = np.asarray(class_index, dtype=np.int64)
        conf = np.asarray(confidence, dtype=np.float64)
        mine = np.asarray(same_version, dtype=bool)
        s = self.int_slots
        conf_bin = np.searchsorted(self.profile.confidence_inner_edges, conf, side="left")
        slots = np.concatenate(
            [
                np.full(int(mine.sum()), s["predictions"].start),
                s["classes"].start + cls[mine],
                s["confidence"].start + conf_bin[mine],
                np.full(int((~mine).sum()), s["other_version"].start),
            ]
        )
        rows = np.concatenate([np.flatnonzero(mine)] * 3 + [np.flatnonzero(~mine)])
        gs = [np.asarray(g, dtype=np.int64) for g in groupings]
        ints = np.bincount(
            np.concatenate([g[rows] * self.n_int + slots for g in gs]), minlength=n_groups * self.n_int
        )
        conf_sums = np.bincount(
            np.concatenate([g[mine] for g in gs]), weights=np.tile(conf[mine], len(gs)), minlength=n_groups
        )
        floats = np.zeros((n_groups, self.n_float))
        floats[:, self.float_slots["confidence_sum"].start] = conf_sums
        return ints.reshape(n_groups, self.n_int).astype(np.int64), floats

    # ------------------------------------------------------------ counts <-> hash fields

    def fields(self, ints: IntArray, floats: FloatArray) -> tuple[dict[str, int], dict[str, float]]:
        """One group's non-zero slots as hash fields (what ``HINCRBY`` adds)."""
        nz = np.flatnonzero(ints)
        fz = np.flatnonzero(floats)
        return (
            dict(zip(self._int_names[nz].tolist(), ints[nz].tolist(), strict=True)),
            dict(zip(self._float_names[fz].tolist(), floats[fz].tolist(), strict=True)),
        )

    def totals(self, hash_fields: Mapping[Any, Any], packed: Iterable[bytes] = ()) -> WindowTotals:
        """A window's totals: its Redis hash (missing fields are 0) plus its *packed* counts items.

        Raises
        ------
        ValueError
            A packed item is malformed or was written for another layout.
        """
        ints = np.zeros(self.n_int, dtype=np.int64)
        floats = np.zeros(self.n_float)
        for key, value in hash_fields.items():
            name = key.decode() if isinstance(key, bytes) else key
            if name.startswith("f"):
                floats[int(name[1:])] = float(value)
            else:
                ints[int(name)] = int(value)
        for item in packed:
            more_ints, more_floats = unpack_counts(item, self.n_int, self.n_float)
            ints += more_ints
            floats += more_floats
        s, f = self.int_slots, self.float_slots
        shape = (self.n_features, -1)
        return WindowTotals(
            readings=int(ints[s["readings"]][0]),
            coarse=ints[s["coarse"]].reshape(shape),
            fine=ints[s["fine"]].reshape(shape),
            fine_sums=floats[f["fine_sums"]].reshape(shape),
            missing=ints[s["missing"]],
            below=ints[s["below"]],
            above=ints[s["above"]],
            sums=floats[f["sums"]],
            predictions=int(ints[s["predictions"]][0]),
            classes=ints[s["classes"]],
            confidence=ints[s["confidence"]],
            confidence_sum=float(floats[f["confidence_sum"]][0]),
            other_version=int(ints[s["other_version"]][0]),
        )
