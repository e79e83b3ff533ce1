"""The latency handler: predictions and DLQ records to window updates, closed windows to MetricWindows."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest

from rigwatch.codec import Codec
from rigwatch.lag import LagSample
from rigwatch.schemas import Codecs, schema_dir
from rigwatch.windowing import Update
from services.latency.handler import UNKNOWN_VERSION, DlqRecord, LatencyHandler

SIZE = 60_000
T0 = 1_718_000_040_000 - 1_718_000_040_000 % SIZE  # a window start
QS = (50, 95, 99)


@pytest.fixture(scope="module")
def codecs() -> Codecs:
    return Codecs.load()


@pytest.fixture
def handler(codecs: Codecs) -> LatencyHandler:
    return LatencyHandler(codecs.prediction, size_ms=SIZE)


def _prediction(**fields: Any) -> dict[str, Any]:
    """A Prediction record; *fields* override the defaults."""
    record: dict[str, Any] = {
        "event_id": "run-rig-001-7",
        "rig_id": "rig-001",
        "cycle": 7,
        "event_time": T0 + 1_000,
        "model_name": "cooler-lgbm",
        "model_version": "v1",
        "role": "champion",
        "probabilities": {"3": 0.1, "20": 0.2, "100": 0.7},
        "predicted_label": "100",
        "confidence": 0.7,
        "scored_time": T0 + 1_200,
        "flags": [],
        "processing_ms": 2.5,
    }
    return record | fields


def _v1_codec() -> Codec:
    return Codec(json.loads((schema_dir() / "history" / "prediction.v1.avsc").read_text()))


class _Hashes:
    """Window hashes as Redis would hold them after the store applied the updates.

    ``ints`` are added (``HINCRBY``), ``floats`` added (``HINCRBYFLOAT``),
    ``maxes`` raised; read back as ``bytes`` fields and values, numbers written
    as redis-py writes them (``str`` of an int, ``repr`` of a float).
    """

    def __init__(self) -> None:
        self._values: dict[tuple[str, int], dict[str, int | float]] = {}

    def add(self, updates: Iterable[Update]) -> None:
        for u in updates:
            h = self._values.setdefault((u.subject, u.start_ms), {})
            for name, n in u.ints.items():
                assert isinstance(n, int) and not isinstance(n, bool), (name, n)  # HINCRBY takes ints only
                h[name] = int(h.get(name, 0)) + n
            for name, x in u.floats.items():
                h[name] = float(h.get(name, 0.0)) + x
            for name, x in u.maxes.items():
                h[name] = max(float(h[name]), x) if name in h else x

    def windows(self) -> list[tuple[str, int]]:
        return sorted(self._values, key=lambda w: (w[1], w[0]))

    def fields(self, subject: str, start_ms: int) -> dict[bytes, bytes]:
        h = self._values.get((subject, start_ms), {})
        return {k.encode(): (str(v) if isinstance(v, int) else repr(v)).encode() for k, v in h.items()}


def _metrics(record: dict[str, object]) -> dict[str, float]:
    metrics = record["metrics"]
    assert isinstance(metrics, dict)
    return metrics


def test_latency_percentiles_of_summed_batches_match_numpy_within_one_percent(
    codecs: Codecs, handler: LatencyHandler
) -> None:
    rng = np.random.default_rng(20240611)
    n = 5_000
    versions = np.where(rng.random(n) < 0.6, "v1", "v2")
    scored = T0 + rng.integers(0, 3 * SIZE, size=n)  # three windows
    wait = np.round(rng.lognormal(mean=4.0, sigma=1.0, size=n)).astype(np.int64)  # event -> scored, ms
    processing = rng.lognormal(mean=1.0, sigma=0.7, size=n) + 0.05
    event = scored - wait
    # A few events stamped in the scorer's future, beyond the prediction's ready time: clock skew.
    skew = rng.choice(n, size=25, replace=False)
    event[skew] = scored[skew] + np.ceil(processing[skew]).astype(np.int64) + rng.integers(1, 5_000, size=25)
    flagged = rng.random(n) < 0.1
    sources = [f"rig.predictions/{p}" for p in rng.integers(0, 4, size=n)]
    values = [
        codecs.prediction.encode(
            _prediction(
                event_id=f"e{i}",
                model_version=str(versions[i]),
                event_time=int(event[i]),
                scored_time=int(scored[i]),
                processing_ms=float(processing[i]),
                flags=["missing:tsb_temp"] if flagged[i] else [],
            )
        )
        for i in range(n)
    ]

    hashes = _Hashes()
    max_event: dict[str, int] = {}
    for lo, hi in ((0, 1_234), (1_234, 2_000), (2_000, 4_321), (4_321, n)):
        out = handler.predictions(values[lo:hi], sources[lo:hi])
        assert out.undecodable == 0 and out.extension == {}
        assert sum(u.records for u in out.updates) == hi - lo
        hashes.add(out.updates)
        for source, t in out.max_event_ms.items():
            max_event[source] = max(max_event.get(source, t), t)
    # The watermark of a health window is the scored time (the scorer's clock).
    for source in set(sources):
        assert max_event[source] == max(
            int(s) for s, src in zip(scored, sources, strict=True) if src == source
        )

    # The handler's own definition: event to prediction ready, skewed events counted as 0 latency.
    e2e = scored.astype(np.float64) + processing - event.astype(np.float64)
    start = scored - scored % SIZE
    windows = [(v, T0 + k * SIZE) for k in range(3) for v in ("v1", "v2")]
    assert hashes.windows() == windows
    last_seen: dict[str, float | None] = {"v1": None, "v2": None}
    for subject, window_start in windows:
        rows = (versions == subject) & (start == window_start)
        assert rows.sum() > 500
        record, last = handler.window(
            subject, window_start, hashes.fields(subject, window_start), 3, last_seen[subject], None
        )
        last_seen[subject] = last
        m = _metrics(record)
        end = window_start + SIZE
        assert (record["kind"], record["subject"], record["window_start"], record["window_end"]) == (
            "health",
            subject,
            window_start,
            end,
        )
        assert record["count"] == rows.sum()
        assert m["predictions"] == rows.sum()
        assert m["rate_per_s"] == pytest.approx(rows.sum() / (SIZE / 1000), rel=1e-12)
        assert m["flagged_rate"] == pytest.approx(flagged[rows].mean(), rel=1e-12)
        assert m["no_data"] == 0.0
        assert m["late_records"] == 3.0
        assert m["clock_skew"] == np.isin(np.flatnonzero(rows), skew).sum()
        assert last == float(scored[rows].max())
        assert m["staleness_s"] == pytest.approx((end - scored[rows].max()) / 1000, rel=1e-12)
        latency = np.maximum(e2e[rows], 0.0)
        for name, values_ms in (("latency_ms", latency), ("processing_ms", processing[rows])):
            expected = np.percentile(values_ms, QS)
            got = [m[f"{name}.p{q}"] for q in QS]
            np.testing.assert_allclose(got, expected, rtol=0.01, err_msg=f"{subject} {window_start} {name}")
            assert m[f"{name}.max"] == values_ms.max()  # exact, not a bucket representative
        assert m["data_errors"] == m["system_errors"] == 0.0
        assert m["data_error_rate"] == m["system_error_rate"] == 0.0
        assert json.loads(str(record["detail"])) == {"dlq_reasons": {}}


def test_skew_is_an_event_time_after_the_prediction_was_ready(
    codecs: Codecs, handler: LatencyHandler
) -> None:
    values = [
        codecs.prediction.encode(
            _prediction(event_time=T0 + 1_000, scored_time=T0 + 1_010, processing_ms=5.0)
        ),
        codecs.prediction.encode(
            _prediction(event_time=T0 + 9_000, scored_time=T0 + 1_010, processing_ms=5.0)
        ),
    ]
    hashes = _Hashes()
    hashes.add(handler.predictions(values, ["p/0", "p/0"]).updates)
    record, _ = handler.window("v1", T0, hashes.fields("v1", T0), 0, None, None)
    m = _metrics(record)
    assert m["clock_skew"] == 1.0
    # The skewed prediction counts as latency 0, not as a negative latency.
    assert m["latency_ms.max"] == 15.0
    assert m["latency_ms.p50"] == pytest.approx(7.5, rel=0.01)


def test_v1_predictions_without_processing_ms_count_with_no_processing_time(
    codecs: Codecs, handler: LatencyHandler
) -> None:
    v1 = _v1_codec()
    old = [
        v1.encode(
            {
                k: v
                for k, v in _prediction(
                    event_id=f"old{i}", event_time=T0 + 50, scored_time=T0 + 100 + i
                ).items()
                if k != "processing_ms"
            }
        )
        for i in range(3)
    ]
    current = codecs.prediction.encode(
        _prediction(event_time=T0 + 1_000, scored_time=T0 + 1_020, processing_ms=4.0)
    )

    hashes = _Hashes()
    out = handler.predictions(old, ["p/0"] * 3)
    assert out.undecodable == 0
    hashes.add(out.updates)
    record, last = handler.window("v1", T0, hashes.fields("v1", T0), 0, None, None)
    m = _metrics(record)
    assert m["predictions"] == 3.0
    assert last == T0 + 102
    assert not any(name.startswith("processing_ms") for name in m)
    # Event to scored time only: v1 records have no processing time to add.
    assert (m["latency_ms.max"], m["clock_skew"]) == (52.0, 0.0)

    # Mixed with a v2 record: every record counts, only the v2 one has a processing time.
    hashes = _Hashes()
    hashes.add(handler.predictions([*old, current], ["p/0"] * 4).updates)
    fields = hashes.fields("v1", T0)
    assert sum(int(v) for k, v in fields.items() if k.startswith(b"proc.")) == 1
    assert sum(int(v) for k, v in fields.items() if k.startswith(b"e2e.")) == 4
    m = _metrics(handler.window("v1", T0, fields, 0, None, None)[0])
    assert m["predictions"] == 4.0
    assert m["processing_ms.max"] == 4.0
    assert m["processing_ms.p50"] == m["processing_ms.p99"] == pytest.approx(4.0, rel=0.01)


def test_v1_latency_is_scored_minus_event_time(handler: LatencyHandler) -> None:
    v1 = _v1_codec()
    waits = [10, 20, 30, 40, 50]
    old = [
        v1.encode(
            {
                k: v
                for k, v in _prediction(event_time=T0 + 1_000, scored_time=T0 + 1_000 + w).items()
                if k != "processing_ms"
            }
        )
        for w in waits
    ]
    hashes = _Hashes()
    hashes.add(handler.predictions(old, ["p/0"] * len(old)).updates)
    m = _metrics(handler.window("v1", T0, hashes.fields("v1", T0), 0, None, None)[0])
    assert m["clock_skew"] == 0.0
    assert m["latency_ms.max"] == 50.0
    np.testing.assert_allclose([m[f"latency_ms.p{q}"] for q in QS], np.percentile(waits, QS), rtol=0.01)


def test_dlq_records_count_data_and_system_errors_by_reason(codecs: Codecs, handler: LatencyHandler) -> None:
    dlq = [
        DlqRecord(T0 + 10, {"error": "bad_body", "model_version": "v1"}),
        DlqRecord(T0 + 20, {"error": "bad_body", "model_version": "v1"}),
        DlqRecord(T0 + 30, {"error": "missing_field", "model_version": "v1"}),
        DlqRecord(T0 + 40, {"error": "scoring_failed", "model_version": "v1"}),
        DlqRecord(T0 + 50, {"error": "bad_body"}),  # no model version: the scorer did not say
        DlqRecord(T0 + SIZE + 5, {"error": "scoring_failed", "model_version": "v1"}),  # the next window
    ]
    sources = ["dlq/0", "dlq/1", "dlq/0", "dlq/0", "dlq/1", "dlq/0"]
    out = handler.dlq(dlq, sources)
    assert out.undecodable == 0
    assert out.max_event_ms == {"dlq/0": T0 + SIZE + 5, "dlq/1": T0 + 50}
    hashes = _Hashes()
    hashes.add(out.updates)
    assert hashes.windows() == [(UNKNOWN_VERSION, T0), ("v1", T0), ("v1", T0 + SIZE)]
    assert UNKNOWN_VERSION == "unknown"

    # Six predictions in the first window beside the four v1 errors.
    predictions = [codecs.prediction.encode(_prediction(event_id=f"e{i}")) for i in range(6)]
    hashes.add(handler.predictions(predictions, ["p/0"] * 6).updates)

    m = _metrics(handler.window("v1", T0, hashes.fields("v1", T0), 0, None, None)[0])
    assert (m["predictions"], m["data_errors"], m["system_errors"]) == (6.0, 3.0, 1.0)
    assert (m["dlq.bad_body"], m["dlq.missing_field"], m["dlq.scoring_failed"]) == (2.0, 1.0, 1.0)
    assert m["data_error_rate"] == pytest.approx(3 / (6 + 3 + 1), rel=1e-12)
    assert m["system_error_rate"] == pytest.approx(1 / (6 + 3 + 1), rel=1e-12)

    record, last = handler.window(UNKNOWN_VERSION, T0, hashes.fields(UNKNOWN_VERSION, T0), 0, None, None)
    m = _metrics(record)
    assert (m["predictions"], m["data_errors"], m["system_errors"], m["dlq.bad_body"]) == (0.0, 1.0, 0.0, 1.0)
    assert m["data_error_rate"] == 1.0 and m["system_error_rate"] == 0.0
    assert m["no_data"] == 1.0  # errors only: no prediction was made
    assert json.loads(str(record["detail"])) == {"dlq_reasons": {"bad_body": 1}}
    assert last is None and "staleness_s" not in m

    m = _metrics(handler.window("v1", T0 + SIZE, hashes.fields("v1", T0 + SIZE), 0, None, None)[0])
    assert (m["predictions"], m["system_errors"], m["system_error_rate"]) == (0.0, 1.0, 1.0)


def test_empty_window_reports_no_data_and_staleness_since_the_last_prediction(
    handler: LatencyHandler,
) -> None:
    last_ms = T0 - 45_000.0
    lag = LagSample("scorer", "rig.sensor-readings", {0: 10, 1: 0}, {0: 70, 1: 20}, {0: 60, 1: 20})
    record, last = handler.window("v1", T0, {}, 0, last_ms, lag)
    m = _metrics(record)
    assert last == last_ms
    assert record["count"] == 0
    assert (m["predictions"], m["rate_per_s"], m["no_data"]) == (0.0, 0.0, 1.0)
    assert m["staleness_s"] == (T0 + SIZE - last_ms) / 1000 == 105.0
    assert (m["scorer_lag"], m["scorer_lag_max_partition"]) == (80.0, 60.0)
    assert not any(name.startswith(("latency_ms", "processing_ms")) for name in m)
    assert not {"flagged_rate", "data_error_rate", "system_error_rate"} & set(m)
    detail = json.loads(str(record["detail"]))
    assert detail["lag"] == {
        "group": "scorer",
        "topic": "rig.sensor-readings",
        "partitions": {"0": 60, "1": 20},
    }

    record, last = handler.window("v1", T0, {}, 0, None, None)
    m = _metrics(record)
    assert last is None
    assert m["no_data"] == 1.0
    assert "staleness_s" not in m
    assert "scorer_lag" not in m


def test_undecodable_prediction_bytes_are_counted_not_used(codecs: Codecs, handler: LatencyHandler) -> None:
    good = codecs.prediction.encode(_prediction(scored_time=T0 + 500))
    values = [b"not avro", None, good[:-3], good + b"\x00", good]
    sources = ["p/0", "p/1", "p/2", "p/3", "p/4"]
    out = handler.predictions(values, sources)
    assert out.undecodable == 4
    assert out.max_event_ms == {"p/4": T0 + 500}
    assert [(u.subject, u.start_ms, u.records) for u in out.updates] == [("v1", T0, 1)]

    out = handler.predictions([b"", None], ["p/0", "p/0"])
    assert (out.updates, out.max_event_ms, out.undecodable) == ([], {}, 2)
