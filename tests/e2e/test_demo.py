"""`rigwatch demo` headless: a short scenario with accelerated event time, on the session's stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from streams import collect

from rigwatch.model import ModelPackage
from rigwatch.schemas import Codecs

pytestmark = pytest.mark.e2e


def _ours(prefix: str) -> list[int]:
    """PIDs of live processes started with our topic prefix in their environment."""
    marker = f"RIGWATCH_TOPIC_PREFIX={prefix}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                pids.append(int(proc.name))
        except OSError:
            continue  # gone, or not ours to read
    return pids


def test_demo_headless_shows_every_window_kind_fires_and_resolves_an_alert_and_leaves_no_process(
    settings, real_dataset
) -> None:
    codecs = Codecs.load()
    version = ModelPackage.load(settings.model_dir).version
    # 20 s normal, 20 s of +2 degC on tsb_temp, then recovery; readings 100 ms apart in event
    # time at 100/s, so a 10 s demo window passes every wall second.
    done = subprocess.run(
        [
            sys.executable, "-m", "rigwatch", "demo", "--data", str(real_dataset.source.removeprefix("csv:")),
            "--scenario", "sensor-offset", "--rate", "100", "--event-interval-ms", "100", "--duration", "75",
        ],
        env=settings.to_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "demo: everything stopped" in done.stdout
    assert _ours(settings.topic_prefix) == [], "a demo process outlived the demo"

    alert_id = f"feature_drift/{version}/tsb_temp"
    alerts = [
        codecs.alert.decode(m.value())
        for m in collect(settings.bootstrap, [settings.topics.alerts], lambda s: True, settle=2)
    ]
    assert [a["state"] for a in alerts if a["alert_id"] == alert_id] == ["firing", "resolved"], alerts
    windows = collect(settings.bootstrap, [settings.topics.metrics], lambda s: True, settle=2)
    kinds = {codecs.metric_window.decode(m.value())["kind"] for m in windows}
    assert kinds == {"drift", "health", "accuracy"}
    predictions = collect(settings.bootstrap, [settings.topics.predictions], lambda s: len(s) >= 1000)
    assert len(predictions) >= 1000


def test_demo_model_update_promotes_a_retrained_version_then_rolls_it_back_and_audits_both(
    settings, real_dataset
) -> None:
    codecs = Codecs.load()
    champion = ModelPackage.load(settings.model_dir).version
    # 20 s normal, promote the retrained version, 20 s, roll back, 20 s.
    done = subprocess.run(
        [
            sys.executable, "-m", "rigwatch", "demo", "--data", str(real_dataset.source.removeprefix("csv:")),
            "--scenario", "model-update", "--rate", "100", "--duration", "55",
        ],
        env=settings.to_env(RIGWATCH_ACTOR="demo-operator"),
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "rigwatch audit --deployment cooler" in done.stdout
    assert _ours(settings.topic_prefix) == [], "a demo process outlived the demo"

    audit = [
        codecs.audit_event.decode(m.value())
        for m in collect(settings.bootstrap, [settings.topics.audit], lambda s: True, settle=2)
    ]
    retrained = next(
        e["model_version"] for e in audit if e["action"] == "register" and e["model_version"] != champion
    )
    steps = [
        (e["action"], e["model_version"], e["actor"], e["reason"])
        for e in audit
        if e["action"] in ("promote", "rollback")
    ]
    assert steps == [
        ("promote", retrained, "demo-operator", "accuracy"),
        ("rollback", champion, "demo-operator", "other"),
    ], audit
    promoted = next(e for e in audit if e["action"] == "promote")
    assert promoted["guardrails"] and all(g["passed"] for g in promoted["guardrails"]), promoted

    # Every partition served the champion, then the retrained version, then the champion again.
    per_partition: dict[int, list[tuple[int, str]]] = {}
    for m in collect(settings.bootstrap, [settings.topics.predictions], lambda s: True, settle=2):
        version = codecs.prediction.decode(m.value())["model_version"]
        per_partition.setdefault(m.partition(), []).append((m.offset(), version))
    assert per_partition
    for partition, rows in per_partition.items():
        versions = [v for _, v in sorted(rows)]
        runs = [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]
        assert runs == [champion, retrained, champion], f"partition {partition} served {runs}"
