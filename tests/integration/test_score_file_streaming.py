"""``rigwatch score`` on the real per-cycle CSV gives, row for row, what a running scorer publishes."""

from __future__ import annotations

import csv
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from streams import collect

from rigwatch.data import SENSOR_COLUMNS
from rigwatch.kafka import ReliableProducer
from rigwatch.lifecycle.operations import create_deployment, register_model
from rigwatch.model import ModelPackage
from rigwatch.schemas import Codecs

pytestmark = pytest.mark.integration

# Strict rules so every humility path runs on real data: with the session's model, ~8 real
# cycles lie outside the training range (rejected), ~7 are below 0.999 confidence (overridden).
RULES = {
    "RIGWATCH_SCORER_OUTLYING_MARGIN": "0",
    "RIGWATCH_SCORER_OUTLYING_ACTION": "reject",
    "RIGWATCH_SCORER_UNCERTAIN_BELOW": "0.999",
    "RIGWATCH_SCORER_UNCERTAIN_ACTION": "override",
    "RIGWATCH_SCORER_FALLBACK_LABEL": "20",
}
#: Every this many cycles one sensor is left empty: scored, flagged missing:<sensor>.
BLANK_EVERY = 97


def _blanked(cycle: int) -> str | None:
    return SENSOR_COLUMNS[cycle % 16] if cycle % BLANK_EVERY == 5 else None


def _file_with_blanks(real: Path, out: Path) -> list[dict[str, str]]:
    """The real CSV's text with the :func:`_blanked` cells emptied; every other cell as it was."""
    with open(real, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        if (column := _blanked(int(row["cycle"]))) is not None:
            row[column] = ""
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def test_score_file_equals_streaming_predictions_row_for_row(
    settings, spawn, real_dataset, hydraulic_dir, tmp_path
):
    codecs = Codecs.load()
    topics = settings.topics
    env = settings.to_env(
        RIGWATCH_SCORER_GROUP=f"score-file-{uuid.uuid4().hex[:6]}", RIGWATCH_SCORER_METRICS_PORT="0", **RULES
    )
    spawn(["scorer"], env)
    run = uuid.uuid4().hex[:8]
    producer = ReliableProducer(settings.bootstrap or "", {"linger.ms": 10})
    for i in range(len(real_dataset)):
        cycle = int(real_dataset.cycle[i])
        reading = {
            "event_id": f"{run}-{cycle}",
            "rig_id": f"rig-{cycle % 3}",
            "cycle": cycle,
            "event_time": 0,
        }
        reading |= real_dataset.row(i)
        if (column := _blanked(cycle)) is not None:
            reading[column] = None
        producer.produce(topics.sensor_readings, codecs.sensor_reading.encode(reading), key=reading["rig_id"])
    producer.flush(60)
    n = len(real_dataset)
    streamed = collect(
        settings.bootstrap or "", [topics.predictions, topics.dlq], lambda seen: len(seen) >= n
    )

    predictions: dict[int, dict] = {}
    rejects: dict[int, dict[str, str]] = {}
    for msg in streamed:
        if msg.topic() == topics.predictions:
            p = codecs.prediction.decode(msg.value())
            predictions[p["cycle"]] = p
        else:
            cycle = codecs.sensor_reading.decode(msg.value())["cycle"]
            rejects[cycle] = {k: v.decode() for k, v in msg.headers()}
    assert len(predictions) + len(rejects) == n, "one outcome per reading, no duplicates"

    rows = _file_with_blanks(hydraulic_dir / "hydraulic_cycles.csv", tmp_path / "cycles.csv")
    args = ["score", str(tmp_path / "cycles.csv"), "--model", str(settings.model_dir)]
    args += ["--out", str(tmp_path / "scored.csv"), "--quiet"]
    result = subprocess.run(
        [sys.executable, "-m", "rigwatch", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "scored.csv", newline="") as f:
        scored = list(csv.DictReader(f))

    assert len(scored) == n
    classes = ModelPackage.load(settings.model_dir).classes
    for row, got in zip(rows, scored, strict=True):
        cycle = int(got["cycle"])
        assert {k: got[k] for k in row} == row, "input columns kept"
        if cycle in rejects:
            dlq = rejects[cycle]
            assert got["outcome"] == "rejected", cycle
            assert (got["error"], got["error_detail"]) == (dlq["error"], dlq["error_detail"]), cycle
            assert got["model_version"] == dlq["model_version"]
            continue
        p = predictions[cycle]
        assert got["outcome"] == "scored", cycle
        assert got["predicted_label"] == p["predicted_label"], cycle
        # repr() of a double reads back as the same double: exact, not approximately equal.
        assert [float(got[f"p_{c}"]) for c in classes] == [p["probabilities"][c] for c in classes], cycle
        assert float(got["confidence"]) == p["confidence"], cycle
        assert got["flags"] == ";".join(p["flags"]), cycle
        assert got["model_version"] == p["model_version"]

    outcomes = {
        "flagged missing": sum(
            any(f.startswith("missing:") for f in p["flags"]) for p in predictions.values()
        ),
        "overridden": sum("override:uncertain" in p["flags"] for p in predictions.values()),
        "rejected outlying": sum(r["error"] == "humility:outlying" for r in rejects.values()),
    }
    assert all(outcomes.values()), f"every humility path ran: {outcomes}"


def test_score_with_a_deployment_uses_its_champion(settings, real_dataset, tmp_path) -> None:
    registration, _ = register_model(settings, settings.model_dir, actor="test")
    create_deployment(settings, "cooler", registration.version, actor="test")
    with open(tmp_path / "in.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(SENSOR_COLUMNS)
        writer.writerows(real_dataset.sensors[:5].tolist())
    args = [
        sys.executable,
        "-m",
        "rigwatch",
        "score",
        str(tmp_path / "in.csv"),
        "--out",
        str(tmp_path / "out.csv"),
    ]

    ok = subprocess.run(
        [*args, "--deployment", "cooler"], env=settings.to_env(), capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    with open(tmp_path / "out.csv", newline="") as f:
        assert {row["model_version"] for row in csv.DictReader(f)} == {registration.version}

    unknown = subprocess.run(
        [*args, "--deployment", "pump"], env=settings.to_env(), capture_output=True, text=True
    )
    assert unknown.returncode == 2
    assert "deployment 'pump' does not exist (deployments: cooler)" in unknown.stderr
