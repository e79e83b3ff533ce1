"""The commands a user types, run as processes: train, pump."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from streams import collect

from rigwatch.data import SENSOR_COLUMNS, load_csv
from rigwatch.schemas import Codecs

pytestmark = pytest.mark.integration


def _rigwatch(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rigwatch", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_train_writes_a_package_and_prints_its_metrics(tmp_path: Path, hydraulic_dir: Path) -> None:
    out = tmp_path / "model"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIGWATCH_")}
    result = _rigwatch(
        ["train", "--data", str(hydraulic_dir / "hydraulic_cycles.csv"), "--out", str(out)], env
    )
    assert result.returncode == 0, result.stderr
    metadata = json.loads((out / "metadata.json").read_text())
    printed = result.stdout + result.stderr
    assert "log loss" in printed and metadata["version"] in printed
    assert metadata["test_metrics"]["accuracy"] >= 0.995
    assert {"model.txt", "metadata.json", "reference.json"} <= {p.name for p in out.iterdir()}


def test_pump_publishes_readings_and_their_actuals(settings, hydraulic_dir: Path) -> None:
    csv = str(hydraulic_dir / "hydraulic_cycles.csv")
    args = ["pump", "--data", csv, "--count", "30", "--rate", "0", "--label-delay", "0", "--rigs", "2"]
    result = _rigwatch(args, settings.to_env())
    assert result.returncode == 0, result.stderr
    assert "sent 30/30" in result.stderr
    topics = settings.topics
    readings = collect(settings.bootstrap, [topics.sensor_readings], lambda seen: len(seen) >= 30)
    actuals = collect(settings.bootstrap, [topics.actuals], lambda seen: len(seen) >= 30)
    assert {m.key() for m in readings} == {b"rig-000", b"rig-001"}
    assert len(actuals) == 30


def test_bad_option_is_named_in_the_error(settings, hydraulic_dir: Path) -> None:
    csv = str(hydraulic_dir / "hydraulic_cycles.csv")
    result = _rigwatch(["pump", "--data", csv, "--count", "5", "--order", "shuffled"], settings.to_env())
    assert result.returncode == 2
    assert "order='shuffled'" in result.stderr


def test_pump_in_simulated_event_time_with_a_shift(settings, hydraulic_dir: Path) -> None:
    csv = str(hydraulic_dir / "hydraulic_cycles.csv")
    args = [
        "pump",
        "--data",
        csv,
        "--count",
        "20",
        "--rate",
        "0",
        "--order",
        "run",
        "--label-delay",
        "5",
        "--event-interval-ms",
        "1000",
        "--event-start-ms",
        "1700000000000",
        "--shift",
        "tsb_temp=+2@10",
    ]
    result = _rigwatch(args, settings.to_env())
    assert result.returncode == 0, result.stderr
    codecs = Codecs.load()
    topics = settings.topics
    readings = [
        codecs.sensor_reading.decode(m.value())
        for m in collect(settings.bootstrap, [topics.sensor_readings], lambda seen: len(seen) >= 20)
    ]
    actuals = {
        a["event_id"]: a
        for a in (
            codecs.actual.decode(m.value())
            for m in collect(settings.bootstrap, [topics.actuals], lambda seen: len(seen) >= 20)
        )
    }
    readings.sort(key=lambda r: r["cycle"])
    assert [r["event_time"] for r in readings] == [1_700_000_000_000 + 1000 * i for i in range(20)]
    real = load_csv(hydraulic_dir / "hydraulic_cycles.csv").sensors[:20, SENSOR_COLUMNS.index("tsb_temp")]
    shifted = [r["tsb_temp"] - x for r, x in zip(readings, real.tolist(), strict=True)]
    assert shifted == pytest.approx([0.0] * 10 + [2.0] * 10)
    assert all(actuals[r["event_id"]]["observed_time"] == r["event_time"] + 5000 for r in readings)
