"""The process harness on real child processes: measurements from /proc, clean and unclean exits."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from rigwatch.exceptions import ProcessError
from rigwatch.harness import Process, ProcessHarness, cpu_seconds, log_tail, peak_rss_mb

# A child whose reaction to SIGTERM the test chooses: exit 0, exit 1, or ignore it.
CHILD = """
import signal, sys, time
mode = sys.argv[1]
if mode == "clean":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
elif mode == "fails-on-term":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
elif mode == "ignores-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
elif mode == "crash":
    print("boom: the last words", flush=True)
    sys.exit(3)
if mode == "burn":
    buffer = bytearray(64 * 1024 * 1024)  # touched: counts in the peak RSS
    end = time.process_time() + 0.5
    while time.process_time() < end:
        pass
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "child.py").write_text(CHILD)
    return {**os.environ, "PYTHONPATH": str(tmp_path)}


def _ready(proc: Process, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while "ready" not in log_tail(proc.log):
        assert proc.poll() is None, log_tail(proc.log)
        assert time.monotonic() < deadline, "the child did not get ready"
        time.sleep(0.02)


def test_rigwatch_help_runs_as_a_child_and_exits_clean(tmp_path: Path) -> None:
    proc = Process.start(["--help"], dict(os.environ), tmp_path / "help.log")
    assert proc.wait(60) == 0
    outcome = proc.assert_clean()
    assert outcome.clean and not outcome.terminated
    assert "Usage" in log_tail(tmp_path / "help.log", 200)


def test_stop_after_sigterm_exit_0_is_clean(tmp_path: Path, env: dict[str, str]) -> None:
    proc = Process.start(["clean"], env, tmp_path / "logs" / "c.log", module="child")
    _ready(proc)
    outcome = proc.stop(timeout=10)
    assert (outcome.code, outcome.terminated, outcome.escalated, outcome.clean) == (0, True, False, True)
    assert proc.assert_clean() == outcome


def test_cpu_and_peak_rss_are_read_from_proc_while_it_runs(tmp_path: Path, env: dict[str, str]) -> None:
    proc = Process.start(["burn"], env, tmp_path / "b.log", module="child")
    try:
        _ready(proc)
        assert 0.4 <= proc.cpu_seconds() < 5.0
        assert proc.peak_rss_mb() >= 64
        assert peak_rss_mb(proc.pid) == proc.peak_rss_mb()
        assert sum(proc.thread_cpu_seconds().values()) == pytest.approx(proc.cpu_seconds(), abs=0.05)
    finally:
        proc.stop(timeout=10)


def test_another_pid_is_sampled_too() -> None:
    assert cpu_seconds(os.getpid()) > 0
    assert peak_rss_mb(os.getpid()) > 1


def test_a_gone_process_cannot_be_sampled(tmp_path: Path) -> None:
    proc = Process.start(["--help"], dict(os.environ), tmp_path / "help.log")
    proc.wait(60)
    with pytest.raises(ProcessLookupError):
        cpu_seconds(proc.pid)


def test_nonzero_exit_after_sigterm_is_unclean_and_assert_clean_shows_the_log(
    tmp_path: Path, env: dict[str, str]
) -> None:
    proc = Process.start(["fails-on-term"], env, tmp_path / "f.log", module="child")
    _ready(proc)
    outcome = proc.stop(timeout=10)
    assert (outcome.code, outcome.clean, outcome.expected) == (1, False, False)
    with pytest.raises(ProcessError, match=r"exited with 1 after SIGTERM(.|\n)*ready"):
        proc.assert_clean()


def test_a_child_ignoring_sigterm_is_killed_after_the_timeout_and_is_unclean(
    tmp_path: Path, env: dict[str, str]
) -> None:
    proc = Process.start(["ignores-term"], env, tmp_path / "i.log", module="child")
    _ready(proc)
    began = time.monotonic()
    outcome = proc.stop(timeout=0.5)
    assert time.monotonic() - began < 5
    assert (outcome.code, outcome.escalated, outcome.clean) == (-signal.SIGKILL, True, False)
    assert "still running when the SIGTERM timeout passed" in outcome.describe()


def test_a_crash_is_noticed_while_it_should_run(tmp_path: Path, env: dict[str, str]) -> None:
    proc = Process.start(["crash"], env, tmp_path / "x.log", module="child")
    proc.wait(20)
    with pytest.raises(ProcessError, match=r"exited with 3 by itself(.|\n)*boom: the last words"):
        proc.check_running()


def test_a_kill_on_purpose_is_expected(tmp_path: Path, env: dict[str, str]) -> None:
    proc = Process.start(["clean"], env, tmp_path / "k.log", module="child")
    _ready(proc)
    proc.kill()
    assert proc.wait(10) == -signal.SIGKILL
    outcome = proc.assert_clean()
    assert outcome.killed_on_purpose and not outcome.clean and outcome.expected


def test_assert_clean_on_a_running_child_raises(tmp_path: Path, env: dict[str, str]) -> None:
    proc = Process.start(["clean"], env, tmp_path / "r.log", module="child")
    try:
        with pytest.raises(ProcessError, match="still running"):
            proc.assert_clean()
    finally:
        proc.stop(timeout=10)


def test_harness_stops_every_child_and_reports_only_the_unexpected(
    tmp_path: Path, env: dict[str, str]
) -> None:
    with ProcessHarness(tmp_path / "logs", stop_timeout=1.0) as children:
        clean = children.start(["clean"], env, module="child")
        killed = children.start(["clean"], env, module="child", name="victim")
        stubborn = children.start(["ignores-term"], env, module="child")
        crashed = children.start(["crash"], env, module="child")
        for proc in (clean, killed, stubborn):
            _ready(proc)
        killed.send_signal(signal.SIGKILL)
        crashed.wait(20)
    assert all(p.poll() is not None for p in children.processes)
    assert [p.log.name for p in children.processes] == [
        "clean-0.log",
        "victim-1.log",
        "ignores-term-2.log",
        "crash-3.log",
    ]
    failures = children.failures()
    assert len(failures) == 2
    assert "ignores-term" in failures[0] and "SIGKILL" in failures[0]
    assert "exited with 3 by itself" in failures[1] and "boom" in failures[1]


def test_the_child_runs_this_python(tmp_path: Path) -> None:
    proc = Process.start(["--help"], dict(os.environ), tmp_path / "help.log")
    assert proc.popen.args[0] == sys.executable  # type: ignore[index]
    proc.wait(60)
