"""``rigwatch stack`` as a user runs it, in a run folder of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient

pytestmark = pytest.mark.integration


def _rigwatch(args: list[str], run_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIGWATCH_")}
    env["RIGWATCH_RUN_DIR"] = str(run_dir)
    env["RIGWATCH_TOPIC_PREFIX"] = "stacktest."
    return subprocess.run(
        [sys.executable, "-m", "rigwatch", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() != b""
    except OSError:
        return False


def test_stack_up_status_down_starts_and_stops_exactly_its_processes(tmp_path: Path) -> None:
    up = _rigwatch(["stack", "up", "--partitions", "3"], tmp_path)
    assert up.returncode == 0, up.stderr
    state = json.loads((tmp_path / "stack.json").read_text())
    try:
        assert state["bootstrap"].startswith("127.0.0.1:")
        assert all(_alive(pid) for pid in state["pids"].values())
        topics = AdminClient({"bootstrap.servers": state["bootstrap"]}).list_topics(timeout=10).topics
        assert len(topics["stacktest.sensor-readings"].partitions) == 3
        assert {
            "stacktest.predictions",
            "stacktest.sensor-readings.dlq",
            "stacktest.alerts",
        } <= set(topics)
        assert redis.Redis.from_url(state["redis_url"]).ping()

        again = _rigwatch(["stack", "up"], tmp_path)
        assert again.returncode == 0
        assert json.loads((tmp_path / "stack.json").read_text())["pids"] == state["pids"]

        status = _rigwatch(["stack", "status"], tmp_path)
        assert status.returncode == 0 and state["bootstrap"] in status.stdout
    finally:
        down = _rigwatch(["stack", "down"], tmp_path)
    assert down.returncode == 0, down.stderr
    assert not any(_alive(pid) for pid in state["pids"].values())
    assert not (tmp_path / "stack.json").exists()
    assert _rigwatch(["stack", "status"], tmp_path).returncode == 1


def test_services_without_a_stack_say_how_to_get_one(tmp_path: Path) -> None:
    result = _rigwatch(["tail", "predictions", "--n", "1"], tmp_path)
    assert result.returncode == 2
    assert "rigwatch stack up" in result.stderr and "RIGWATCH_BOOTSTRAP" in result.stderr


def test_configured_broker_and_redis_are_used_and_nothing_is_started(stack, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIGWATCH_")}
    env |= {
        "RIGWATCH_RUN_DIR": str(tmp_path),
        "RIGWATCH_TOPIC_PREFIX": "configured.",
        "RIGWATCH_BOOTSTRAP": stack.bootstrap,
        "RIGWATCH_REDIS_URL": stack.redis_url,
    }
    up = subprocess.run(
        [sys.executable, "-m", "rigwatch", "stack", "up"], env=env, capture_output=True, text=True, timeout=90
    )
    assert up.returncode == 0, up.stderr
    assert stack.bootstrap in up.stdout
    assert not (tmp_path / "stack.json").exists()
    topics = AdminClient({"bootstrap.servers": stack.bootstrap}).list_topics(timeout=10).topics
    assert "configured.predictions" in topics
