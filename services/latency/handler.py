"""The latency processor's pure logic: predictions and DLQ records in, window updates out; windows out.

A health window is in the scorer's time: a prediction counts in the window
holding its ``scored_time``, a DLQ record in the window holding its Kafka
timestamp (the scorer stamps it with its batch's ``scored_time``). Latencies
go into mergeable log-bucket sketches (:class:`~rigwatch.quantiles.LogBuckets`,
0.5 % relative error), so any number of workers add to one window with ``HINCRBY``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rigwatch.codec import Codec
from rigwatch.exceptions import SCORING_FAILED
from rigwatch.lag import LagSample
from rigwatch.quantiles import LogBuckets
from rigwatch.windowing import (
    Update,
    Updates,
    decode_valid,
    max_event_per_source,
    metric_window,
    window_start,
)

__all__ = ["UNKNOWN_VERSION", "DlqRecord", "LatencyHandler", "Subjects"]

#: Per subject: [the next window start to emit, its last prediction time or None].
Subjects = dict[str, list[Any]]

#: Subject of DLQ records that do not say which model version rejected them.
UNKNOWN_VERSION = "unknown"
_QUANTILES = (50, 95, 99)


@dataclass(frozen=True)
class DlqRecord:
    """What the processor uses of a DLQ record: when it was written and its headers."""

    timestamp_ms: int
    headers: Mapping[str, str]


def _int_fields(fields: Mapping[bytes, bytes], prefix: bytes) -> dict[str, int]:
    return {k[len(prefix) :].decode(): int(v) for k, v in fields.items() if k.startswith(prefix)}


class LatencyHandler:
    """Turn batches into :class:`~rigwatch.windowstore.Update` and closed windows into MetricWindows.

    Parameters
    ----------
    predictions
        Codec of ``rig.predictions`` (older writer versions decode too).
    size_ms
        Window length.
    buckets
        Latency buckets; fixed for a deployment (the counts do not record them).
    """

    def __init__(
        self,
        predictions: Codec,
        *,
        size_ms: int,
        forget_after_ms: int = 3_600_000,
        buckets: LogBuckets | None = None,
    ) -> None:
        self._predictions = predictions
        self.size_ms, self.forget_after_ms = size_ms, forget_after_ms
        self.buckets = buckets or LogBuckets()

    def _start(self, t: int) -> int:
        return window_start(t, self.size_ms)

    # ------------------------------------------------------------ batches -> updates

    def predictions(self, values: Sequence[bytes | None], sources: Sequence[str]) -> Updates:
        """Updates from Prediction bytes read from *sources*; undecodable records are counted."""
        records, used_sources, bad = decode_valid(self._predictions, values, sources)
        groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        for record in records:
            groups[(record["model_version"], self._start(record["scored_time"]))].append(record)
        updates = [self._prediction_update(subject, start, rs) for (subject, start), rs in groups.items()]
        times = [r["scored_time"] for r in records]
        return Updates(updates, max_event_per_source(used_sources, times), bad)

    def _prediction_update(self, subject: str, start: int, records: list[dict[str, Any]]) -> Update:
        scored = np.array([r["scored_time"] for r in records], dtype=np.float64)
        # processing_ms arrived with Prediction v2; a v1 record decodes with the default 0.0,
        # which a real measurement never is: such records have no processing time.
        processing = np.array([r["processing_ms"] for r in records], dtype=np.float64)
        known = processing > 0
        # Event to prediction ready: the batch is stamped (scored_time) as it leaves the
        # consumer; its processing time brings that to the moment the prediction exists.
        e2e = scored + processing - np.array([r["event_time"] for r in records], dtype=np.float64)
        skewed = e2e < 0  # an event time in the scorer's future: the producer's clock is off
        ints = {
            "predictions": len(records),
            "flagged": sum(1 for r in records if r["flags"]),
            "clock_skew": int(skewed.sum()),
        }
        # Per humility flag kind (missing, outlying, uncertain, override), once per prediction.
        kinds = Counter(kind for r in records for kind in {flag.split(":", 1)[0] for flag in r["flags"]})
        ints |= {f"flag.{kind}": n for kind, n in kinds.items()}
        ints |= {f"e2e.{b}": n for b, n in self.buckets.counts(np.where(skewed, 0.0, e2e)).items()}
        ints |= {f"proc.{b}": n for b, n in self.buckets.counts(processing[known]).items()}
        maxes = {"last_scored_ms": float(scored.max()), "e2e_max_ms": float(max(e2e.max(), 0.0))}
        if known.any():
            maxes["processing_max_ms"] = float(processing[known].max())
        return Update(subject, start, len(records), ints, {}, maxes)

    def dlq(self, records: Sequence[DlqRecord], sources: Sequence[str]) -> Updates:
        """Updates from DLQ records: counts by reason, data errors apart from system errors."""
        groups: dict[tuple[str, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for record in records:
            subject = record.headers.get("model_version") or UNKNOWN_VERSION
            reason = record.headers.get("error") or "unknown"
            counts = groups[(subject, self._start(record.timestamp_ms))]
            counts[f"dlq.{reason}"] += 1
            counts["system_errors" if reason == SCORING_FAILED else "data_errors"] += 1
            counts["dlq"] += 1
        updates = [Update(subject, start, c["dlq"], dict(c)) for (subject, start), c in groups.items()]
        return Updates(updates, max_event_per_source(sources, [r.timestamp_ms for r in records]))

    # ------------------------------------------------------------ which windows, then records

    def due(
        self, known: Subjects, sealed: Sequence[tuple[str, int]], boundary_ms: int
    ) -> tuple[list[tuple[int, str]], Subjects]:
        """The windows to emit now, oldest first, and the subjects known after them.

        A stopped scorer must still be seen: every known model version gets a
        window per period up to *boundary_ms* (the closed boundary), an empty
        one when it had no data, until it has been silent ``forget_after_ms``
        (a retired version). Sealed windows are always emitted: a crash may
        have left one behind after the subject's next start moved on.

        Examples
        --------
        >>> h = LatencyHandler(None, size_ms=10, forget_after_ms=100)
        >>> h.due({"v1": [20, 15]}, [("v2", 30)], 50)
        ([(20, 'v1'), (30, 'v1'), (30, 'v2'), (40, 'v1'), (40, 'v2')], {'v1': [20, 15], 'v2': [30, None]})
        >>> h.due({"old": [500, 100]}, [], 1_000)  # silent for 900 ms > 100: retired
        ([], {})
        """
        known = {subject: list(state) for subject, state in known.items()}
        with_data: dict[str, set[int]] = {}
        for subject, start in sealed:
            with_data.setdefault(subject, set()).add(start)
            known.setdefault(subject, [start, None])
        due: list[tuple[int, str]] = []
        for subject, (next_start, last_ms) in list(known.items()):
            starts = set(with_data.get(subject, ()))
            silent_since = next_start if last_ms is None else last_ms
            if not starts and boundary_ms - silent_since > self.forget_after_ms:
                del known[subject]
                continue
            starts.update(range(next_start, boundary_ms, self.size_ms))
            due += [(start, subject) for start in starts]
        return sorted(due), known

    def window(
        self,
        subject: str,
        start_ms: int,
        fields: Mapping[bytes, bytes],
        late: int,
        last_prediction_ms: float | None,
        lag: LagSample | None,
    ) -> tuple[dict[str, object], float | None]:
        """The MetricWindow of a closed window (empty *fields*: no data) and the new last prediction time.

        *last_prediction_ms* is the subject's latest ``scored_time`` before this
        window (``None``: never seen); *lag* the scorer group's lag sampled as
        the window is emitted.
        """
        end_ms = start_ms + self.size_ms
        n = int(fields.get(b"predictions", 0))
        data, system = int(fields.get(b"data_errors", 0)), int(fields.get(b"system_errors", 0))
        if b"last_scored_ms" in fields:
            last = float(fields[b"last_scored_ms"])
            last_prediction_ms = last if last_prediction_ms is None else max(last, last_prediction_ms)
        metrics: dict[str, float] = {
            "predictions": float(n),
            "rate_per_s": n / (self.size_ms / 1000),
            "no_data": float(n == 0),
            "data_errors": float(data),
            "system_errors": float(system),
            "late_records": float(late),
            "clock_skew": float(fields.get(b"clock_skew", 0)),
        }
        # Errors over everything the scorer was given in the window.
        handled = n + data + system
        if handled:
            metrics["data_error_rate"] = data / handled
            metrics["system_error_rate"] = system / handled
        if n:
            metrics["flagged_rate"] = int(fields.get(b"flagged", 0)) / n
            kinds = _int_fields(fields, b"flag.")
            metrics |= {f"flag_rate.{kind}": count / n for kind, count in kinds.items()}
        if last_prediction_ms is not None:
            metrics["staleness_s"] = max(0.0, (end_ms - last_prediction_ms) / 1000)
        reasons = _int_fields(fields, b"dlq.")
        metrics |= {f"dlq.{reason}": float(count) for reason, count in reasons.items()}
        for name, prefix, max_field in (
            ("latency_ms", b"e2e.", b"e2e_max_ms"),
            ("processing_ms", b"proc.", b"processing_max_ms"),
        ):
            counts = _int_fields(fields, prefix)
            if not counts:
                continue
            summary = self.buckets.summary(counts, _QUANTILES)
            # The max is exact (not a bucket's representative); a quantile cannot exceed it.
            top = float(fields[max_field])
            metrics |= {f"{name}.p{q}": min(summary[f"p{q}"], top) for q in _QUANTILES}
            metrics[f"{name}.max"] = top
        detail: dict[str, Any] = {"dlq_reasons": reasons}
        if lag is not None:
            metrics["scorer_lag"] = float(lag.total)
            metrics["scorer_lag_max_partition"] = float(lag.max_partition)
            detail["lag"] = {"group": lag.group, "topic": lag.topic, "partitions": lag.lag}
        return metric_window("health", subject, start_ms, end_ms, n, metrics, detail), last_prediction_ms
