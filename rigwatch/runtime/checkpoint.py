"""The checkpoint protocol: state and the input offsets it covers, written to Redis in one atomic call.

A stateful service keeps what it accumulated since its last checkpoint in
process. The runtime asks it to checkpoint every few hundred milliseconds (or
N records): one Lua call checks that no source's span starts at or below the
offset already stored for it, then writes the state changes and the last
offset per source. On partition assignment each partition resumes from the
offset stored with the state (:meth:`HashState.resume_offsets`), not from
Kafka's committed offset, so a Redis that lost its last writes has the lost
span read again and counts it once; a span refused as stale (a zombie worker,
or a reply lost while the write went through) is discarded and re-read from
the stored offsets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from redis import Redis

from rigwatch.exceptions import RigwatchError

__all__ = ["OFFSET_GUARD_LUA", "HashState", "SourceSpan", "StaleBatch", "as_text"]

# KEYS[1]: hash source -> last applied offset. ARGV from index i: n, then n x (source,
# first offset, last offset, max event ms). Refuses the whole call if any source's span
# starts at or below what was applied, else records the new last offsets; leaves i
# after the spans. Shared by every checkpointing script.
OFFSET_GUARD_LUA = """
local n_sources = tonumber(ARGV[i]); i = i + 1
local spans_at = i
for s = 1, n_sources do
  local applied = redis.call('HGET', KEYS[1], ARGV[i])
  if applied and tonumber(applied) >= tonumber(ARGV[i + 1]) then
    return {'stale', ARGV[i], applied}
  end
  i = i + 4
end
i = spans_at
for s = 1, n_sources do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
  i = i + 4
end
"""

# KEYS[1] offsets, KEYS[2] the state hash. ARGV: spans (guard), n, n x (field, value).
_HASH_CHECKPOINT = (
    "local i = 1\n"
    + OFFSET_GUARD_LUA
    + """
local n = tonumber(ARGV[i]); i = i + 1
for k = 1, n do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
return {'ok'}
"""
)


def as_text(value: bytes | str) -> str:
    """A Redis reply as text (bytes unless the client decodes responses)."""
    return value.decode() if isinstance(value, bytes) else value


class StaleBatch(RigwatchError):
    """A span starts at or below an offset already checkpointed: nothing was written."""

    def __init__(self, source: str, applied: int) -> None:
        super().__init__(f"source {source} already checkpointed up to offset {applied}")
        self.source, self.applied = source, applied


@dataclass(frozen=True)
class SourceSpan:
    """What a checkpoint covers of one ``topic/partition``: offsets and largest event time (-1: none)."""

    source: str
    first_offset: int
    last_offset: int
    max_event_ms: int = -1


def span_args(spans: Sequence[SourceSpan]) -> list[object]:
    """The guard's arguments for *spans*."""
    args: list[object] = [len(spans)]
    for s in spans:
        args += [s.source, s.first_offset, s.last_offset, s.max_event_ms]
    return args


def raise_if_stale(reply: Sequence[object]) -> None:
    """Raise :class:`StaleBatch` for a guard's refusal."""
    if reply and as_text(reply[0]) == "stale":  # type: ignore[arg-type]
        raise StaleBatch(as_text(reply[1]), int(reply[2]))  # type: ignore[arg-type, call-overload]


class HashState:
    """Small keyed state (one Redis hash) checkpointed with its offsets: the alerts' states.

    Parameters
    ----------
    redis
        A Redis client.
    namespace
        Key prefix (:func:`rigwatch.windowing.namespace`); the hash is ``<namespace>:states``.
    """

    def __init__(self, redis: Redis, namespace: str) -> None:
        self.redis, self.ns = redis, namespace
        self.offsets_key, self.states_key = f"{namespace}:offsets", f"{namespace}:states"
        self._script = redis.register_script(_HASH_CHECKPOINT)

    def load(self) -> dict[str, bytes]:
        """Every field of the state hash."""
        raw: dict[bytes, bytes] = self.redis.hgetall(self.states_key)  # type: ignore[assignment]
        return {as_text(k): v for k, v in raw.items()}

    def resume_offsets(self) -> dict[str, int]:
        """The last offset per source the stored state covers."""
        raw = self.redis.hgetall(self.offsets_key)
        return {as_text(k): int(v) for k, v in raw.items()}  # type: ignore[union-attr]

    def checkpoint(self, spans: Sequence[SourceSpan], changed: Mapping[str, bytes]) -> None:
        """Write *changed* fields and the spans' last offsets atomically.

        Raises
        ------
        StaleBatch
            A span was already checkpointed; nothing was written.
        """
        args = span_args(spans)
        args.append(len(changed))
        for k, v in changed.items():
            args += [k, v]
        raise_if_stale(self._script(keys=[self.offsets_key, self.states_key], args=args))  # type: ignore[arg-type]
