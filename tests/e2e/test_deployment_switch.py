"""Zero-downtime deploys: promote and roll back under 1,000 readings/s; kill a scorer mid-change.

Two real-data models (seeds 42 and 7: different trees, so different versions) are
registered; a scorer process follows deployment ``cooler``. The figures (promote →
first prediction of the new version per partition, rollback → first of the old one)
are printed, not asserted: speed lives in benchmarks.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from streams import SeenIds, collect

from loadgen.pump import PumpOptions, PumpReport, run_pump
from rigwatch.config import Settings
from rigwatch.kafka import StopFlag
from rigwatch.lifecycle.deployments import read_deployments
from rigwatch.lifecycle.operations import create_deployment, promote, registered_version, rollback
from rigwatch.lifecycle.status import scorers
from rigwatch.model import train
from rigwatch.schemas import Codecs

pytestmark = pytest.mark.e2e

RATE, COUNT = 1_000, 24_000  # 24 s of readings
PROMOTE_AT_S, ROLLBACK_AT_S = 8.0, 16.0


@pytest.fixture(scope="module")
def second_model_dir(tmp_path_factory: pytest.TempPathFactory, real_dataset) -> Path:
    """Another real-data model: seed 7 grows other trees, so it is another version."""
    out = tmp_path_factory.mktemp("model-b")
    train(real_dataset, seed=7, num_threads=1).write(out)
    return out


def _versions(settings: Settings, model_dir: Path, second: Path) -> tuple[str, str]:
    a = registered_version(settings, model_dir, actor="test")
    b = registered_version(settings, second, actor="test")
    assert a != b
    create_deployment(settings, "cooler", a, actor="test")
    return a, b


def _scorer(spawn, settings: Settings):
    return spawn(["scorer"], settings.to_env(RIGWATCH_SCORER_GROUP="deploy-scorer"))


def _pump(settings: Settings, dataset, report: list[PumpReport], count: int = COUNT) -> threading.Thread:
    options = PumpOptions(rate=RATE, count=count, rigs=8, label_delay=0)
    thread = threading.Thread(target=lambda: report.append(run_pump(settings, dataset, options, StopFlag())))
    thread.start()
    return thread


def test_a_promotion_and_a_rollback_at_1000_readings_per_s_switch_each_partition_once_each_way(
    settings: Settings, spawn, real_dataset, model_dir: Path, second_model_dir: Path
) -> None:
    a, b = _versions(settings, model_dir, second_model_dir)
    _scorer(spawn, settings)
    report: list[PumpReport] = []
    began = time.monotonic()
    pump = _pump(settings, real_dataset, report)

    time.sleep(max(0.0, began + PROMOTE_AT_S - time.monotonic()))
    promoted_ms = int(time.time() * 1000)
    promote(settings, "cooler", b, reason="accuracy", comment="e2e", actor="alice")
    time.sleep(max(0.0, began + ROLLBACK_AT_S - time.monotonic()))
    rolled_back_ms = int(time.time() * 1000)
    rollback(settings, "cooler", reason="errors", actor="bob")
    pump.join()
    sent = report[0].readings
    assert sent == COUNT
    assert read_deployments(settings)["cooler"]["champion"] == a

    codec = Codecs.load().prediction
    scored = SeenIds(codec.decode)
    messages = collect(
        settings.bootstrap,
        [settings.topics.predictions],
        lambda seen: len(scored.update(seen)) >= sent,
        timeout=120,
        settle=2.0,
    )
    by_event: dict[str, dict] = {}
    per_partition: dict[int, list[tuple[int, str, int]]] = defaultdict(list)
    for m in messages:
        p = codec.decode(m.value())
        if p["event_id"] in by_event:
            assert p == by_event[p["event_id"]], "a duplicate is only an identical replay"
            continue
        by_event[p["event_id"]] = p
        per_partition[m.partition()].append((m.offset(), p["model_version"], p["scored_time"]))
    assert len(by_event) == sent, "every reading has exactly one prediction"

    first_b, first_a_again = [], []
    for partition, rows in sorted(per_partition.items()):
        rows.sort()
        runs = [v for i, (_, v, _) in enumerate(rows) if i == 0 or rows[i - 1][1] != v]
        assert runs == [a, b, a], f"partition {partition} served {runs}: once each way, never back"
        first_b.append(next(t for _, v, t in rows if v == b) - promoted_ms)
        after = rows[next(i for i, (_, v, _) in enumerate(rows) if v == b) :]
        first_a_again.append(next(t for _, v, t in after if v == a) - rolled_back_ms)
    deadline = time.monotonic() + 15  # heartbeats come every 5 s
    while [b["version"] for b in scorers(settings, "cooler")] != [a]:
        assert time.monotonic() < deadline, f"deploy status shows {scorers(settings, 'cooler')}"
        time.sleep(0.5)
    print(
        f"\npromote -> first prediction of {b} per partition: p50 {np.percentile(first_b, 50):.0f} ms,"
        f" p99 {np.percentile(first_b, 99):.0f} ms; rollback -> first of {a}:"
        f" p50 {np.percentile(first_a_again, 50):.0f} ms, p99 {np.percentile(first_a_again, 99):.0f} ms"
    )


def test_a_scorer_killed_during_a_change_serves_the_current_champion_when_restarted(
    settings: Settings, spawn, real_dataset, model_dir: Path, second_model_dir: Path
) -> None:
    _, b = _versions(settings, model_dir, second_model_dir)
    scorer = _scorer(spawn, settings)
    report: list[PumpReport] = []
    pump = _pump(settings, real_dataset, report, count=6_000)
    time.sleep(2.0)
    promote(settings, "cooler", b, reason="accuracy", actor="alice")
    scorer.send_signal(signal.SIGKILL)  # the change is on the topic; the scorer may not have swapped yet
    scorer.wait(10)
    _scorer(spawn, settings)
    pump.join()
    sent = report[0].readings

    codec = Codecs.load().prediction
    scored = SeenIds(codec.decode)
    messages = collect(
        settings.bootstrap,
        [settings.topics.predictions],
        lambda seen: len(scored.update(seen)) >= sent,
        timeout=120,
    )
    last = max(messages, key=lambda m: (m.timestamp()[1], m.offset()))
    assert codec.decode(last.value())["model_version"] == b
    assert len({codec.decode(m.value())["event_id"] for m in messages}) == sent
