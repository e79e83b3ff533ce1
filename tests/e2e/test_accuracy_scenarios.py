"""Accuracy scenarios on the real data through the real broker and Redis: pump -> scorer -> accuracy.

Event time is simulated (readings ``interval_ms`` apart from a window-aligned
start; labels observed ``label_delay`` s of event time later), so minutes of
windows take seconds. Windows are in label time: a pair counts in the window
its label arrived in.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from streams import assigned, collect

from loadgen.pump import PumpOptions, run_pump
from loadgen.readings import ReadingStream, WrongLabels, stepping_clock
from rigwatch.kafka import ReliableProducer, StopFlag
from rigwatch.model import ModelPackage
from rigwatch.schemas import Codecs

pytestmark = pytest.mark.e2e

WINDOW_MS = 30_000
START_MS = 1_700_000_010_000  # a multiple of WINDOW_MS: window k starts at START_MS + k * WINDOW_MS


def _start(spawn, settings, name: str):
    """A scorer and an accuracy processor with groups of their own."""
    assigned(
        spawn(
            ["scorer"],
            settings.to_env(RIGWATCH_SCORER_GROUP=f"scorer-{name}", RIGWATCH_SCORER_METRICS_PORT="-1"),
        )
    )
    return _accuracy(spawn, settings, name)


def _accuracy(spawn, settings, name: str):
    env = settings.to_env(
        RIGWATCH_ACCURACY_GROUP=f"accuracy-{name}",
        RIGWATCH_ACCURACY_METRICS_PORT="0",
        RIGWATCH_ACCURACY_WINDOW_MS=str(WINDOW_MS),
        RIGWATCH_ACCURACY_IDLE_MS="2000",
    )
    return spawn(["accuracy"], env)


def _pump(settings, dataset, *, count: int, interval_ms: int = 100, rate: float = 0, **options):
    opts = PumpOptions(
        rate=rate,
        count=count,
        rigs=2,
        seed=11,
        event_interval_ms=interval_ms,
        event_start_ms=START_MS,
        **options,
    )
    return run_pump(settings, dataset, opts, StopFlag())


def _windows(settings, subject: str, done, timeout: float = 120.0) -> list[dict]:
    """Accuracy windows of *subject* in window order (the latest record of each), once ``done(windows)``."""
    codec = Codecs.load().metric_window

    def mine(seen) -> list[dict]:
        out = {}
        for msg in seen:
            record = codec.decode(msg.value())
            if record["kind"] == "accuracy" and record["subject"] == subject:
                record["detail"] = json.loads(record["detail"])
                out[record["window_start"]] = record
        return [out[start] for start in sorted(out)]

    return mine(
        collect(settings.bootstrap, [settings.topics.metrics], lambda s: done(mine(s)), timeout=timeout)
    )


def _labelled(n: int):
    return lambda windows: sum(w["count"] for w in windows) >= n


def _index(window: dict) -> int:
    return (window["window_start"] - START_MS) // WINDOW_MS


def test_all_events_labelled_after_5_s_give_accuracy_above_099_and_full_coverage(
    settings, spawn, real_dataset
):
    _start(spawn, settings, "a")
    sent = _pump(settings, real_dataset, count=3000, label_delay=5.0, label_coverage=1.0)
    version = ModelPackage.load(settings.model_dir).version
    windows = _windows(settings, version, _labelled(sent.actuals))

    assert sent.actuals == 3000 and sum(w["count"] for w in windows) == 3000
    assert [_index(w) for w in windows] == list(range(11))  # labels of the last 5 s land in window 10
    # Window 0 only has the labels of its first 25 s; from then on every label is in.
    assert windows[0]["metrics"]["coverage"] == pytest.approx(250 / 300)
    for w in windows[1:10]:
        m = w["metrics"]
        assert m["coverage"] == 1.0 and m["predictions"] == 300 and w["count"] == 300
        assert m["accuracy"] >= 0.99, m
        assert m["label_latency_s.p50"] == m["label_latency_s.p95"] == 5.0
        assert 0.9 <= m["estimated_accuracy"] <= 1.0 and abs(m["accuracy_gap"]) < 0.05
        assert m["macro_f1"] >= 0.98 and m["mcc"] >= 0.98 and m["log_loss"] < 0.1
        assert sum(map(sum, w["detail"]["confusion"])) == 300
        assert {f"recall.{c}" for c in ("3", "20", "100")} <= m.keys()
    # The rig segments split the same pairs.
    segments = [_windows(settings, f"rig:rig-{r:03d}", lambda ws: len(ws) == 11) for r in range(2)]
    assert sum(w["count"] for ws in segments for w in ws) == 3000


def test_30_percent_wrong_labels_from_a_known_point_drop_accuracy_to_about_07_within_one_window(
    settings, spawn, real_dataset
):
    _start(spawn, settings, "b")
    # From reading 1500 on (= the start of window 5), 30 % of the labels are wrong.
    sent = _pump(
        settings,
        real_dataset,
        count=3000,
        label_delay=0.0,
        label_coverage=1.0,
        wrong_labels=WrongLabels(0.3, 1500),
    )
    version = ModelPackage.load(settings.model_dir).version
    windows = _windows(settings, version, _labelled(sent.actuals))
    by_index = {_index(w): w["metrics"] for w in windows}

    assert all(by_index[k]["accuracy"] >= 0.99 for k in range(5))
    for k in range(5, 10):
        assert 0.6 <= by_index[k]["accuracy"] <= 0.8, (k, by_index[k])
        # The confidence-based estimate does not see wrong labels coming: the gap shows them.
        assert by_index[k]["estimated_accuracy_labelled"] >= 0.9 and by_index[k]["accuracy_gap"] > 0.1


def test_half_labelled_10_s_later_gives_coverage_05_and_label_latency_10_s_with_two_workers(
    settings, spawn, real_dataset
):
    _start(spawn, settings, "c")
    _accuracy(spawn, settings, "c")  # a second worker of the same group: they share the join state
    # 20 ms apart: 1500 predictions per window, so a 0.5 coverage is measured to +-0.013 (1 sd).
    sent = _pump(settings, real_dataset, count=12_000, interval_ms=20, label_delay=10.0, label_coverage=0.5)
    version = ModelPackage.load(settings.model_dir).version
    windows = _windows(settings, version, _labelled(sent.actuals))

    steady = [w["metrics"] for w in windows if 1 <= _index(w) <= 7]
    assert len(steady) == 7
    for m in steady:
        assert m["predictions"] == 1500
        assert m["coverage"] == pytest.approx(0.5, abs=0.05), m
        assert m["label_latency_s.p50"] == m["label_latency_s.p95"] == 10.0
    assert sum(w["count"] for w in windows) == sent.actuals


def test_actuals_sent_before_their_predictions_still_join(settings, spawn, real_dataset):
    _start(spawn, settings, "d")
    codecs = Codecs.load()
    events = list(
        ReadingStream(real_dataset, codecs.sensor_reading, run_id="early", rigs=2, count=2000, seed=5).events(
            stepping_clock(START_MS, 100)
        )
    )
    producer = ReliableProducer(settings.bootstrap)
    # Chunk by chunk, every label is on the broker before its reading is even sent.
    for first in range(0, len(events), 50):
        chunk = events[first : first + 50]
        for e in chunk:
            assert e.reading is not None and e.label is not None
            actual = {
                "event_id": e.reading["event_id"],
                "rig_id": e.reading["rig_id"],
                "label": e.label,
                "observed_time": e.reading["event_time"],
            }
            producer.produce(settings.topics.actuals, codecs.actual.encode(actual), key=e.key)
        producer.flush()
        for e in chunk:
            producer.produce(settings.topics.sensor_readings, e.value, key=e.key)
        producer.flush()
        time.sleep(0.05)

    version = ModelPackage.load(settings.model_dir).version
    windows = _windows(settings, version, _labelled(2000))
    assert sum(w["count"] for w in windows) == 2000
    assert sum(w["metrics"]["predictions"] for w in windows) == 2000
    assert all(w["metrics"]["accuracy"] >= 0.99 for w in windows if "accuracy" in w["metrics"])


def test_kill_and_restart_of_the_accuracy_processor_loses_and_doubles_no_joined_pair(
    settings, spawn, real_dataset
):
    first = _start(spawn, settings, "e")
    version = ModelPackage.load(settings.model_dir).version
    pumping = threading.Thread(
        target=_pump,
        args=(settings, real_dataset),
        kwargs={"count": 4500, "rate": 200, "label_delay": 5.0, "label_coverage": 1.0},
    )
    pumping.start()
    _windows(settings, version, lambda ws: len(ws) >= 2)
    first.kill()  # on purpose: the spawn fixture allows it
    first.wait()
    assert pumping.is_alive(), "the pump should still be sending when the processor dies"
    _accuracy(spawn, settings, "e")
    pumping.join()

    windows = _windows(settings, version, _labelled(4500))
    assert sum(w["count"] for w in windows) == 4500
    assert [w["count"] for w in windows if 1 <= _index(w) <= 14] == [300] * 14
    assert sum(w["metrics"]["late_records"] for w in windows) == 0
