"""``rigwatch stack`` as a user runs it, in a run folder of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient

from rigwatch.config import Settings
from rigwatch.exceptions import StackError
from rigwatch.stack import StackState, restart_redis, stack_down, stack_status, stack_up

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


def _running(pid: int) -> bool:
    """True while *pid* runs (a zombie does not: its executable link is gone)."""
    try:
        os.readlink(f"/proc/{pid}/exe")
        return True
    except OSError:
        return False


def _kill_9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _running(pid):
        assert time.monotonic() < deadline, f"pid {pid} survived SIGKILL"
        time.sleep(0.02)


def _wait_aof_written(client: redis.Redis, timeout: float = 10.0) -> None:
    """Wait until Redis has written its append-only buffer and fsynced it."""
    deadline = time.monotonic() + timeout
    while True:
        info = client.info("persistence")
        if info["aof_enabled"] and not info["aof_buffer_length"] and not info["aof_pending_bio_fsync"]:
            return
        assert time.monotonic() < deadline, f"append-only file not written after {timeout} s: {info}"
        time.sleep(0.02)


def _own_stack(tmp_path: Path) -> Settings:
    # A stack of this test's own: killing the session stack's Redis would break other tests.
    return Settings(run_dir=tmp_path / "run", bootstrap=None, redis_url=None, topic_prefix="redistest.")


def test_redis_killed_with_sigkill_and_restarted_has_its_state_back(tmp_path: Path) -> None:
    settings = _own_stack(tmp_path)
    ends = stack_up(settings, partitions=1)
    try:
        before = StackState.read(settings.run_dir)
        assert before is not None
        argv = before.commands["redis"]
        assert argv[argv.index("--appendonly") + 1] == "yes"
        assert argv[argv.index("--save") + 1] == ""
        assert Path(argv[argv.index("--dir") + 1]) == (settings.run_dir / "redis").resolve()

        client = redis.Redis.from_url(ends.redis_url, decode_responses=True)
        values = {f"key:{i}": f"value-{i}" for i in range(1000)}
        client.mset(values)
        client.hset("state", mapping={"offset:0": "41", "offset:1": "7"})
        _wait_aof_written(client)

        old_pid = before.pids["redis"]
        _kill_9(old_pid)
        with pytest.raises(redis.ConnectionError):
            client.ping()
        assert stack_status(settings) is None, "a stack without its Redis is not running"

        assert restart_redis(settings) == ends
        after = StackState.read(settings.run_dir)
        assert after is not None and after.pids["redis"] != old_pid and _running(after.pids["redis"])
        assert after.pids["broker"] == before.pids["broker"]
        assert stack_status(settings) is not None
        assert client.mget(list(values)) == list(values.values())
        assert client.hgetall("state") == {"offset:0": "41", "offset:1": "7"}
        client.close()
    finally:
        stack_down(settings)
    assert not _running(after.pids["redis"]) and not _running(after.pids["broker"])


def test_a_new_stack_starts_with_an_empty_redis(tmp_path: Path) -> None:
    # The broker keeps nothing across `stack down`: Redis state (offsets) must not either.
    settings = _own_stack(tmp_path)
    client = redis.Redis.from_url(stack_up(settings, partitions=1).redis_url)
    try:
        client.set("left-over", "1")
        _wait_aof_written(client)
    finally:
        client.close()
        stack_down(settings)
    client = redis.Redis.from_url(stack_up(settings, partitions=1).redis_url)
    try:
        assert client.dbsize() == 0
    finally:
        client.close()
        stack_down(settings)


def test_restart_redis_without_a_stack_says_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="rigwatch stack up"):
        restart_redis(_own_stack(tmp_path))


def test_stack_up_after_redis_died_stops_the_rest_and_starts_a_new_stack(tmp_path: Path) -> None:
    settings = _own_stack(tmp_path)
    stack_up(settings, partitions=1)
    try:
        before = StackState.read(settings.run_dir)
        assert before is not None
        _kill_9(before.pids["redis"])
        stack_up(settings, partitions=1)
        after = StackState.read(settings.run_dir)
        assert after is not None and stack_status(settings) is not None
        assert not _running(before.pids["broker"]), "the old broker was left running"
        assert after.pids["broker"] != before.pids["broker"]
    finally:
        stack_down(settings)
