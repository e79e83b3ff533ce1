"""The accuracy processor's pure logic: batches in, join arguments out; closed windows in, MetricWindows out.

Windows are in *label time*: a labelled pair counts in the window its label
arrived in (max of the prediction's event time and the label's observed
time), so a window answers "how right was the model on the labels that came
in now". ``predictions`` and the estimated accuracy count in the window of the
prediction's own event time; ``coverage`` (labelled / predicted in the same
window) is therefore a rate: in a steady stream, the share of predictions
that get a label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rigwatch.codec import Codec
from rigwatch.model import metrics as classification
from rigwatch.model.calibration import ConfidenceCalibration
from rigwatch.model.compare import BETTER, WORSE, Comparison, PairedCounts, compare
from rigwatch.windowing import Updates, decode_valid, max_event_per_source, metric_window
from services.accuracy.join import SEP, comparison_versions, event_key

__all__ = ["AccuracyHandler", "ComparedPairs", "Pairs"]

# Join arguments per prediction (event id, version, event time, estimate, payload) and per actual.
_PREDICTION_ARGS, _ACTUAL_ARGS = 5, 3
#: Fields of a prediction payload, and of a pair item: the prediction's payload, then the actual's (2).
_PAYLOAD_FIELDS = 6
_PAIR_FIELDS = _PAYLOAD_FIELDS + 2
#: The verdict as a metric (alert rules compare numbers).
VERDICT_VALUE = {BETTER: 1.0, WORSE: -1.0}


def _split(items: Sequence[bytes], width: int) -> list[list[str]]:
    """The columns of *items* of *width* fields each: split all at once (thousands per window)."""
    n = len(items)
    fields = SEP.encode().join(items).decode().split(SEP) if n else []
    if len(fields) != width * n:
        raise ValueError(f"items must have {width} fields each: {len(fields)} in {n} items")
    return [fields[k::width] for k in range(width)]


class Pairs:
    """Columns of a window's labelled pairs, parsed from the join's items."""

    def __init__(self, items: Sequence[bytes], n_classes: int) -> None:
        # Item fields: rig, event_ms, predicted, probabilities, estimate, role | label, observed_ms.
        # Converted a column at a time by numpy: a window holds thousands of pairs, and a
        # split and int()/float() per field were most of emitting it.
        n = len(items)
        column = _split(items, _PAIR_FIELDS)
        self.rig = column[0]
        self.event_ms = np.array(column[1], dtype=np.int64)
        self.predicted = np.array(column[2], dtype=np.intp)
        probabilities = ",".join(column[3]).split(",") if n else []
        self.proba = np.array(probabilities, dtype=np.float64).reshape(n, n_classes)
        self.estimate = np.array(column[4], dtype=np.float64)
        self.role = column[5]
        self.label = np.array(column[6], dtype=np.intp)
        self.observed_ms = np.array(column[7], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.label)


class ComparedPairs:
    """Champion and challenger on the same labelled events, parsed from a comparison window's items."""

    def __init__(self, items: Sequence[bytes], n_classes: int) -> None:
        # Item fields: the champion's payload, the challenger's, then label and observed time.
        n = len(items)
        column = _split(items, 2 * _PAYLOAD_FIELDS + 2)
        self.label = np.array(column[2 * _PAYLOAD_FIELDS], dtype=np.intp)

        def proba(k: int) -> np.ndarray:
            values = ",".join(column[k]).split(",") if n else []
            return np.array(values, dtype=np.float64).reshape(n, n_classes)

        self.champion_predicted = np.array(column[2], dtype=np.intp)
        self.challenger_predicted = np.array(column[_PAYLOAD_FIELDS + 2], dtype=np.intp)
        self.champion_proba, self.challenger_proba = proba(3), proba(_PAYLOAD_FIELDS + 3)

    def counts(self) -> PairedCounts:
        """The labelled part of the comparison's counts."""
        rows = np.arange(len(self.label))
        return PairedCounts.from_arrays(
            self.champion_predicted == self.label,
            self.challenger_predicted == self.label,
            -np.log(np.maximum(self.champion_proba[rows, self.label], 1e-15)),
            -np.log(np.maximum(self.challenger_proba[rows, self.label], 1e-15)),
        )


class AccuracyHandler:
    """Turn batches into join arguments and closed windows into ``kind=accuracy`` MetricWindows.

    Parameters
    ----------
    predictions, actuals
        Codecs of ``rig.predictions`` and ``rig.actuals``.
    classes
        Class labels in model order (``"3", "20", "100"``).
    calibration
        P(correct | confidence) from the model package: the estimated accuracy.
    namespace
        The window store's namespace: the join keeps its state under it.
    size_ms, horizon_ms, min_count
        Window length, how long either side waits for the other (event time),
        and the fewest labelled pairs that get realised metrics.
    compare_alpha, compare_min_pairs
        The champion/challenger verdict's error bound and fewest labelled pairs
        (:func:`~rigwatch.model.compare.compare`).
    """

    def __init__(
        self,
        predictions: Codec,
        actuals: Codec,
        classes: Sequence[str],
        calibration: ConfidenceCalibration,
        *,
        namespace: str,
        size_ms: int,
        horizon_ms: int,
        min_count: int,
        compare_alpha: float = 0.05,
        compare_min_pairs: int = 100,
    ) -> None:
        self._predictions, self._actuals = predictions, actuals
        self.compare_alpha, self.compare_min_pairs = compare_alpha, compare_min_pairs
        self.classes = tuple(classes)
        self._index = {label: k for k, label in enumerate(self.classes)}
        self._class_set = frozenset(self.classes)
        self.calibration = calibration
        self.size_ms, self.horizon_ms, self.min_count = size_ms, horizon_ms, min_count
        self._head = [f"{namespace}:", size_ms, horizon_ms]

    # ------------------------------------------------------------ batches -> join arguments

    def predictions(self, values: Sequence[bytes | None], sources: Sequence[str]) -> Updates:
        """Join arguments for Prediction bytes; undecodable or unknown-class records are counted."""
        decoded, used, bad = decode_valid(
            self._predictions,
            values,
            sources,
            lambda r: r["predicted_label"] in self._index and r["probabilities"].keys() == self._class_set,
        )
        estimates = self.calibration.estimate(np.array([r["confidence"] for r in decoded], dtype=np.float64))
        args: list[Any] = []
        classes = self.classes
        for record, estimate in zip(decoded, estimates.tolist(), strict=True):
            probabilities = record["probabilities"]
            proba = ",".join([repr(probabilities[c]) for c in classes])
            text = repr(estimate)
            payload = SEP.join(
                (
                    record["rig_id"],
                    str(record["event_time"]),
                    str(self._index[record["predicted_label"]]),
                    proba,
                    text,
                    record["role"],
                )
            )
            event = event_key(record["event_id"])
            args += [event, record["model_version"], record["event_time"], text, payload]
        times = [r["event_time"] for r in decoded]
        return Updates([], max_event_per_source(used, times), bad, {"predictions": args})

    def actuals(self, values: Sequence[bytes | None], sources: Sequence[str]) -> Updates:
        """Join arguments for Actual bytes; undecodable records and unknown labels are counted."""
        records, used, bad = decode_valid(self._actuals, values, sources, lambda r: r["label"] in self._index)
        args: list[Any] = []
        for record in records:
            observed = record["observed_time"]
            label = self._index[record["label"]]
            args += [event_key(record["event_id"]), observed, f"{label}{SEP}{observed}"]
        times = [r["observed_time"] for r in records]
        return Updates([], max_event_per_source(used, times), bad, {"actuals": args})

    def join_args(self, extension: Mapping[str, Sequence[Any]]) -> list[Any]:
        """The join's arguments (:data:`~services.accuracy.join.JOIN_LUA`) for accumulated batches."""
        predictions, actuals = extension.get("predictions", ()), extension.get("actuals", ())
        return [
            *self._head,
            len(predictions) // _PREDICTION_ARGS,
            *predictions,
            len(actuals) // _ACTUAL_ARGS,
            *actuals,
        ]

    # ------------------------------------------------------------ closed window -> record

    def window(
        self,
        subject: str,
        start_ms: int,
        fields: Mapping[bytes, bytes],
        items: Sequence[bytes],
        late: int,
        unlabelled: int,
    ) -> dict[str, object]:
        """The MetricWindow of a closed window: realised metrics on its pairs, estimate, coverage."""
        k = len(self.classes)
        predicted = int(fields.get(b"predictions", 0))
        pairs = Pairs(items, k)
        n = len(pairs)
        m: dict[str, float] = {
            "predictions": float(predicted),
            "labelled": float(n),
            "unlabelled_expired": float(unlabelled),
            "late_records": float(late),
        }
        detail: dict[str, Any] = {"classes": list(self.classes)}
        if predicted:
            m["coverage"] = n / predicted
            m["estimated_accuracy"] = float(fields.get(b"estimated_correct", 0.0)) / predicted
        if n:
            latency_s = np.maximum(pairs.observed_ms - pairs.event_ms, 0) / 1000
            m["label_latency_s.p50"], m["label_latency_s.p95"] = np.percentile(latency_s, [50, 95]).tolist()
            # The estimate on exactly the labelled pairs, beside what they realised.
            m["estimated_accuracy_labelled"] = float(pairs.estimate.mean())
            detail["roles"] = dict(Counter(pairs.role))
            detail["prediction_time"] = [int(pairs.event_ms.min()), int(pairs.event_ms.max())]
        if n >= self.min_count:
            confusion = classification.confusion_matrix(pairs.label, pairs.predicted, k)
            precision, recall, _ = classification.precision_recall_f1(confusion)
            m["accuracy"] = classification.accuracy(pairs.label, pairs.predicted)
            m["log_loss"] = classification.log_loss(pairs.label, pairs.proba)
            m["macro_f1"] = classification.macro_f1(confusion)
            m["mcc"] = classification.mcc_from_confusion(confusion)
            for c, label in enumerate(self.classes):
                m[f"recall.{label}"] = float(recall[c])
                m[f"precision.{label}"] = float(precision[c])
            m["accuracy_gap"] = m["estimated_accuracy_labelled"] - m["accuracy"]
            detail["confusion"] = confusion.tolist()
            detail["verdict"] = "measured"
        else:
            detail["verdict"] = "no_verdict" if n else "no_labels"
        return metric_window("accuracy", subject, start_ms, start_ms + self.size_ms, n, m, detail)

    # ------------------------------------------------------------ closed comparison window -> record

    def window_counts(self, fields: Mapping[bytes, bytes], items: Sequence[bytes]) -> dict[str, Any]:
        """What a closed comparison window adds to its cumulative: counts and summed estimates (JSON-able)."""
        counts = ComparedPairs(items, len(self.classes)).counts() + PairedCounts(
            predicted=int(fields.get(b"compared", 0)), agreements=int(fields.get(b"agreements", 0))
        )
        estimated = [
            float(fields.get(b"estimated_champion", 0.0)),
            float(fields.get(b"estimated_challenger", 0.0)),
        ]
        return {"counts": counts.to_dict(), "estimated": estimated}

    def comparison(
        self, subject: str, start_ms: int, window: Mapping[str, Any], cumulative: Sequence[Mapping[str, Any]]
    ) -> dict[str, object]:
        """The ``kind=comparison`` MetricWindow of a closed window (:meth:`window_counts`), with the verdict
        on the *cumulative* counts (every window of the pair so far, this one included).

        Its subject is the challenger's version; ``detail`` names the champion, the verdict and the method.
        """
        versions = comparison_versions(subject)
        if versions is None:
            raise ValueError(f"subject {subject!r} is not a comparison subject")
        champion, challenger = versions
        total = sum((PairedCounts.from_dict(c["counts"]) for c in cumulative), PairedCounts())
        estimated = np.sum([c["estimated"] for c in cumulative], axis=0) if cumulative else np.zeros(2)
        result = compare(total, alpha=self.compare_alpha, minimum_pairs=self.compare_min_pairs)
        this = compare(PairedCounts.from_dict(window["counts"]), alpha=self.compare_alpha, minimum_pairs=1)
        m = _comparison_metrics(result)
        m |= {f"window.{k}": v for k, v in _comparison_metrics(this).items() if k in _WINDOW_METRICS}
        if total.predicted:
            m["estimated_champion_accuracy"] = float(estimated[0]) / total.predicted
            m["estimated_challenger_accuracy"] = float(estimated[1]) / total.predicted
        detail = {
            "champion": champion,
            "challenger": challenger,
            "verdict": result.verdict,
            "reason": result.reason,
            "method": result.method,
            "n_needed": result.n_needed,
        }
        return metric_window("comparison", challenger, start_ms, start_ms + self.size_ms, this.n, m, detail)


#: Per-window figures published beside the cumulative ones (as ``window.<name>``).
_WINDOW_METRICS = (
    "n", "predicted", "agreement", "champion_accuracy", "challenger_accuracy", "champion_log_loss",
    "challenger_log_loss", "b", "c",
)  # fmt: skip


def _comparison_metrics(result: Comparison) -> dict[str, float]:
    """The numbers of a :class:`~rigwatch.model.compare.Comparison` (NaN ones are left out later)."""
    m = {k: float(v) for k, v in result.to_dict().items() if isinstance(v, int | float) and v is not None}
    m["verdict"] = VERDICT_VALUE.get(result.verdict, 0.0)
    if result.n_needed is None:
        m.pop("n_needed", None)
    return m
