"""The foundation slice as a user runs it: pump -> broker -> scorer process -> predictions."""

from __future__ import annotations

import signal
import socket
import threading
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from streams import SeenIds, collect

from loadgen.pump import PumpOptions, run_pump
from loadgen.readings import BAD_KINDS
from rigwatch.data import load_csv
from rigwatch.kafka import StopFlag
from rigwatch.model import ModelPackage
from rigwatch.schemas import Codecs

pytestmark = pytest.mark.e2e


def _scorer(spawn, settings, group: str, metrics_port: int = 0):
    env = settings.to_env(RIGWATCH_SCORER_GROUP=group, RIGWATCH_SCORER_METRICS_PORT=str(metrics_port))
    return spawn(["scorer"], env)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _distinct_events(messages, codec) -> dict[str, dict]:
    return {p["event_id"]: p for p in (codec.decode(m.value()) for m in messages)}


def test_2000_events_with_20_malformed_give_1980_predictions_and_20_dlq_records(
    settings, spawn, hydraulic_dir: Path
) -> None:
    codecs = Codecs.load()
    topics = settings.topics
    port = _free_port()
    scorer = _scorer(spawn, settings, "scorer-slice", port)
    dataset = load_csv(hydraulic_dir / "hydraulic_cycles.csv")
    report = run_pump(
        settings,
        dataset,
        PumpOptions(rate=0, count=2000, bad_rate=0.01, label_delay=0, rigs=3, seed=11),
        StopFlag(),
    )
    assert (report.readings, report.bad, report.actuals) == (1980, 20, 1980)

    predictions = collect(
        settings.bootstrap, [topics.predictions], lambda seen: len(seen) >= 1980, settle=3.0
    )
    dead = collect(settings.bootstrap, [topics.dlq], lambda seen: len(seen) >= 20, settle=1.0)
    actuals = collect(settings.bootstrap, [topics.actuals], lambda seen: len(seen) >= 1980)

    by_event = _distinct_events(predictions, codecs.prediction)
    assert len(predictions) == 1980, "no crash, so no duplicates"
    assert len(by_event) == 1980
    version = ModelPackage.load(settings.model_dir).version
    assert {p["model_version"] for p in by_event.values()} == {version}
    assert {m.key().decode() for m in predictions} == {"rig-000", "rig-001", "rig-002"}

    assert len(dead) == 20
    for msg in dead:
        headers = {k: v.decode() for k, v in msg.headers()}
        assert headers["error"] in BAD_KINDS
        assert headers["error_detail"]
        assert headers["source_topic"] == topics.sensor_readings
        assert int(headers["source_offset"]) >= 0

    labels = {a["event_id"]: a["label"] for a in map(codecs.actual.decode, (m.value() for m in actuals))}
    right = sum(by_event[e]["predicted_label"] == label for e, label in labels.items())
    assert right / len(labels) >= 0.99

    metrics = _scrape(port)
    assert metrics[("rigwatch_scorer_events_in_total", ())] == 2000
    assert metrics[("rigwatch_scorer_predictions_out_total", ())] == 1980
    assert sum(v for (name, _), v in metrics.items() if name == "rigwatch_scorer_dlq_total") == 20
    assert metrics[("rigwatch_scorer_batch_size_count", ())] >= 1
    info_labels = (("name", "cooler-lgbm"), ("role", "champion"), ("version", version))
    assert metrics[("rigwatch_scorer_model_info", info_labels)] == 1

    scorer.send_signal(signal.SIGTERM)
    assert scorer.wait(30) == 0


def test_scorer_killed_mid_stream_and_restarted_loses_no_event(settings, spawn, hydraulic_dir: Path) -> None:
    codecs = Codecs.load()
    topics = settings.topics
    dataset = load_csv(hydraulic_dir / "hydraulic_cycles.csv")
    scorer = _scorer(spawn, settings, "scorer-crash")
    # 12 s of readings: the kill lands mid-stream even when the scorer is slow to join.
    options = PumpOptions(rate=1000, count=12000, bad_rate=0.005, label_coverage=0, seed=5)
    pumping = threading.Thread(target=run_pump, args=(settings, dataset, options, StopFlag()))
    pumping.start()

    collect(settings.bootstrap, [topics.predictions], lambda seen: len(seen) >= 1000)
    scorer.kill()  # on purpose: the spawn fixture allows it
    assert scorer.wait(10) == -signal.SIGKILL
    assert pumping.is_alive(), "the scorer must die mid-stream, not after the last reading"
    _scorer(spawn, settings, "scorer-crash")
    pumping.join()

    readings = collect(settings.bootstrap, [topics.sensor_readings], lambda seen: len(seen) >= 12000)
    valid = set()
    for msg in readings:
        try:
            record = codecs.sensor_reading.decode(msg.value())
        except Exception:
            continue
        if record["event_id"]:
            valid.add(record["event_id"])
    assert len(valid) == 12000 - 60

    scored: set[str] = set()

    def all_scored(seen) -> bool:
        # Decode only what arrived since the last call.
        for msg in seen[all_scored.done :]:
            scored.add(codecs.prediction.decode(msg.value())["event_id"])
        all_scored.done = len(seen)
        return valid <= scored

    all_scored.done = 0

    collect(settings.bootstrap, [topics.predictions], all_scored, timeout=120)


def test_two_scorers_share_partitions_and_a_leaving_one_loses_no_event(
    settings, spawn, hydraulic_dir: Path
) -> None:
    codecs = Codecs.load()
    topics = settings.topics
    dataset = load_csv(hydraulic_dir / "hydraulic_cycles.csv")
    ports = [_free_port(), _free_port()]
    scorers = [_scorer(spawn, settings, "scorer-pair", port) for port in ports]
    options = PumpOptions(rate=1000, count=12000, rigs=16, label_coverage=0, seed=8)
    pumping = threading.Thread(target=run_pump, args=(settings, dataset, options, StopFlag()))
    pumping.start()

    def both_scoring(_seen) -> bool:
        try:
            return all(_scrape(p)[("rigwatch_scorer_events_in_total", ())] > 0 for p in ports)
        except OSError:  # a metrics endpoint not up yet
            return False

    collect(settings.bootstrap, [topics.predictions], both_scoring, timeout=60)
    scorers[0].send_signal(signal.SIGTERM)
    assert scorers[0].wait(30) == 0
    assert pumping.is_alive(), "the scorer must leave mid-stream"
    pumping.join()

    scored = SeenIds(codecs.prediction.decode)
    collect(settings.bootstrap, [topics.predictions], lambda seen: len(scored.update(seen)) >= 12000)
    assert len(scored.ids) == 12000
