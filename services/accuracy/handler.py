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
from rigwatch.windowing import Updates, decode_valid, max_event_per_source, metric_window
from services.accuracy.join import SEP, event_key

__all__ = ["AccuracyHandler", "Pairs"]

# Join arguments per prediction (event id, version, event time, estimate, payload) and per actual.
_PREDICTION_ARGS, _ACTUAL_ARGS = 5, 3
#: Fields of a pair item: the prediction's payload (6), then the actual's (2).
_PAIR_FIELDS = 8


class Pairs:
    """Columns of a window's labelled pairs, parsed from the join's items."""

    def __init__(self, items: Sequence[bytes], n_classes: int) -> None:
        # Item fields: rig, event_ms, predicted, probabilities, estimate, role | label, observed_ms.
        # Split all at once and converted a column at a time by numpy: a window holds
        # thousands of pairs, and a split and int()/float() per field were most of emitting it.
        n = len(items)
        fields = SEP.encode().join(items).decode().split(SEP) if n else []
        if len(fields) != _PAIR_FIELDS * n:
            raise ValueError(f"pair items must have {_PAIR_FIELDS} fields each: {len(fields)} in {n} items")
        column = [fields[k::_PAIR_FIELDS] for k in range(_PAIR_FIELDS)]
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
    ) -> None:
        self._predictions, self._actuals = predictions, actuals
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
