"""The runtime side of a windowed service (drift, latency, accuracy): accumulate, checkpoint, emit.

A handler turns each batch into :class:`~rigwatch.windowing.Updates`; they are
merged in process and written to the shared Redis windows
(:class:`~rigwatch.windowstore.WindowStore`) with the offsets they cover in
one Lua call per checkpoint, which the runtime makes on its writer thread
while the next batches are handled (:meth:`WindowedService.take`). On a
tick, windows behind the watermark are sealed, and one worker of the group at
a time (a Redis lease) turns them into MetricWindows: published and flushed
before they are deleted, so a crash re-publishes a window (at-least-once),
never loses it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from redis import Redis

from rigwatch.codec import Codec
from rigwatch.metrics import StreamCounters
from rigwatch.runtime.checkpoint import SourceSpan
from rigwatch.runtime.loop import Service, StateWrite
from rigwatch.runtime.outage import REDIS_DOWN
from rigwatch.runtime.records import Batch, Output
from rigwatch.windowing import Pending, Updates, namespace
from rigwatch.windowstore import WindowStore

__all__ = ["WindowConfig", "WindowedService", "now_ms", "window_store"]


def now_ms() -> int:
    """Wall-clock epoch milliseconds."""
    return int(time.time() * 1000)


class WindowConfig(Protocol):
    """The window settings of drift, latency and accuracy (``RIGWATCH_<SERVICE>_WINDOW_MS``, ...)."""

    @property
    def group(self) -> str: ...
    @property
    def window_ms(self) -> int: ...
    @property
    def lateness_ms(self) -> int: ...
    @property
    def idle_ms(self) -> int: ...


def window_store(redis_url: str, config: WindowConfig, topic_prefix: str, extension: str = "") -> WindowStore:
    """The shared windows of *config*'s group on the topics of *topic_prefix*.

    The client gives up on a call after 5 s (2 s to connect), so an outage is noticed
    and waited out (:mod:`rigwatch.runtime.outage`) rather than hung on.
    """
    return WindowStore(
        Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2),
        namespace(config.group, topic_prefix),
        size_ms=config.window_ms,
        lateness_ms=config.lateness_ms,
        idle_ms=config.idle_ms,
        extension=extension,
    )


class WindowedService(Service):
    """A stateful service over shared windows; subclasses implement :meth:`emit`.

    Parameters
    ----------
    store
        The group's windows.
    inputs
        Input topic -> the handler method that makes :class:`Updates` of a batch.
    counters
        What was consumed, unusable and late.
    metrics_topic, window_codec
        Where and how MetricWindows are published.
    extension_args
        For a store with a Lua extension: its arguments from the accumulated
        :attr:`Updates.extension` lists.
    """

    stateful = True
    #: The state goes with its write, which runs while the next batches are handled.
    overlap = True
    #: The emitter lease: short, so a crashed emitter's successor takes over within seconds.
    lease_ms = 5_000
    #: Close windows on the wall clock once every input is idle (service health).
    wall_clock_when_idle = False

    def __init__(
        self,
        store: WindowStore,
        inputs: Mapping[str, Callable[[Batch], Updates]],
        counters: StreamCounters,
        metrics_topic: str,
        window_codec: Codec,
        extension_args: Callable[[dict[str, list[Any]]], list[Any]] | None = None,
    ) -> None:
        self.store, self.inputs, self.counters = store, dict(inputs), counters
        self.topics = list(inputs)
        self.metrics_topic, self.window_codec = metrics_topic, window_codec
        self.extension_args = extension_args
        self._pending = Pending()
        self._consumed: dict[str, list[int]] = {}  # topic -> [records, undecodable]

    def on_batch(self, batch: Batch) -> Iterable[Output]:
        updates = self.inputs[batch.topic](batch)
        self._pending.add(updates, len(batch))
        counts = self._consumed.setdefault(batch.topic, [0, 0])
        counts[0] += len(batch)
        counts[1] += updates.undecodable
        return ()

    def pending(self) -> int:
        return self._pending.records

    def take(self, spans: Sequence[SourceSpan], assigned: Sequence[str]) -> StateWrite:
        # Everything the write needs is built here, on the main thread; the service starts afresh.
        pending, consumed = self._pending, self._consumed
        self.discard()
        marks = pending.max_event_ms
        spans = [SourceSpan(s.source, s.first_offset, s.last_offset, marks.get(s.source, -1)) for s in spans]
        args = self.extension_args(pending.extension) if self.extension_args else []
        call = self.store.batch_call(spans, pending.updates(), assigned, args, now=now_ms)

        def applied(result: tuple[dict[str, int], list[Any]]) -> None:
            late, extension = result
            for topic, (records, unusable) in consumed.items():
                self.counters.count(topic, records, unusable, {})
            self.counters.count(self.topics[0], 0, 0, late)
            self.checkpointed(extension)

        return StateWrite(call, applied)

    def checkpoint(self, spans: Sequence[SourceSpan], assigned: Sequence[str]) -> None:
        # In one go; the runtime uses take() instead, whose write it can retry after an outage
        # (this one's state is gone once taken).
        state = self.take(spans, assigned)
        state.applied(state.write())

    def checkpointed(self, extension: list[Any]) -> None:
        """What the store's Lua extension reported for the checkpoint just written."""

    def resume_offsets(self) -> Mapping[str, int]:
        return self.store.applied_offsets()

    def discard(self) -> None:
        # New objects, not cleared ones: a write taken by take() still holds the old ones.
        self._pending = Pending()
        self._consumed = {}

    def on_tick(self, now_ms: int, publish: Callable[[Iterable[Output]], None]) -> None:
        """Seal windows behind the watermark; as the group's emitter, publish them."""
        self.store.close_due(now_ms, wall_clock_when_idle=self.wall_clock_when_idle)
        if self.store.acquire(ttl_ms=self.lease_ms):
            self.emit(now_ms, publish)

    def emit(self, now_ms: int, publish: Callable[[Iterable[Output]], None]) -> None:
        """Publish sealed windows (through *publish*, which flushes), then delete them."""
        raise NotImplementedError

    def window_output(self, record: dict[str, Any]) -> Output:
        """A MetricWindow to produce, keyed ``kind/subject``."""
        key = f"{record['kind']}/{record['subject']}"
        return Output(self.metrics_topic, self.window_codec.encode(record), key)

    def close(self) -> None:
        """Hand the emitter lease on now rather than when it expires; close Redis."""
        try:
            self.store.release()
        except REDIS_DOWN:
            pass  # the lease expires by itself
        finally:
            self.store.redis.close()
