"""The drift processor's pure logic: batches in, window updates out; closed windows in, MetricWindows out."""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import numpy as np

from rigwatch.codec import Codec
from rigwatch.drift.counts import DriftLayout
from rigwatch.drift.detectors import ChangeDetectors
from rigwatch.drift.evaluate import evaluate
from rigwatch.drift.profile import DriftProfile
from rigwatch.fastcodec import BatchDecoder
from rigwatch.windowing import Update, Updates, metric_window, segment, window_start
from services.drift.predictions import PredictionReader, factorize

__all__ = ["DriftHandler", "window_groups"]


def window_groups(
    times: np.ndarray, rigs: Sequence[str], size_ms: int, version: str
) -> tuple[list[tuple[str, int]], np.ndarray, np.ndarray]:
    """``(subject, window start)`` keys, and per row its version group and its rig segment group."""
    return _window_groups(times, *factorize(rigs), size_ms, version)


def _window_groups(
    times: np.ndarray, rigs: Sequence[str], rig_index: np.ndarray, size_ms: int, version: str
) -> tuple[list[tuple[str, int]], np.ndarray, np.ndarray]:
    """:func:`window_groups` of rows whose rig is ``rigs[rig_index]`` (*rigs* distinct and sorted)."""
    starts = window_start(times, size_ms)
    uniq_starts, start_idx = np.unique(starts, return_inverse=True)
    start_idx = start_idx.reshape(-1)
    n_windows = len(uniq_starts)
    keys = [(version, int(s)) for s in uniq_starts.tolist()]
    keys += [(segment(r), s) for r in rigs for _, s in keys[:n_windows]]
    return keys, start_idx, n_windows + rig_index * n_windows + start_idx


def _max_event_per_source(sources: Sequence[str], rows: np.ndarray, times: np.ndarray) -> dict[str, int]:
    """:func:`~rigwatch.windowing.max_event_per_source` of rows *rows* of a batch read from *sources*."""
    distinct = set(sources)
    if len(distinct) == 1:
        t = int(times.max(initial=-1))
        return {next(iter(distinct)): t} if t > -1 else {}
    at = {source: k for k, source in enumerate(distinct)}
    codes = np.fromiter((at[s] for s in sources), np.int64, len(sources))[rows]
    best = np.full(len(at), -1, np.int64)
    np.maximum.at(best, codes, times)
    return {source: int(best[k]) for source, k in at.items() if best[k] > -1}


class DriftHandler:
    """Turn decoded batches into :class:`~rigwatch.windowstore.Update` and closed windows into records.

    Each record counts in two subjects: the model version (all rigs) and its
    rig's segment ``rig:<rig_id>``.
    """

    def __init__(
        self,
        profile: DriftProfile,
        readings: Codec,
        predictions: Codec,
        *,
        size_ms: int,
        min_count: int,
    ) -> None:
        self.profile = profile
        self.layout = DriftLayout(profile)
        self.size_ms, self.min_count = size_ms, min_count
        self._decoder = BatchDecoder(readings)
        self._predictions = PredictionReader(predictions, profile.classes, profile.model_version)
        self._columns: np.ndarray | None = None

    # ------------------------------------------------------------ batches -> updates

    @staticmethod
    def _updates(
        keys: list[tuple[str, int]], ints: np.ndarray, floats: np.ndarray, records: np.ndarray
    ) -> list[Update]:
        """One update per window with records: its rows of *ints* and *floats* as dense counts."""
        return [
            Update(keys[g][0], keys[g][1], int(records[g]), counts=(ints[g], floats[g]))
            for g in np.flatnonzero(records).tolist()
        ]

    def readings(self, values: Sequence[bytes | None], sources: Sequence[str]) -> Updates:
        """Updates from SensorReading bytes read from *sources* (``topic/partition`` per value).

        Undecodable records are counted, not used.
        """
        batch = self._decoder.decode(values)
        if len(batch) == 0:
            return Updates([], {}, len(batch.rejects))
        if self._columns is None:
            names = batch.double_names
            self._columns = np.array([names.index(f) for f in self.profile.features], dtype=np.intp)
        # float64, as the reference edges and ranges were computed: float32 would move
        # values sitting on an edge into the next bin.
        x = batch.doubles[:, self._columns]
        x = np.where(np.isfinite(x), x, np.nan)
        times = batch.longs["event_time"]
        keys, version_group, segment_group = window_groups(
            times, batch.strings["rig_id"], self.size_ms, self.profile.model_version
        )
        ints, floats = self.layout.readings(x, [version_group, segment_group], len(keys))
        records = np.bincount(np.concatenate([version_group, segment_group]), minlength=len(keys))
        return Updates(
            self._updates(keys, ints, floats, records),
            _max_event_per_source(sources, batch.index, times),
            len(batch.rejects),
        )

    def predictions(self, values: Sequence[bytes | None], sources: Sequence[str]) -> Updates:
        """Updates from Prediction bytes, as :meth:`readings`.

        Records that do not decode or predict a label that is not one of the model's
        classes are counted, not used.
        """
        batch = self._predictions.read(values)
        if not len(batch):
            return Updates([], {}, batch.unusable)
        keys, version_group, segment_group = _window_groups(
            batch.event_time, batch.rigs, batch.rig, self.size_ms, self.profile.model_version
        )
        groups = [version_group, segment_group]
        ints, floats = self.layout.predictions(
            batch.label, batch.confidence, batch.same_version, groups, len(keys)
        )
        records = np.bincount(np.concatenate(groups), minlength=len(keys))
        return Updates(
            self._updates(keys, ints, floats, records),
            _max_event_per_source(sources, batch.index, batch.event_time),
            batch.unusable,
        )

    # ------------------------------------------------------------ closed window -> record

    def new_detectors(self) -> ChangeDetectors:
        """Fresh change detectors for a subject."""
        return ChangeDetectors(self.profile.classes, self.profile.features)

    def window(
        self,
        subject: str,
        start_ms: int,
        fields: dict[bytes, bytes],
        late: int,
        detectors: ChangeDetectors,
        items: Sequence[bytes] = (),
    ) -> dict[str, object]:
        """The MetricWindow record of a closed window (its hash *fields* and packed counts
        *items*); feeds *detectors* (in window order)."""
        totals = self.layout.totals(fields, items)
        metrics, detail = evaluate(self.profile, totals, self.min_count)
        metrics["late_records"] = float(late)
        if "drift" in metrics:
            shift = np.array([metrics.get(f"mean_shift.{f}", np.nan) for f in self.profile.features])
            detectors.update(
                totals.classes,
                totals.confidence,
                self.profile.confidence_centres.tolist(),
                shift * np.sqrt(totals.present),
            )
            for name in detectors.changes:
                metrics[f"change.{name}"] = 1.0
            detail["changes"] = detectors.changes
        return metric_window(
            "drift", subject, start_ms, start_ms + self.size_ms, totals.readings, metrics, detail
        )

    @staticmethod
    def dump_detectors(detectors: ChangeDetectors) -> bytes:
        """Detector state for Redis (trusted storage: it is a pickle)."""
        return pickle.dumps(detectors)

    def load_detectors(self, state: bytes | None) -> ChangeDetectors:
        """Detectors saved by :meth:`dump_detectors`, or fresh ones."""
        return self.new_detectors() if state is None else pickle.loads(state)
