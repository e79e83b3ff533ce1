"""Drift scenarios on the real data through the real broker and Redis: pump -> scorer -> drift -> rig.metrics.

Event time is simulated (the pump stamps readings ``INTERVAL_MS`` apart from a
window-aligned start), so twenty 30 s windows take seconds of wall time.
"""

from __future__ import annotations

import json
import signal
import threading

import pytest
from streams import assigned, collect

from loadgen.pump import PumpOptions, run_pump
from loadgen.readings import Shift
from rigwatch.kafka import StopFlag
from rigwatch.model import ModelPackage
from rigwatch.schemas import Codecs

pytestmark = pytest.mark.e2e

WINDOW_MS = 30_000
START_MS = 1_700_000_010_000  # a multiple of WINDOW_MS: window k starts at START_MS + k * WINDOW_MS
#: Warning level of the importance-weighted drift score (README: "Drift metrics").
WARNING = 1.0


def _drift(spawn, settings, group: str):
    env = settings.to_env(
        RIGWATCH_DRIFT_GROUP=group,
        RIGWATCH_DRIFT_METRICS_PORT="0",
        RIGWATCH_DRIFT_WINDOW_MS=str(WINDOW_MS),
        RIGWATCH_DRIFT_IDLE_MS="2000",
    )
    return spawn(["drift"], env)


def _scorer(spawn, settings, group: str):
    return assigned(
        spawn(["scorer"], settings.to_env(RIGWATCH_SCORER_GROUP=group, RIGWATCH_SCORER_METRICS_PORT="-1"))
    )


def _pump(
    settings, dataset, *, count: int, interval_ms: int, rate: float = 0, rigs: int = 2, **options
) -> None:
    opts = PumpOptions(
        rate=rate,
        count=count,
        rigs=rigs,
        label_delay=0,
        label_coverage=0.0,
        seed=7,
        event_interval_ms=interval_ms,
        event_start_ms=START_MS,
        **options,
    )
    run_pump(settings, dataset, opts, StopFlag())


def _windows(settings, subject: str, n: int, timeout: float = 120.0) -> list[dict]:
    """The first *n* windows of *subject* in window order (the latest record of each, if re-emitted)."""
    codec = Codecs.load().metric_window

    def mine(seen) -> dict[int, dict]:
        out = {}
        for msg in seen:
            record = codec.decode(msg.value())
            if record["subject"] == subject:
                record["detail"] = json.loads(record["detail"])
                out[record["window_start"]] = record
        return out

    seen = collect(
        settings.bootstrap, [settings.topics.metrics], lambda s: len(mine(s)) >= n, timeout=timeout
    )
    by_start = mine(seen)
    return [by_start[start] for start in sorted(by_start)[:n]]


def _index(window: dict) -> int:
    return (window["window_start"] - START_MS) // WINDOW_MS


def test_stationary_iid_replay_stays_below_warning_for_20_windows(settings, spawn, real_dataset) -> None:
    _scorer(spawn, settings, "scorer-a")
    _drift(spawn, settings, "drift-a")
    _pump(settings, real_dataset, count=6300, interval_ms=100)
    version = ModelPackage.load(settings.model_dir).version
    windows = _windows(settings, version, 21)

    assert [_index(w) for w in windows] == list(range(21))
    assert all(w["count"] == 300 for w in windows)
    assert all(w["metrics"]["predictions"] == 300 for w in windows)
    scores = [w["metrics"]["drift_score"] for w in windows]
    assert max(scores) < WARNING, scores
    flagged = [
        (_index(w), w["detail"]["top_features"][0]) for w in windows if w["metrics"]["drifted_features"]
    ]
    assert len(flagged) <= 1, f"family-wise 1 % per window, got {flagged}"
    assert sum(w["metrics"]["late_records"] for w in windows) == 0


def test_tsb_temp_offset_is_flagged_in_the_first_full_window_with_tsb_temp_on_top(
    settings, spawn, real_dataset
) -> None:
    _scorer(spawn, settings, "scorer-b")
    _drift(spawn, settings, "drift-b")
    # +2 degC from reading 3000 on, i.e. from the start of window 10.
    _pump(settings, real_dataset, count=4500, interval_ms=100, shifts=(Shift("tsb_temp", 2.0, 3000),))
    version = ModelPackage.load(settings.model_dir).version
    windows = _windows(settings, version, 14)

    before, after = windows[:10], windows[10:]
    assert not any(w["metrics"]["psi_ratio.tsb_temp"] > 1 for w in before)
    first = after[0]
    assert _index(first) == 10
    assert first["metrics"]["psi_ratio.tsb_temp"] > 1, first["metrics"]
    assert first["detail"]["top_features"][0][0] == "tsb_temp"
    assert first["detail"]["verdict"] == "drift"
    assert all(w["detail"]["top_features"][0][0] == "tsb_temp" for w in after)
    # The segment of each rig sees it too.
    rig = _windows(settings, "rig:rig-000", 14)
    assert rig[10]["detail"]["top_features"][0][0] == "tsb_temp"


def test_run_order_replay_shows_prediction_change_at_the_cooler_change(settings, spawn, real_dataset) -> None:
    _scorer(spawn, settings, "scorer-c")
    _drift(spawn, settings, "drift-c")
    # 100 readings per window; the cooler goes 3 % -> 20 % at cycle 732 (window 7)
    # and 20 % -> 100 % at cycle 1464 (window 14).
    _pump(settings, real_dataset, count=2000, interval_ms=300, order="run", rigs=1)
    version = ModelPackage.load(settings.model_dir).version
    windows = _windows(settings, version, 20)

    changed = [_index(w) for w in windows if any(k.startswith("change.class.") for k in w["metrics"])]
    assert changed[:1] and changed[0] in (7, 8), changed
    assert any(i in (14, 15) for i in changed), changed
    assert not [i for i in changed if i < 7], changed
    assert windows[5]["metrics"]["prediction.share.3"] > 0.95
    assert windows[10]["metrics"]["prediction.share.20"] > 0.95


def test_drift_processor_killed_mid_stream_loses_and_double_counts_nothing(
    settings, spawn, real_dataset
) -> None:
    group = "drift-restart"
    first = _drift(spawn, settings, group)
    version = ModelPackage.load(settings.model_dir).version
    pump = threading.Thread(
        target=_pump, args=(settings, real_dataset), kwargs={"count": 6000, "interval_ms": 100, "rate": 150}
    )
    pump.start()
    _windows(settings, version, 3)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert pump.is_alive(), "the kill must land while readings still arrive"
    _drift(spawn, settings, group)
    pump.join()
    windows = _windows(settings, version, 20)

    assert [_index(w) for w in windows] == list(range(20))
    assert [w["count"] for w in windows] == [300] * 20, "each reading counted exactly once"
    assert sum(w["metrics"]["late_records"] for w in windows) == 0
