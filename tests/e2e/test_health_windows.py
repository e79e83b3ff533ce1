"""Service health windows through the real broker and Redis: pump -> scorer -> latency -> rig.metrics.

Health windows are in the scorer's own time (``scored_time``) and close on the
wall clock, so these tests use 1 s windows and real time.
"""

from __future__ import annotations

import json
import signal

import pytest
from streams import collect

from loadgen.pump import PumpOptions, run_pump
from rigwatch.kafka import StopFlag
from rigwatch.model import ModelPackage
from rigwatch.schemas import Codecs

pytestmark = pytest.mark.e2e

WINDOW_MS = 1_000


def _latency(spawn, settings, group: str, scorer_group: str):
    env = settings.to_env(
        RIGWATCH_LATENCY_GROUP=group,
        RIGWATCH_LATENCY_SCORER_GROUP=scorer_group,
        RIGWATCH_LATENCY_METRICS_PORT="0",
        RIGWATCH_LATENCY_WINDOW_MS=str(WINDOW_MS),
        RIGWATCH_LATENCY_LATENESS_MS="500",
        RIGWATCH_LATENCY_IDLE_MS="1500",
    )
    return spawn(["latency"], env)


def _health(settings, subject: str, done) -> list[dict]:
    """Health windows of *subject* on rig.metrics, in window order, once ``done(windows)``."""
    codec = Codecs.load().metric_window

    def mine(seen) -> list[dict]:
        out = {}
        for msg in seen:
            record = codec.decode(msg.value())
            if record["kind"] == "health" and record["subject"] == subject:
                record["detail"] = json.loads(record["detail"])
                out[record["window_start"]] = record
        return [out[start] for start in sorted(out)]

    return mine(collect(settings.bootstrap, [settings.topics.metrics], lambda s: done(mine(s)), timeout=120))


def test_health_windows_count_every_prediction_and_dlq_record_then_show_a_stopped_scorer_as_stale(
    settings, spawn, real_dataset
) -> None:
    scorer = spawn(
        ["scorer"], settings.to_env(RIGWATCH_SCORER_GROUP="scorer-h", RIGWATCH_SCORER_METRICS_PORT="-1")
    )
    _latency(spawn, settings, "latency-h", "scorer-h")
    version = ModelPackage.load(settings.model_dir).version
    pumped = run_pump(
        settings,
        real_dataset,
        PumpOptions(rate=300, count=1200, bad_rate=0.05, label_coverage=0.0, seed=3),
        StopFlag(),
    )
    assert pumped.bad > 0

    def scored_all(windows: list[dict]) -> bool:
        return sum(w["metrics"]["predictions"] for w in windows) >= pumped.readings

    windows = _health(settings, version, scored_all)
    busy = [w for w in windows if w["count"]]
    assert sum(w["count"] for w in windows) == pumped.readings
    assert sum(w["metrics"]["data_errors"] for w in windows) == pumped.bad
    assert all(w["metrics"]["system_errors"] == 0 for w in windows)
    reasons: dict[str, float] = {}
    for w in windows:
        for reason, n in w["detail"]["dlq_reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + n
    assert sum(reasons.values()) == pumped.bad and len(reasons) >= 2, reasons
    for w in busy:
        m = w["metrics"]
        assert w["window_end"] - w["window_start"] == WINDOW_MS
        assert 0 < m["latency_ms.p50"] <= m["latency_ms.p95"] <= m["latency_ms.p99"] <= m["latency_ms.max"]
        assert m["latency_ms.max"] < 30_000
        assert 0 < m["processing_ms.p50"] <= m["processing_ms.max"]
        assert m["processing_ms.max"] <= m["latency_ms.max"]
        assert m["rate_per_s"] == w["count"] and m["no_data"] == 0
        assert m["staleness_s"] < 1.0
        # 5 % bad overall; a single window may hold none.
        assert 0 <= m.get("data_error_rate", 0.0) < 0.5
        assert "scorer_lag" in m

    # Stop the scorer, send more: windows keep coming, empty, ever staler, with the backlog as lag.
    scorer.send_signal(signal.SIGTERM)
    assert scorer.wait(timeout=30) == 0
    later = run_pump(
        settings, real_dataset, PumpOptions(rate=0, count=250, seed=4, label_coverage=0.0), StopFlag()
    )
    last_end = windows[-1]["window_end"]

    def stale(ws: list[dict]) -> bool:
        quiet = [w for w in ws if w["window_start"] >= last_end and w["count"] == 0]
        return len(quiet) >= 3 and quiet[-1]["metrics"].get("scorer_lag") == later.readings + later.bad

    quiet = [
        w for w in _health(settings, version, stale) if w["window_start"] >= last_end and w["count"] == 0
    ]
    assert all(w["metrics"]["no_data"] == 1 for w in quiet)
    staleness = [w["metrics"]["staleness_s"] for w in quiet]
    assert staleness == sorted(staleness) and staleness[-1] - staleness[0] >= 1.0, staleness
    assert staleness[-1] >= 2.0
    assert quiet[-1]["detail"]["lag"]["group"] == "scorer-h"
