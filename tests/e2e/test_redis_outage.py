"""A Redis outage is waited out: every service lives through it and nothing is counted twice or lost.

Every service runs as a process on a stack of this test's own (the session's Redis is not
killed); the pump sends readings at 300/s in real time with labels 1 s later and a
tsb_temp offset from reading 3,000 on, so one alert has reason to fire. Redis is
``kill -9``-ed while readings flow and started again from its append-only file 10 s later.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from streams import collect

from loadgen.pump import PumpOptions, PumpReport, run_pump
from loadgen.readings import Shift
from rigwatch.config import Settings
from rigwatch.harness import Process
from rigwatch.kafka import StopFlag
from rigwatch.model import ModelPackage
from rigwatch.schemas import Codecs
from rigwatch.stack import StackState, restart_redis, stack_down, stack_up

pytestmark = pytest.mark.e2e

RATE, COUNT = 300, 12_000  # 40 s of readings
KILL_AFTER_S, OUTAGE_S = 10.0, 10.0
WINDOW_MS = 5_000


@pytest.fixture
def own_stack(tmp_path: Path, model_dir: Path):
    """A broker and Redis of this test's own, so killing Redis disturbs no other test."""
    settings = Settings(
        run_dir=tmp_path / "stack",
        model_dir=model_dir,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        bootstrap=None,
        redis_url=None,
    )
    if Settings().bootstrap:
        pytest.skip(
            "RIGWATCH_BOOTSTRAP is set: this test kills the local stack's Redis, not a configured one"
        )
    try:
        ends = stack_up(settings, partitions=4)
        yield settings.model_copy(update={"bootstrap": ends.bootstrap, "redis_url": ends.redis_url})
    finally:
        stack_down(settings)


def _start_services(spawn, settings: Settings) -> dict[str, Process]:
    windows = {
        "RIGWATCH_DRIFT_WINDOW_MS": str(WINDOW_MS),
        "RIGWATCH_DRIFT_LATENESS_MS": "1000",
        "RIGWATCH_ACCURACY_WINDOW_MS": str(WINDOW_MS),
        "RIGWATCH_ACCURACY_LATENESS_MS": "1000",
        "RIGWATCH_LATENCY_WINDOW_MS": str(WINDOW_MS),
    }
    procs = {}
    for name in ("scorer", "drift", "latency", "accuracy", "alerts"):
        env = settings.to_env(**{f"RIGWATCH_{name.upper()}_METRICS_PORT": "-1"}, **windows)
        procs[name] = spawn([name], env)
    return procs


def test_services_wait_out_a_redis_outage_and_count_everything_once(
    own_stack: Settings, spawn, real_dataset
) -> None:
    settings = own_stack
    procs = _start_services(spawn, settings)
    version = ModelPackage.load(settings.model_dir).version
    report: list[PumpReport] = []
    options = PumpOptions(
        rate=RATE, count=COUNT, rigs=4, label_delay=1.0, shifts=(Shift("tsb_temp", 2.0, 3_000),)
    )
    pump = threading.Thread(
        target=lambda: report.append(run_pump(settings, real_dataset, options, StopFlag()))
    )
    pump.start()

    time.sleep(KILL_AFTER_S)
    assert pump.is_alive(), "Redis must die while readings still arrive"
    state = StackState.read(settings.run_dir)
    assert state is not None
    os.kill(state.pids["redis"], signal.SIGKILL)
    time.sleep(OUTAGE_S)
    assert {name: p.poll() for name, p in procs.items()} == dict.fromkeys(procs), "no service exits"
    for name in ("drift", "latency", "accuracy"):  # they checkpoint every 250 ms: each met the outage
        assert procs[name].log.read_text().count("Redis unreachable") == 1, f"{name} says so once"
    restart_redis(settings)
    pump.join()
    (sent,) = report

    codecs = Codecs.load()
    # Every reading and every label counted once, in the model version's windows.
    drift, accuracy = Counter[int](), Counter[int]()

    def windows_done(seen) -> bool:
        drift.clear()
        accuracy.clear()
        for m in seen:
            w = codecs.metric_window.decode(m.value())
            if w["subject"] == version and w["kind"] in ("drift", "accuracy"):
                (drift if w["kind"] == "drift" else accuracy)[w["window_start"]] += w["count"]
        return drift.total() >= sent.readings and accuracy.total() >= sent.actuals

    collect(
        settings.bootstrap, [settings.topics.metrics], windows_done, timeout=180, settle=3 * WINDOW_MS / 1000
    )
    assert drift.total() == sent.readings == COUNT
    assert accuracy.total() == sent.actuals
    assert all(n == 1 for n in Counter(_window_keys(settings, codecs, version)).values()), "no window twice"

    everything = collect(settings.bootstrap, [settings.topics.alerts], lambda seen: True, settle=3.0)
    alerts = [codecs.alert.decode(m.value()) for m in everything]
    firing = Counter(a["alert_id"] for a in alerts if a["state"] == "firing")
    assert firing[f"feature_drift/{version}/tsb_temp"] == 1, f"the offset fires its alert once: {firing}"
    assert max(firing.values()) == 1, f"no alert fires twice: {firing}"
    assert {name: p.poll() for name, p in procs.items()} == dict.fromkeys(procs), "no service exits"
    assert "Redis reachable again" in procs["drift"].log.read_text()


def _window_keys(settings: Settings, codecs: Codecs, version: str) -> list[tuple[str, int]]:
    seen = collect(settings.bootstrap, [settings.topics.metrics], lambda seen: True, settle=3.0)
    return [
        (w["kind"], w["window_start"])
        for w in (codecs.metric_window.decode(m.value()) for m in seen)
        if w["subject"] == version and w["kind"] in ("drift", "accuracy")
    ]
