"""``write_report`` on a real broker: the topics are read to their end and the page is written."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rigwatch.kafka import ReliableProducer
from rigwatch.report import write_report
from rigwatch.report.topics import _read_to_end
from rigwatch.schemas import Codecs

pytestmark = pytest.mark.integration

CODECS = Codecs.load()
SUBJECT = "int-model-1"
ALERT_ID = f"feature_drift/{SUBJECT}/tsb_temp"


def _windows(t0: int) -> list[dict]:
    out = []
    for k in range(4):
        end = t0 + (k + 1) * 30_000
        base = {"subject": SUBJECT, "window_start": end - 30_000, "window_end": end, "count": 300}
        ratio = 12.0 if k >= 2 else 0.3
        shares = {"prediction.share.3": 0.2, "prediction.share.20": 0.3, "prediction.share.100": 0.5}
        drift = {"psi_ratio.tsb_temp": ratio, "drift_score": 0.1} | shares
        out.append(base | {"kind": "drift", "metrics": drift})
        out.append(base | {"kind": "accuracy", "metrics": {"accuracy": 0.97, "estimated_accuracy": 0.98}})
        out.append(base | {"kind": "health", "metrics": {"latency_ms.p99": 120.0}, "detail": None})
    return out


def _readings(n: int, t0: int) -> list[dict]:
    return [
        {
            "event_id": f"e{i}",
            "rig_id": f"rig-{i % 4}",
            "cycle": i,
            "event_time": t0 + i,
            "tsb_temp": 40.0 + i,
        }
        for i in range(n)
    ]


def test_report_of_fresh_topics_names_the_subject_and_the_alert(settings, tmp_path: Path) -> None:
    t0 = int(time.time() * 1000)
    producer = ReliableProducer(settings.bootstrap)
    for w in _windows(t0):
        producer.produce(
            settings.topics.metrics, CODECS.metric_window.encode(w), key=f"{w['kind']}/{SUBJECT}"
        )
    alert = {
        "alert_id": ALERT_ID,
        "rule": "feature_drift",
        "severity": "critical",
        "state": "firing",
        "metric": "psi_ratio.tsb_temp",
        "value": 12.0,
        "threshold": 2.0,
        "window_end": t0 + 90_000,
        "first_seen": t0 + 90_000,
        "message": "tsb_temp drifted",
    }
    producer.produce(settings.topics.alerts, CODECS.alert.encode(alert), key=ALERT_ID)
    for r in _readings(40, t0):
        producer.produce(settings.topics.sensor_readings, CODECS.sensor_reading.encode(r), key=r["rig_id"])
    producer.produce(settings.topics.metrics, b"not avro", key="junk")  # skipped, not fatal
    producer.flush()

    said: list[str] = []
    out = write_report(settings, tmp_path / "out" / "report.html", max_readings=25, progress=said.append)

    page = out.read_text(encoding="utf-8")
    assert out.exists() and page.startswith("<!doctype html>")
    assert f"Model version {SUBJECT}" in page and ALERT_ID in page
    assert "Firing at the end of the topic: feature_drift/int-model-1/tsb_temp (critical)" in page
    assert page.count("<svg ") == 5 + 16  # the subject's charts and one histogram per model input
    assert "the newest 25 readings" in page
    assert f"{settings.topics.metrics}: 12 metric windows (1 undecodable, skipped)" in said
    assert f"{settings.topics.alerts}: 1 alert records" in said


def test_reading_the_tail_of_a_topic_takes_the_last_records_of_each_partition(settings) -> None:
    producer = ReliableProducer(settings.bootstrap)
    for r in _readings(40, 0):  # 4 rigs: 10 records in each of up to 4 partitions
        producer.produce(settings.topics.sensor_readings, CODECS.sensor_reading.encode(r), key=r["rig_id"])
    producer.flush()

    everything = _read_to_end(settings.bootstrap, settings.topics.sensor_readings)
    tail = _read_to_end(settings.bootstrap, settings.topics.sensor_readings, last=3)

    assert len(everything) == 40
    per_partition: dict[int, list[int]] = {}
    for msg in everything:
        per_partition.setdefault(msg.partition(), []).append(msg.offset())
    expected = {(p, o) for p, offsets in per_partition.items() for o in sorted(offsets)[-3:]}
    assert {(m.partition(), m.offset()) for m in tail} == expected


def test_an_empty_topic_is_read_at_once(settings) -> None:
    started = time.monotonic()
    assert _read_to_end(settings.bootstrap, settings.topics.alerts, timeout=20) == []
    assert time.monotonic() - started < 15
