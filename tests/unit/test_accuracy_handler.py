"""The accuracy processor's handler: join arguments from batches, MetricWindows from joined pairs."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from rigwatch.model import metrics as classification
from rigwatch.model.calibration import ConfidenceCalibration
from rigwatch.schemas import Codecs
from services.accuracy.handler import AccuracyHandler, Pairs
from services.accuracy.join import SEP, event_key

CLASSES = ("3", "20", "100")
NS = "test:accuracy"
SIZE, HORIZON, MIN_COUNT = 60_000, 600_000, 20
T0 = 1_718_000_040_000 - 1_718_000_040_000 % SIZE


@pytest.fixture(scope="module")
def codecs() -> Codecs:
    return Codecs.load()


@pytest.fixture
def handler(codecs: Codecs) -> AccuracyHandler:
    return AccuracyHandler(
        codecs.prediction,
        codecs.actual,
        CLASSES,
        ConfidenceCalibration.identity(),
        namespace=NS,
        size_ms=SIZE,
        horizon_ms=HORIZON,
        min_count=MIN_COUNT,
    )


def _prediction(**fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": "e0",
        "rig_id": "rig-001",
        "cycle": 7,
        "event_time": T0 + 1_000,
        "model_name": "cooler-lgbm",
        "model_version": "v1",
        "role": "champion",
        "probabilities": {"3": 0.125, "20": 0.25, "100": 0.625},
        "predicted_label": "100",
        "confidence": 0.625,
        "scored_time": T0 + 1_050,
        "flags": [],
        "processing_ms": 1.5,
    }
    return record | fields


def _actual(**fields: Any) -> dict[str, Any]:
    return {"event_id": "e0", "rig_id": "rig-001", "label": "100", "observed_time": T0 + 30_000} | fields


def _prediction_entries(args: list[Any]) -> list[list[Any]]:
    """The per-prediction argument groups of :meth:`AccuracyHandler.predictions`."""
    n = args[3]
    assert args[4 + 5 * n :] == [0]  # no actuals
    return [args[4 + 5 * k : 9 + 5 * k] for k in range(n)]


def _actual_entries(args: list[Any]) -> list[list[Any]]:
    """The per-actual argument groups of :meth:`AccuracyHandler.actuals`."""
    assert args[3] == 0  # no predictions
    n = args[4]
    assert len(args) == 5 + 3 * n
    return [args[5 + 3 * k : 8 + 3 * k] for k in range(n)]


class _Sample:
    """Random predictions with labels, their join items built by the handler, and the arrays behind them."""

    def __init__(self, handler: AccuracyHandler, codecs: Codecs, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.proba = rng.dirichlet([0.6, 0.6, 0.6], size=n)
        self.predicted = self.proba.argmax(axis=1)
        # Right about 70 % of the time, otherwise a random class.
        self.label = np.where(rng.random(n) < 0.7, self.predicted, rng.integers(0, 3, size=n))
        self.event_ms = T0 + rng.integers(0, SIZE, size=n)
        self.latency_ms = np.round(rng.lognormal(9.0, 1.0, size=n)).astype(np.int64)
        self.latency_ms[:3] = [-500, -1, 0]  # a label stamped before the event counts as latency 0
        self.observed_ms = self.event_ms + self.latency_ms
        self.role = np.where(rng.random(n) < 0.8, "champion", "challenger")
        self.rig = [f"rig-{k % 4:03d}" for k in range(n)]
        predictions = [
            codecs.prediction.encode(
                _prediction(
                    event_id=f"e{i}",
                    rig_id=self.rig[i],
                    event_time=int(self.event_ms[i]),
                    role=str(self.role[i]),
                    # Map order differs from the class order: the payload must follow the classes.
                    probabilities={c: float(self.proba[i, k]) for k, c in reversed(list(enumerate(CLASSES)))},
                    predicted_label=CLASSES[self.predicted[i]],
                    confidence=float(self.proba[i].max()),
                )
            )
            for i in range(n)
        ]
        actuals = [
            codecs.actual.encode(
                _actual(
                    event_id=f"e{i}",
                    rig_id=self.rig[i],
                    label=CLASSES[self.label[i]],
                    observed_time=int(self.observed_ms[i]),
                )
            )
            for i in range(n)
        ]
        p = _prediction_entries(handler.join_args(handler.predictions(predictions, ["p/0"] * n).extension))
        a = _actual_entries(handler.join_args(handler.actuals(actuals, ["a/0"] * n).extension))
        assert [e[0] for e in p] == [e[0] for e in a] == [event_key(f"e{i}") for i in range(n)]
        # The join's pair(): the prediction payload, the separator, the actual payload.
        self.items = [f"{pe[4]}{SEP}{ae[2]}".encode() for pe, ae in zip(p, a, strict=True)]
        self.estimate = np.array([float(e[3]) for e in p])


def _metrics(record: dict[str, object]) -> dict[str, float]:
    metrics = record["metrics"]
    assert isinstance(metrics, dict)
    return metrics


def test_window_metrics_equal_the_classification_functions_on_the_same_pairs(
    handler: AccuracyHandler, codecs: Codecs
) -> None:
    n, predicted_in_window = 300, 420
    s = _Sample(handler, codecs, n, seed=7)
    estimated_correct = float(s.proba.max(axis=1).sum()) + 0.5 * (predicted_in_window - n)
    fields = {
        b"predictions": str(predicted_in_window).encode(),
        b"estimated_correct": repr(estimated_correct).encode(),
    }

    record = handler.window("v1", T0, fields, s.items, late=4, unlabelled=9)
    m = _metrics(record)

    assert (record["kind"], record["subject"], record["window_start"], record["window_end"]) == (
        "accuracy",
        "v1",
        T0,
        T0 + SIZE,
    )
    assert record["count"] == n
    assert (m["predictions"], m["labelled"], m["unlabelled_expired"], m["late_records"]) == (
        420.0,
        300.0,
        9.0,
        4.0,
    )
    confusion = classification.confusion_matrix(s.label, s.predicted, 3)
    precision, recall, _ = classification.precision_recall_f1(confusion)
    assert (
        m["accuracy"]
        == classification.accuracy(s.label, s.predicted)
        == float(np.mean(s.label == s.predicted))
    )
    assert m["log_loss"] == classification.log_loss(s.label, s.proba)
    assert m["macro_f1"] == classification.macro_f1(confusion)
    assert (
        m["mcc"]
        == classification.mcc_from_confusion(confusion)
        == classification.mcc(s.label, s.predicted, 3)
    )
    for c, label in enumerate(CLASSES):
        assert m[f"recall.{label}"] == recall[c]
        assert m[f"precision.{label}"] == precision[c]
        # And by their definition, from the arrays.
        assert m[f"recall.{label}"] == pytest.approx(np.mean(s.predicted[s.label == c] == c), rel=1e-12)
        assert m[f"precision.{label}"] == pytest.approx(np.mean(s.label[s.predicted == c] == c), rel=1e-12)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log(s.proba[np.arange(n), s.label])), rel=1e-12)

    assert m["coverage"] == n / predicted_in_window
    assert m["estimated_accuracy"] == pytest.approx(estimated_correct / predicted_in_window, rel=1e-12)
    # Identity calibration: the estimate of a labelled pair is its confidence.
    np.testing.assert_array_equal(s.estimate, s.proba.max(axis=1))
    assert m["estimated_accuracy_labelled"] == pytest.approx(s.proba.max(axis=1).mean(), rel=1e-12)
    assert m["accuracy_gap"] == pytest.approx(m["estimated_accuracy_labelled"] - m["accuracy"], rel=1e-12)

    latency_s = np.maximum(s.latency_ms, 0) / 1000
    assert [m["label_latency_s.p50"], m["label_latency_s.p95"]] == pytest.approx(
        np.percentile(latency_s, [50, 95]).tolist(), rel=1e-12
    )

    detail = json.loads(str(record["detail"]))
    assert detail["verdict"] == "measured"
    assert detail["classes"] == list(CLASSES)
    assert detail["confusion"] == confusion.tolist()
    assert np.sum(detail["confusion"]) == n
    assert detail["roles"] == {r: int(np.sum(s.role == r)) for r in ("champion", "challenger")}
    assert detail["prediction_time"] == [int(s.event_ms.min()), int(s.event_ms.max())]
    assert "segment" not in detail


def test_pairs_parse_the_items_back_into_the_columns(handler: AccuracyHandler, codecs: Codecs) -> None:
    s = _Sample(handler, codecs, 50, seed=3)
    pairs = Pairs(s.items, 3)
    assert len(pairs) == 50
    assert pairs.rig == s.rig
    np.testing.assert_array_equal(pairs.event_ms, s.event_ms)
    np.testing.assert_array_equal(pairs.observed_ms, s.observed_ms)
    np.testing.assert_array_equal(pairs.predicted, s.predicted)
    np.testing.assert_array_equal(pairs.label, s.label)
    np.testing.assert_array_equal(pairs.proba, s.proba)  # repr round-trips every probability exactly
    assert pairs.role == s.role.tolist()


def test_a_rig_window_names_its_segment(handler: AccuracyHandler, codecs: Codecs) -> None:
    s = _Sample(handler, codecs, MIN_COUNT, seed=5)
    record = handler.window("rig:rig-002", T0, {b"predictions": b"20"}, s.items, 0, 0)
    detail = json.loads(str(record["detail"]))
    assert detail["segment"] == {"rig_id": "rig-002"}
    assert detail["verdict"] == "measured"  # exactly min_count pairs is enough
    m = _metrics(record)
    assert m["coverage"] == 1.0
    assert m["estimated_accuracy"] == 0.0  # no estimated_correct field: nothing was added


def test_below_min_count_there_are_no_realised_metrics(handler: AccuracyHandler, codecs: Codecs) -> None:
    s = _Sample(handler, codecs, MIN_COUNT - 1, seed=11)
    record = handler.window("v1", T0, {b"predictions": b"40", b"estimated_correct": b"30.5"}, s.items, 0, 0)
    m = _metrics(record)
    realised = {"accuracy", "log_loss", "macro_f1", "mcc", "accuracy_gap"}
    realised |= {f"{kind}.{c}" for kind in ("recall", "precision") for c in CLASSES}
    assert not realised & set(m)
    assert m["labelled"] == MIN_COUNT - 1
    assert m["coverage"] == (MIN_COUNT - 1) / 40
    assert m["estimated_accuracy"] == 30.5 / 40
    assert "label_latency_s.p50" in m and "estimated_accuracy_labelled" in m
    detail = json.loads(str(record["detail"]))
    assert detail["verdict"] == "no_verdict"
    assert "confusion" not in detail


def test_window_without_labels_says_no_labels(handler: AccuracyHandler) -> None:
    record = handler.window("v1", T0, {b"predictions": b"12", b"estimated_correct": b"9.0"}, [], 2, 5)
    m = _metrics(record)
    assert m == {
        "predictions": 12.0,
        "labelled": 0.0,
        "unlabelled_expired": 5.0,
        "late_records": 2.0,
        "coverage": 0.0,
        "estimated_accuracy": 0.75,
    }
    assert record["count"] == 0
    assert json.loads(str(record["detail"])) == {"classes": list(CLASSES), "verdict": "no_labels"}

    # Nothing at all: no rates over zero predictions.
    m = _metrics(handler.window("v1", T0, {}, [], 0, 0))
    assert m == {"predictions": 0.0, "labelled": 0.0, "unlabelled_expired": 0.0, "late_records": 0.0}


def test_predictions_become_join_arguments_and_bad_records_are_counted(
    handler: AccuracyHandler, codecs: Codecs
) -> None:
    good = _prediction(
        event_id="e1",
        rig_id="rig-009",
        event_time=T0 + 2_000,
        model_version="v7",
        role="challenger",
        probabilities={"100": 0.7, "3": 0.1, "20": 0.2},
        predicted_label="100",
        confidence=0.7,
    )
    second = _prediction(event_id="e2", event_time=T0 + 1_500, predicted_label="3", confidence=0.625)
    values = [
        codecs.prediction.encode(good),
        codecs.prediction.encode(_prediction(event_id="bad1", predicted_label="7")),
        codecs.prediction.encode(_prediction(event_id="bad2", probabilities={"3": 0.5, "20": 0.5})),
        codecs.prediction.encode(
            _prediction(event_id="bad3", probabilities={"3": 0.1, "20": 0.2, "100": 0.6, "7": 0.1})
        ),
        b"garbage",
        None,
        codecs.prediction.encode(second),
    ]
    sources = ["p/0", "p/1", "p/1", "p/1", "p/1", "p/1", "p/2"]
    out = handler.predictions(values, sources)
    assert out.undecodable == 5
    assert out.updates == []  # the join counts predictions, in the Lua script
    assert out.max_event_ms == {"p/0": T0 + 2_000, "p/2": T0 + 1_500}
    assert handler.join_args(out.extension) == [
        f"{NS}:",
        SIZE,
        HORIZON,
        2,
        event_key("e1"),
        "v7",
        T0 + 2_000,
        repr(0.7),
        SEP.join(["rig-009", str(T0 + 2_000), "2", "0.1,0.2,0.7", repr(0.7), "challenger"]),
        event_key("e2"),
        "v1",
        T0 + 1_500,
        repr(0.625),
        SEP.join(["rig-001", str(T0 + 1_500), "0", "0.125,0.25,0.625", repr(0.625), "champion"]),
        0,
    ]


def test_estimate_in_join_arguments_follows_the_calibration(codecs: Codecs) -> None:
    calibration = ConfidenceCalibration((0.5, 0.9), (0.5, 1.0), rows=40, method="isotonic")
    handler = AccuracyHandler(
        codecs.prediction,
        codecs.actual,
        CLASSES,
        calibration,
        namespace=NS,
        size_ms=SIZE,
        horizon_ms=HORIZON,
        min_count=MIN_COUNT,
    )
    out = handler.predictions([codecs.prediction.encode(_prediction(confidence=0.7))], ["p/0"])
    [entry] = _prediction_entries(handler.join_args(out.extension))
    assert float(entry[3]) == pytest.approx(0.75, rel=1e-12)
    assert entry[4].split(SEP)[4] == entry[3]


def test_actuals_become_join_arguments_and_unknown_labels_are_counted(
    handler: AccuracyHandler, codecs: Codecs
) -> None:
    values = [
        codecs.actual.encode(_actual(event_id="e1", label="20", observed_time=T0 + 9_000)),
        codecs.actual.encode(_actual(event_id="e2", label="7")),
        b"\xc3\x01garbage",
        codecs.actual.encode(_actual(event_id="e3", label="3", observed_time=T0 + 7_000)),
    ]
    out = handler.actuals(values, ["a/0", "a/0", "a/1", "a/1"])
    assert out.undecodable == 2
    assert out.updates == []
    assert out.max_event_ms == {"a/0": T0 + 9_000, "a/1": T0 + 7_000}
    assert handler.join_args(out.extension) == [
        f"{NS}:",
        SIZE,
        HORIZON,
        0,
        2,
        event_key("e1"),
        T0 + 9_000,
        f"1{SEP}{T0 + 9_000}",
        event_key("e3"),
        T0 + 7_000,
        f"0{SEP}{T0 + 7_000}",
    ]


def test_a_batch_with_nothing_usable_gives_empty_join_arguments(handler: AccuracyHandler) -> None:
    out = handler.predictions([None], ["p/0"])
    assert (out.undecodable, out.max_event_ms, handler.join_args(out.extension)) == (
        1,
        {},
        [f"{NS}:", SIZE, HORIZON, 0, 0],
    )
    out = handler.actuals([b""], ["a/0"])
    assert (out.undecodable, out.max_event_ms, handler.join_args(out.extension)) == (
        1,
        {},
        [f"{NS}:", SIZE, HORIZON, 0, 0],
    )


def _compared_item(label: int, champion_right: bool, challenger_right: bool) -> bytes:
    """A comparison item as the join writes it: champion payload, challenger payload, label, observed."""

    def payload(right: bool, role: str) -> str:
        predicted = label if right else (label + 1) % 3
        proba = np.full(3, 0.1)
        proba[predicted] = 0.8
        return SEP.join(["rig-1", str(T0), str(predicted), ",".join(map(repr, proba.tolist())), "0.8", role])

    return SEP.join([payload(champion_right, "champion"), payload(challenger_right, "challenger"), str(label),
                     str(T0 + 1)]).encode()  # fmt: skip


def test_comparison_windows_add_up_and_a_clearly_better_challenger_is_judged_better(
    handler: AccuracyHandler,
) -> None:
    rng = np.random.default_rng(3)
    windows = []
    for _ in range(4):
        champion_right = rng.random(100) < 0.6
        challenger_right = rng.random(100) < 0.95
        labels = rng.integers(0, 3, 100)
        items = [
            _compared_item(int(y), bool(a), bool(b))
            for y, a, b in zip(labels, champion_right, challenger_right, strict=True)
        ]
        fields = {
            b"compared": b"120",
            b"agreements": b"70",
            b"estimated_champion": b"96",
            b"estimated_challenger": b"90",
        }
        windows.append(handler.window_counts(fields, items))
        counts = windows[-1]["counts"]
        assert counts["challenger_only"] == int(np.sum(challenger_right & ~champion_right))
        assert counts["champion_only"] == int(np.sum(champion_right & ~challenger_right))
        assert (counts["predicted"], counts["agreements"]) == (120, 70)

    first = handler.comparison("cmp:v1/v2", T0, windows[0], windows[:1])
    last = handler.comparison("cmp:v1/v2", T0 + 3 * SIZE, windows[-1], windows)
    assert (first["kind"], first["subject"], first["count"]) == ("comparison", "v2", 100)
    detail = json.loads(str(last["detail"]))
    assert (detail["champion"], detail["challenger"], detail["verdict"]) == ("v1", "v2", "better")
    metrics = last["metrics"]
    assert isinstance(metrics, dict)
    assert metrics["n"] == 400 and metrics["window.n"] == 100 and metrics["verdict"] == 1.0
    assert metrics["challenger_accuracy"] > metrics["champion_accuracy"]
    assert metrics["estimated_champion_accuracy"] == pytest.approx(96 * 4 / 480)
    assert metrics["agreement"] == pytest.approx(70 / 120)
