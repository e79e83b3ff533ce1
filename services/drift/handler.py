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
from rigwatch.windowing import (
    Update,
    Updates,
    decode_valid,
    max_event_per_source,
    metric_window,
    segment,
    window_start,
)

__all__ = ["DriftHandler", "window_groups"]


def window_groups(
    times: np.ndarray, rigs: Sequence[str], size_ms: int, version: str
) -> tuple[list[tuple[str, int]], np.ndarray, np.ndarray]:
    """``(subject, window start)`` keys, and per row its version group and its rig segment group."""
    starts = window_start(times, size_ms)
    uniq_starts, start_idx = np.unique(starts, return_inverse=True)
    uniq_rigs, rig_idx = np.unique(np.asarray(rigs, dtype=object), return_inverse=True)
    n_windows = len(uniq_starts)
    keys = [(version, int(s)) for s in uniq_starts]
    keys += [(segment(str(r)), int(s)) for r in uniq_rigs for s in uniq_starts]
    return keys, start_idx, n_windows + rig_idx * n_windows + start_idx


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
        self._predictions = predictions
        self._columns: np.ndarray | None = None
        self._class_index = {label: k for k, label in enumerate(profile.classes)}

    # ------------------------------------------------------------ batches -> updates

    def _updates(
        self, keys: list[tuple[str, int]], ints: np.ndarray, floats: np.ndarray, records: np.ndarray
    ) -> list[Update]:
        out = []
        for g, (subject, start) in enumerate(keys):
            if records[g] == 0:
                continue
            i, f = self.layout.fields(ints[g], floats[g])
            out.append(Update(subject, start, int(records[g]), i, f))
        return out

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
        row_sources = [sources[i] for i in batch.index.tolist()]
        return Updates(
            self._updates(keys, ints, floats, records),
            max_event_per_source(row_sources, times.tolist()),
            len(batch.rejects),
        )

    def predictions(self, values: Sequence[bytes | None], sources: Sequence[str]) -> Updates:
        """Updates from Prediction bytes (decoded one by one: they hold a map), as :meth:`readings`."""
        decoded, decoded_sources, bad = decode_valid(
            self._predictions, values, sources, lambda r: r["predicted_label"] in self._class_index
        )
        if not decoded:
            return Updates([], {}, bad)
        times = np.array([r["event_time"] for r in decoded], dtype=np.int64)
        keys, version_group, segment_group = window_groups(
            times, [r["rig_id"] for r in decoded], self.size_ms, self.profile.model_version
        )
        cls = np.array([self._class_index[r["predicted_label"]] for r in decoded])
        conf = np.array([r["confidence"] for r in decoded], dtype=np.float64)
        mine = np.array([r["model_version"] == self.profile.model_version for r in decoded])
        ints, floats = self.layout.predictions(cls, conf, mine, [version_group, segment_group], len(keys))
        records = np.bincount(np.concatenate([version_group, segment_group]), minlength=len(keys))
        return Updates(
            self._updates(keys, ints, floats, records),
            max_event_per_source(decoded_sources, times.tolist()),
            bad,
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
    ) -> dict[str, object]:
        """The MetricWindow record of a closed window; feeds *detectors* (in window order)."""
        totals = self.layout.totals(fields)
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
