"""Redis outages are waited out: retry with backoff, say so once, resume by itself."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client import Gauge
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

from rigwatch.exceptions import RigwatchError
from rigwatch.kafka import StopFlag

__all__ = ["REDIS_DOWN", "RedisWait", "StoppedWhileWaiting"]

log = logging.getLogger("rigwatch.runtime")

T = TypeVar("T")

#: What an unreachable (or restarting, still loading its append-only file) Redis raises.
REDIS_DOWN = (ConnectionError, TimeoutError, BusyLoadingError)
#: Longest pause between two attempts.
MAX_BACKOFF_S = 5.0


class StoppedWhileWaiting(RigwatchError):
    """A stop signal came while Redis was unreachable: the work in hand was not checkpointed."""


class RedisWait:
    """Run Redis work, waiting out an outage instead of failing.

    While Redis is unreachable, :meth:`call` retries with exponential backoff
    (0.1 s doubling to 5 s), logs the outage once and its end once, and holds
    ``gauge`` at 1; ``on_pause`` / ``on_resume`` let the runtime stop and
    restart consumption around it. A stop signal ends the wait with
    :class:`StoppedWhileWaiting`.
    """

    def __init__(
        self,
        stop: StopFlag,
        gauge: Gauge,
        on_pause: Callable[[], None] = lambda: None,
        on_resume: Callable[[], None] = lambda: None,
    ) -> None:
        self.stop, self.gauge = stop, gauge
        self.on_pause, self.on_resume = on_pause, on_resume
        self.outages = 0
        # Held here, not per call: a call may nest another (a tick checkpoints first), and
        # one outage is said, paused for and resumed from once whichever call meets it.
        self._down_since: float | None = None

    def call(self, fn: Callable[..., T], *args: Any, failed: Exception | None = None) -> T:
        """``fn(*args)``, retried for as long as Redis is unreachable.

        *failed* is the outage a first attempt made elsewhere already met (a checkpoint's
        write on the runtime's writer thread): it is said and waited for before ``fn`` runs
        again, as if this call had met it.
        """
        delay = 0.1
        while True:
            if failed is None:
                try:
                    result = fn(*args)
                except REDIS_DOWN as exc:
                    failed = exc
                else:
                    self._came_back()
                    return result
            self._went_down(failed)
            if self.stop.wait(delay):
                raise StoppedWhileWaiting("stopped while Redis was unreachable") from failed
            failed = None
            delay = min(delay * 2, MAX_BACKOFF_S)

    def _went_down(self, exc: Exception) -> None:
        if self._down_since is not None:
            return
        self._down_since = time.monotonic()
        self.outages += 1
        self.gauge.set(1)
        log.warning("Redis unreachable (%s): consumption paused, retrying until it is back", exc)
        self.on_pause()

    def _came_back(self) -> None:
        if self._down_since is None:
            return
        self.gauge.set(0)
        log.warning(
            "Redis reachable again after %.1f s: consumption resumed", time.monotonic() - self._down_since
        )
        self._down_since = None
        self.on_resume()
