"""Run ``python -m rigwatch ARGS`` children, read their CPU time and peak memory, and stop them cleanly.

Benchmarks and end-to-end tests run the services as separate processes, as a
user does; this module is the one way they start, measure and stop them. A
service must exit 0 after SIGTERM (it finishes its batch, flushes, commits), so
:meth:`Process.stop` sends SIGTERM, waits, and only then SIGKILLs; the
:class:`Outcome` says whether the exit was clean. A SIGKILL the owner sends on
purpose (:meth:`Process.kill`) is remembered, so a crash test is not mistaken
for a crash.

CPU seconds and peak RSS come from ``/proc`` (Linux): any PID can be sampled,
e.g. the local stack's broker (:func:`stack_pids`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from rigwatch.config import Settings
from rigwatch.exceptions import ProcessError

__all__ = [
    "Outcome",
    "Process",
    "ProcessHarness",
    "cpu_seconds",
    "free_port",
    "log_tail",
    "peak_rss_mb",
    "stack_pids",
    "thread_cpu_seconds",
]

_TICKS = os.sysconf("SC_CLK_TCK")
#: Seconds a child gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 30.0


def _stat_fields(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessLookupError(f"no process at {path.parent}") from None
    # Fields after the command name, which may itself hold spaces and parentheses.
    return text.rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds *pid* has used (``utime + stime`` of ``/proc/PID/stat``).

    Raises
    ------
    ProcessLookupError
        No such process (or it has been reaped).
    """
    fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    return (int(fields[11]) + int(fields[12])) / _TICKS


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of *pid* in MiB (``VmHWM``); ``NaN`` for a zombie, which has none.

    Raises
    ------
    ProcessLookupError
        No such process.
    """
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except FileNotFoundError:
        raise ProcessLookupError(f"no process {pid}") from None
    for line in lines:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of *pid* by thread group: ``main`` (the Python thread), ``librdkafka``, ``other``."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / _TICKS
        group = "main" if task.name == str(pid) else ("librdkafka" if comm.startswith("rdk:") else "other")
        out[group] = out.get(group, 0.0) + seconds
    return out


def stack_pids(settings: Settings) -> dict[str, int]:
    """PIDs of the local stack's ``broker`` and ``redis`` (from ``<run_dir>/stack.json``), when alive.

    Empty when the stack is not the one *settings* connect to (e.g. a configured cluster):
    then there is no broker process here to measure.
    """
    from rigwatch.stack import stack_status

    state = stack_status(settings)
    if state is None or (settings.bootstrap and state.bootstrap != settings.bootstrap):
        return {}
    return {name: pid for name, pid in state.pids.items() if Path(f"/proc/{pid}/stat").exists()}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a child's metrics endpoint)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 20) -> str:
    """The last *lines* lines of a log file (empty if there is none)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class Outcome:
    """How a child ended.

    Examples
    --------
    >>> done = Outcome("drift", 42, 0, terminated=True, log=Path("drift-0.log"))
    >>> done.clean, done.expected
    (True, True)
    >>> crash = Outcome("drift", 42, -9, killed_on_purpose=True, log=Path("drift-1.log"))
    >>> crash.clean, crash.expected
    (False, True)
    >>> Outcome("drift", 42, 1, log=Path("drift-2.log")).describe()
    'drift (pid 42) exited with 1 by itself'
    """

    name: str
    pid: int
    code: int
    #: :meth:`Process.stop` sent SIGTERM (the child was still running).
    terminated: bool = False
    #: It did not exit within the timeout after SIGTERM and was SIGKILLed.
    escalated: bool = False
    #: Its owner sent SIGKILL on purpose (:meth:`Process.kill`).
    killed_on_purpose: bool = False
    log: Path = Path()

    @property
    def clean(self) -> bool:
        """Exit code 0 without a SIGKILL."""
        return self.code == 0 and not self.escalated

    @property
    def expected(self) -> bool:
        """Clean, or killed on purpose."""
        return self.clean or (self.killed_on_purpose and not self.escalated)

    def describe(self) -> str:
        """One line for people."""
        how = "by itself"
        if self.killed_on_purpose:
            how = "after a SIGKILL on purpose"
        elif self.escalated:
            how = "after SIGKILL: still running when the SIGTERM timeout passed"
        elif self.terminated:
            how = "after SIGTERM"
        return f"{self.name} (pid {self.pid}) exited with {self.code} {how}"


class Process:
    """One child started by :meth:`start`; the ``Popen`` methods tests use, and measurements.

    ``pid``, ``returncode``, :meth:`poll`, :meth:`wait`, :meth:`send_signal` and
    :meth:`kill` behave as ``subprocess.Popen``'s, except that a SIGKILL sent
    through them is remembered as deliberate.
    """

    def __init__(self, popen: subprocess.Popen[bytes], name: str, log: Path) -> None:
        self.popen, self.name, self.log = popen, name, log
        self._terminated = self._escalated = self._killed = False

    @classmethod
    def start(
        cls,
        args: Sequence[str],
        env: Mapping[str, str],
        log: Path,
        *,
        module: str = "rigwatch",
        python_args: Sequence[str] = (),
        name: str | None = None,
    ) -> Process:
        """``python [python_args] -m module args`` with *env*; stdout and stderr go to *log*.

        Examples
        --------
        ::

            proc = Process.start(["drift"], settings.to_env(RIGWATCH_DRIFT_GROUP="g"), logs / "drift.log")
            ...
            proc.stop().clean  # True: it exited 0 after SIGTERM
        """
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, *python_args, "-m", module, *args]
        with log.open("wb") as out:
            popen = subprocess.Popen(
                cmd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        return cls(popen, name or (args[0] if args else module), log)

    # -- the Popen surface

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def send_signal(self, sig: int) -> None:
        # Only a kill that lands counts as deliberate: an earlier exit keeps its own verdict.
        if sig == signal.SIGKILL and self.poll() is None:
            self._killed = True
        self.popen.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, on purpose: the outcome is then expected whatever the exit code."""
        self.send_signal(signal.SIGKILL)

    # -- measurements (while it runs)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds so far."""
        return cpu_seconds(self.pid)

    def peak_rss_mb(self) -> float:
        """Peak resident memory so far, MiB."""
        return peak_rss_mb(self.pid)

    def thread_cpu_seconds(self) -> dict[str, float]:
        """CPU seconds by thread group (see :func:`thread_cpu_seconds`)."""
        return thread_cpu_seconds(self.pid)

    # -- the end

    @property
    def outcome(self) -> Outcome | None:
        """How it ended; ``None`` while it runs."""
        code = self.poll()
        if code is None:
            return None
        return Outcome(
            self.name,
            self.pid,
            code,
            terminated=self._terminated,
            escalated=self._escalated,
            killed_on_purpose=self._killed,
            log=self.log,
        )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> Outcome:
        """SIGTERM (if it runs), wait up to *timeout* seconds, then SIGKILL; how it ended."""
        self._terminate()
        return self._await(time.monotonic() + timeout)

    def _terminate(self) -> None:
        if self.poll() is None:
            self._terminated = True
            self.popen.send_signal(signal.SIGTERM)

    def _await(self, deadline: float) -> Outcome:
        try:
            self.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._escalated = True
            self.popen.kill()
            self.popen.wait()
        outcome = self.outcome
        assert outcome is not None
        return outcome

    def check_running(self) -> None:
        """Raise :class:`ProcessError` (with the end of its log) if it has exited."""
        outcome = self.outcome
        if outcome is not None:
            raise ProcessError(_report(outcome, "exited while it should be running"))

    def assert_clean(self) -> Outcome:
        """The outcome once ended; :class:`ProcessError` with the end of the log unless it is expected.

        Still running, or exited other than 0 (and not killed on purpose), or needed SIGKILL: an error.
        """
        outcome = self.outcome
        if outcome is None:
            raise ProcessError(f"{self.name} (pid {self.pid}) is still running; see {self.log}")
        if not outcome.expected:
            raise ProcessError(_report(outcome, "did not exit cleanly"))
        return outcome


def _report(outcome: Outcome, what: str) -> str:
    tail = log_tail(outcome.log)
    return f"{outcome.describe()}: {what}; last lines of {outcome.log}:\n{tail}"


class ProcessHarness:
    """The children of one test or benchmark: started with logs in one folder, stopped together.

    Parameters
    ----------
    logs
        Folder of the logs, ``<name>-<n>.log`` (n counts every child this harness started).
    stop_timeout
        Seconds each child gets after SIGTERM.

    Examples
    --------
    ::

        with ProcessHarness(tmp_path) as children:
            scorer = children.start(["scorer"], env)
            ...
        # every child got SIGTERM; children.failures() lists those that did not exit cleanly
    """

    def __init__(self, logs: Path, *, stop_timeout: float = STOP_TIMEOUT_S) -> None:
        self.logs, self.stop_timeout = logs, stop_timeout
        self.processes: list[Process] = []

    def start(
        self,
        args: Sequence[str],
        env: Mapping[str, str],
        *,
        name: str | None = None,
        module: str = "rigwatch",
        python_args: Sequence[str] = (),
    ) -> Process:
        """Start a child (see :meth:`Process.start`) and remember it."""
        name = name or (args[0] if args else module)
        log = self.logs / f"{name}-{len(self.processes)}.log"
        proc = Process.start(args, env, log, module=module, python_args=python_args, name=name)
        self.processes.append(proc)
        return proc

    def stop_all(self) -> list[Outcome]:
        """SIGTERM every running child at once, then wait for each (SIGKILL after the timeout)."""
        for proc in self.processes:
            proc._terminate()
        deadline = time.monotonic() + self.stop_timeout
        return [proc._await(deadline) for proc in self.processes]

    def failures(self) -> list[str]:
        """A report, with the end of its log, of every ended child whose outcome is not expected."""
        ended = [p.outcome for p in self.processes]
        return [_report(o, "did not exit cleanly") for o in ended if o is not None and not o.expected]

    def __enter__(self) -> ProcessHarness:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()
