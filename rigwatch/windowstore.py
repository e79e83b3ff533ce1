"""Event-time tumbling windows of additive counts, kept in Redis and shared by every worker.

A stream processor scaled over partitions cannot keep a window in one
process: a window of one model version gathers records from every partition.
So each batch *adds* its counts to the window's Redis hash, and every worker
sees the same windows. One Lua script per batch makes the batch atomic:

- **exactly-once state**: the script records the last offset applied per
  source (``topic/partition``) and refuses a batch that starts at or below it,
  so a replay after a crash (Kafka delivers at least once) adds nothing twice;
- **event time**: it keeps a watermark per source (largest event time seen) and
  when the source last delivered; the effective watermark is the smallest over
  sources that delivered within ``idle_ms`` (an idle or finished partition must
  not hold every window open forever);
- **lateness**: a window closes once the effective watermark passes its end by
  ``lateness_ms``; records for a closed window are counted as late per
  subject, never silently dropped nor added to a window already reported.

A window is a hash of additive fields (``HINCRBY``, ``HINCRBYFLOAT``, maxima)
and a list of items; dense counts (:attr:`Update.counts <rigwatch.windowing.Update.counts>`,
thousands of histogram bins) go to the list as one packed item per batch, which
costs Redis one ``RPUSH`` of a few kilobytes instead of an update per bin.

Closing moves windows to a *sealed* set; an emitter (one at a time, under a
lock) reads a sealed window, publishes it, and only then deletes it, so a
crash between the two publishes it again (at-least-once), never loses it.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from typing import Any

from redis import Redis
from redis.exceptions import NoScriptError

from rigwatch.runtime.checkpoint import (
    OFFSET_GUARD_LUA,
    SourceSpan,
    as_text,
    raise_if_stale,
    span_args,
)
from rigwatch.windowing import Update, pack_counts, window_start

__all__ = ["WindowStore"]

_APPLY = (
    """
local now, prefix = ARGV[1], ARGV[2]
local i = 3
"""
    + OFFSET_GUARD_LUA
    + """
i = spans_at
for s = 1, n_sources do
  local id, event_ms = ARGV[i], tonumber(ARGV[i + 3])
  -- A span with no usable record (event time -1) neither advances nor refreshes its source.
  if event_ms >= 0 then
    local wm = redis.call('HGET', KEYS[2], id)
    if (not wm) or tonumber(wm) < event_ms then redis.call('HSET', KEYS[2], id, ARGV[i + 3]) end
    redis.call('HSET', KEYS[3], id, now)
  end
  i = i + 4
end
local n_assigned = tonumber(ARGV[i]); i = i + 1
for s = 1, n_assigned do
  redis.call('HSET', KEYS[3], ARGV[i], now)
  i = i + 1
end
local closed = tonumber(redis.call('GET', KEYS[4]))
local late = {}
-- The hash key of a window to add to, or nil when it is already closed: then the
-- records are counted as late for the subject, never added to a reported window.
local function open_window(subject, start, records)
  if closed and tonumber(start) < closed then
    redis.call('HINCRBY', KEYS[6], subject, records)
    table.insert(late, subject)
    table.insert(late, records)
    return nil
  end
  redis.call('ZADD', KEYS[5], start, subject .. '|' .. start)
  return prefix .. start .. ':' .. subject
end
local function raise_max(key, field, value)
  local current = redis.call('HGET', key, field)
  if (not current) or tonumber(current) < tonumber(value) then redis.call('HSET', key, field, value) end
end
local n_updates = tonumber(ARGV[i]); i = i + 1
for u = 1, n_updates do
  local key = open_window(ARGV[i], ARGV[i + 1], ARGV[i + 2]); i = i + 3
  for _, op in ipairs({'HINCRBY', 'HINCRBYFLOAT', 'MAX'}) do
    local n = tonumber(ARGV[i]); i = i + 1
    if key then
      for k = 1, n do
        if op == 'MAX' then raise_max(key, ARGV[i], ARGV[i + 1])
        else redis.call(op, key, ARGV[i], ARGV[i + 1]) end
        i = i + 2
      end
    else
      i = i + 2 * n
    end
  end
  local n_items = tonumber(ARGV[i]); i = i + 1
  if key then
    -- In chunks: unpack() of very many values would overflow Lua's C stack.
    for first = i, i + n_items - 1, 1000 do
      redis.call('RPUSH', key .. ':items', unpack(ARGV, first, math.min(first + 999, i + n_items - 1)))
    end
  end
  i = i + n_items
end
local extension = {}
--EXTENSION--
return {'ok', late, extension}
"""
)

_SEAL = """
local current = tonumber(redis.call('GET', KEYS[1]))
local boundary = tonumber(ARGV[1])
if current and current >= boundary then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'WITHSCORES')
for k = 1, #due, 2 do redis.call('ZADD', KEYS[3], due[k + 1], due[k]) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
return #due / 2
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class WindowStore:
    """Tumbling windows of ``size_ms`` in Redis under ``namespace`` (see the module docs).

    Parameters
    ----------
    redis
        A Redis client (``decode_responses=False``).
    namespace
        Key prefix, unique per processor and deployment (e.g. ``rigwatch:drift:rig.``).
    size_ms, lateness_ms, idle_ms
        Window length, allowed lateness (event time) and the wall time after
        which a silent source stops holding the watermark back.
    extension
        Lua run inside :meth:`apply_batch`'s script, after the updates, so a
        processor can keep state of its own atomically with the windows (the
        accuracy join). It reads its arguments from ``ARGV[i]`` onwards, may
        call ``open_window(subject, start, records)`` (the window's hash key,
        or nil when closed: counted late) and ``raise_max(key, field, value)``,
        and fills the table ``extension``, which is returned. Its own keys
        belong under ``namespace`` too; it gets their names as arguments.
    """

    def __init__(
        self,
        redis: Redis,
        namespace: str,
        *,
        size_ms: int,
        lateness_ms: int,
        idle_ms: int,
        extension: str = "",
    ) -> None:
        if size_ms <= 0 or lateness_ms < 0 or idle_ms <= 0:
            raise ValueError(
                f"size_ms must be > 0, lateness_ms >= 0, idle_ms > 0; got {size_ms}, {lateness_ms}, {idle_ms}"
            )
        self.redis, self.ns = redis, namespace
        self.size_ms, self.lateness_ms, self.idle_ms = size_ms, lateness_ms, idle_ms
        k = namespace
        self._keys = {
            name: f"{k}:{name}"
            for name in ("offsets", "watermarks", "seen", "closed", "open", "late", "sealed")
        }
        self._apply = redis.register_script(_APPLY.replace("--EXTENSION--", extension))
        self._packer: Any = None  # a connection object only to encode commands with
        self._seal = redis.register_script(_SEAL)
        self._renew = redis.register_script(_RENEW)
        self._unlock = redis.register_script(_UNLOCK)
        self._token = uuid.uuid4().hex

    def window_start(self, event_ms: int) -> int:
        """Start of the window holding *event_ms*."""
        return window_start(event_ms, self.size_ms)

    def _window_key(self, subject: str, start_ms: int) -> str:
        return f"{self.ns}:w:{start_ms}:{subject}"

    def applied_offsets(self) -> dict[str, int]:
        """Last applied offset per source: a worker skips records at or below it."""
        raw = self.redis.hgetall(self._keys["offsets"])
        return {as_text(k): int(v) for k, v in raw.items()}

    def apply(
        self,
        sources: Sequence[SourceSpan],
        updates: Iterable[Update],
        now_ms: int,
        assigned: Iterable[str] = (),
    ) -> dict[str, int]:
        """Add one batch atomically; returns late records per subject.

        ``assigned`` names sources this worker was just given: each counts as
        active from now, so a partition with a backlog holds the watermark back
        until it delivers (or, if empty, for ``idle_ms``) instead of letting
        the first partition read close windows ahead of it.

        Raises
        ------
        StaleBatch
            A source's first offset is not beyond what was applied: nothing was added.
        """
        late, _ = self.apply_batch(sources, updates, now_ms, assigned)
        return late

    def apply_batch(
        self,
        sources: Sequence[SourceSpan],
        updates: Iterable[Update],
        now_ms: int,
        assigned: Iterable[str] = (),
        extension_args: Sequence[Any] = (),
    ) -> tuple[dict[str, int], list[Any]]:
        """:meth:`apply` with arguments for the store's Lua extension; also returns what it reported."""
        return self.batch_call(sources, updates, assigned, extension_args, now=lambda: now_ms)()

    def batch_call(
        self,
        sources: Sequence[SourceSpan],
        updates: Iterable[Update],
        assigned: Iterable[str] = (),
        extension_args: Sequence[Any] = (),
        *,
        now: Callable[[], int],
    ) -> Callable[[], tuple[dict[str, int], list[Any]]]:
        """:meth:`apply_batch`'s arguments built now, as a call that writes them when made.

        The call may be made on another thread, and again after a Redis outage: it reads
        the wall clock *now* each time (the sources' last delivery), nothing else.
        """
        argv: list[Any] = [0, f"{self.ns}:w:", *span_args(sources)]
        assigned = list(assigned)
        argv += [len(assigned), *assigned]
        updates = list(updates)
        argv.append(len(updates))
        for u in updates:
            argv += [u.subject, u.start_ms, u.records]
            # redis-py writes a float with repr(): exact round trip.
            for fields in (u.ints, u.floats, u.maxes):
                argv.append(len(fields))
                argv.extend(chain.from_iterable(fields.items()))
            items = u.items if u.counts is None else [*u.items, pack_counts(*u.counts)]
            argv.append(len(items))
            argv.extend(items)
        argv.extend(extension_args)
        keys = [self._keys[n] for n in ("offsets", "watermarks", "seen", "closed", "open", "late")]
        # Encoded here too: tens of thousands of arguments are a millisecond or more of
        # Python, which the thread making the call would otherwise spend holding the GIL.
        argv[0] = now()
        packed: list[Any] | None = self._pack(keys, argv)

        def call() -> tuple[dict[str, int], list[Any]]:
            nonlocal packed
            if packed is None:  # made again (after an outage): the clock read again
                argv[0] = now()
                packed = self._pack(keys, argv)
            command, packed = packed, None
            result = self._evalsha(command, keys, argv)
            raise_if_stale(result)
            late: dict[str, int] = {}
            flat = result[1]
            for subject, count in zip(flat[::2], flat[1::2], strict=True):
                late[as_text(subject)] = late.get(as_text(subject), 0) + int(count)
            return late, list(result[2])

        return call

    def _pack(self, keys: list[str], argv: list[Any]) -> list[Any]:
        """The batch script's EVALSHA as the client would send it (no I/O: Redis may be down)."""
        if self._packer is None:
            pool = self.redis.connection_pool
            self._packer = pool.connection_class(**pool.connection_kwargs)  # never connected
        return list(self._packer.pack_command("EVALSHA", self._apply.sha, len(keys), *keys, *argv))

    def _evalsha(self, command: list[Any], keys: list[str], argv: list[Any]) -> Any:
        """Send a packed EVALSHA of the batch script and read its reply."""
        pool = self.redis.connection_pool
        connection = pool.get_connection()
        try:
            connection.send_packed_command(command)
            return connection.read_response()
        except NoScriptError:
            # Redis restarted without the script: the client's own call loads it.
            return self._apply(keys=keys, args=argv)
        finally:
            pool.release(connection)

    def watermark(self, now_ms: int) -> float | None:
        """Effective watermark: the smallest over non-idle sources, the largest when all are idle.

        ``None`` before any data; ``-inf`` while an active source has delivered nothing yet.
        """
        state = self._watermark(now_ms)
        return None if state is None else state[0]

    def _watermark(self, now_ms: int) -> tuple[float, bool] | None:
        marks = {as_text(k): int(v) for k, v in (self.redis.hgetall(self._keys["watermarks"])).items()}
        seen = {as_text(k): int(v) for k, v in (self.redis.hgetall(self._keys["seen"])).items()}
        if not marks:
            return None
        active = [s for s, t in seen.items() if now_ms - t <= self.idle_ms]
        if active:
            return min(marks.get(s, -math.inf) for s in active), False
        return max(marks.values()), True

    def close_due(self, now_ms: int, *, wall_clock_when_idle: bool = False) -> int:
        """Seal every window the watermark has passed by the lateness; returns how many.

        When every source is idle the stream has stopped, so the window holding
        the last event closes too: a paused stream still reports its last window.
        With ``wall_clock_when_idle`` (service health: a stopped service must
        still get its windows, empty), windows then close on the wall clock
        instead, up to ``now_ms - lateness_ms``, even before any data.
        """
        state = self._watermark(now_ms)
        if wall_clock_when_idle and (state is None or state[1]):
            return self.seal_before(self.window_start(now_ms - self.lateness_ms))
        if state is None:
            return 0
        mark, all_idle = state
        if mark == -math.inf:
            return 0
        boundary = (
            self.window_start(int(mark)) + self.size_ms
            if all_idle
            else self.window_start(int(mark) - self.lateness_ms)
        )
        return self.seal_before(boundary)

    def seal_before(self, boundary_ms: int) -> int:
        """Seal every window starting before *boundary_ms*; later records for them count as late.

        For processors that close on the wall clock rather than the watermark
        (service health: a stopped service must still get its windows).
        """
        keys = [self._keys["closed"], self._keys["open"], self._keys["sealed"]]
        return int(self._seal(keys=keys, args=[boundary_ms]))

    def closed_before(self) -> int | None:
        """Windows starting before this are closed (``None``: none closed yet)."""
        value = self.redis.get(self._keys["closed"])
        return None if value is None else int(value)

    def sealed(self) -> list[tuple[str, int]]:
        """Sealed, not yet emitted windows as ``(subject, start_ms)``, oldest first."""
        members = self.redis.zrange(self._keys["sealed"], 0, -1)
        out = []
        for m in members:
            subject, _, start = as_text(m).rpartition("|")  # type: ignore[arg-type]
            out.append((subject, int(start)))
        return sorted(out, key=lambda item: (item[1], item[0]))

    def read(self, subject: str, start_ms: int) -> tuple[dict[bytes, bytes], int]:
        """A sealed window's hash and the late records of its subject not yet reported."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(self._window_key(subject, start_ms))
        pipe.hget(self._keys["late"], subject)
        fields, late = pipe.execute()
        return fields, int(late or 0)

    def read_window(self, subject: str, start_ms: int) -> tuple[dict[bytes, bytes], list[bytes], int]:
        """:meth:`read` and :meth:`read_items` in one round trip: hash, items, late records."""
        key = self._window_key(subject, start_ms)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(key)
        pipe.lrange(key + ":items", 0, -1)
        pipe.hget(self._keys["late"], subject)
        fields, items, late = pipe.execute()
        return fields, [item if isinstance(item, bytes) else item.encode() for item in items], int(late or 0)

    def read_items(self, subject: str, start_ms: int) -> list[bytes]:
        """The items appended to a window (:attr:`Update.items`), in the order they were added."""
        items = self.redis.lrange(self._window_key(subject, start_ms) + ":items", 0, -1)
        return [item if isinstance(item, bytes) else item.encode() for item in items]

    def finish(
        self, subject: str, start_ms: int, late_reported: int, state: tuple[str, bytes] | None = None
    ) -> None:
        """After the window was published: delete it, count its late records as reported, save state."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self._window_key(subject, start_ms), self._window_key(subject, start_ms) + ":items")
        pipe.zrem(self._keys["sealed"], f"{subject}|{start_ms}")
        if late_reported:
            pipe.hincrby(self._keys["late"], subject, -late_reported)
        if state is not None:
            pipe.set(f"{self.ns}:state:{state[0]}", state[1])
        pipe.execute()

    def load_state(self, name: str) -> bytes | None:
        """Opaque state saved by :meth:`finish` (e.g. a subject's detectors)."""
        value = self.redis.get(f"{self.ns}:state:{name}")
        return None if value is None else value if isinstance(value, bytes) else value.encode()

    def save_state(self, name: str, value: bytes) -> None:
        """Store opaque state under *name* (what :meth:`finish` does with its ``state``)."""
        self.redis.set(f"{self.ns}:state:{name}", value)

    def acquire(self, ttl_ms: int = 30_000) -> bool:
        """Become the only emitter for ``ttl_ms`` (renewed by calling again)."""
        key = f"{self.ns}:emitter"
        if self.redis.set(key, self._token, nx=True, px=ttl_ms):
            return True
        return bool(self._renew(keys=[key], args=[self._token, ttl_ms]))

    def release(self) -> None:
        """Stop being the emitter (only if this store holds the lock)."""
        self._unlock(keys=[f"{self.ns}:emitter"], args=[self._token])
