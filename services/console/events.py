"""Server-sent events: every record the tables take, fanned out to the clients of ``GET /api/v1/events``.

The tables call :meth:`Hub.publish` for each record they fold in (on the event
loop, like everything that touches them); each subscriber has a bounded queue.
A client too slow to keep up is not allowed to hold records back or to grow the
console's memory: its queue is dropped and it gets one ``overflow`` event,
after which it reconnects and reads the state again.

A client that wants the state *and* every change after it subscribes first,
then reads the state (``GET /api/v1/alerts`` ...): what changes in between
then arrives as an event instead of being missed.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterable
from typing import Any

__all__ = ["Hub", "Subscription"]

_CLOSED = object()  # the console stops: the stream ends
_OVERFLOW = object()  # the subscriber fell behind: the stream ends with an overflow event


class Subscription:
    """The events of some kinds, from when it was made: ``(id, kind, record)``, in order.

    Iterate with ``async for``; it ends when the console stops or the
    subscriber fell too far behind (then the last item is an ``overflow`` event).
    """

    def __init__(self, hub: Hub, kinds: frozenset[str], maxsize: int) -> None:
        self.hub, self.kinds = hub, kinds
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self.ended = False

    def __aiter__(self) -> AsyncIterator[tuple[int, str, dict[str, Any]]]:
        return self

    async def __anext__(self) -> tuple[int, str, dict[str, Any]]:
        if self.ended:
            raise StopAsyncIteration
        item = await self.queue.get()
        if item is _CLOSED:
            self.ended = True
            raise StopAsyncIteration
        if item is _OVERFLOW:
            self.ended = True
            return 0, "overflow", {"error": "too slow to keep up: reconnect and read the state again"}
        return item  # type: ignore[no-any-return]

    def _end(self, marker: object, *, keep: bool) -> None:
        """End the stream with *marker*: after what waits (*keep*, room permitting) or instead of it."""
        if keep:
            try:
                self.queue.put_nowait(marker)
                return
            except asyncio.QueueFull:
                pass
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(marker)

    def close(self) -> None:
        """Stop receiving (the client went away)."""
        self.hub._subscribers.discard(self)


class Hub:
    """Fan records out to :class:`Subscription` queues.

    Parameters
    ----------
    maxsize
        Events one subscriber may have waiting before it is dropped.

    Examples
    --------
    >>> import asyncio
    >>> async def demo():
    ...     hub = Hub()
    ...     sub = hub.subscribe(["alert"])
    ...     hub.publish("window", {"kind": "drift"})
    ...     hub.publish("alert", {"alert_id": "a"})
    ...     hub.close()
    ...     return [(kind, record) async for _, kind, record in sub]
    >>> asyncio.run(demo())
    [('alert', {'alert_id': 'a'})]
    """

    def __init__(self, maxsize: int = 1000) -> None:
        self.maxsize = maxsize
        self._subscribers: set[Subscription] = set()
        self._ids = itertools.count(1)
        self.closed = False

    def subscribe(self, kinds: Iterable[str]) -> Subscription:
        """A new subscription to *kinds* (of :data:`~services.console.tables.KINDS`)."""
        sub = Subscription(self, frozenset(kinds), self.maxsize)
        if self.closed:
            sub._end(_CLOSED, keep=True)
        else:
            self._subscribers.add(sub)
        return sub

    def publish(self, kind: str, record: dict[str, Any]) -> None:
        """Hand *record* to every subscriber of *kind* (a tables listener; never blocks)."""
        event_id = next(self._ids)
        for sub in list(self._subscribers):
            if kind not in sub.kinds:
                continue
            try:
                sub.queue.put_nowait((event_id, kind, record))
            except asyncio.QueueFull:
                self._subscribers.discard(sub)
                # Told at once rather than after its backlog: it must read the state again anyway.
                sub._end(_OVERFLOW, keep=False)

    def close(self) -> None:
        """End every subscription (the console stops: open streams must not hold the shutdown up)."""
        self.closed = True
        for sub in list(self._subscribers):
            sub._end(_CLOSED, keep=True)
        self._subscribers.clear()

    def __len__(self) -> int:
        return len(self._subscribers)
