"""``WindowStore`` on a real Redis: additive windows, exactly-once offsets, watermarks, sealing, the lock."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from redis import Redis

from rigwatch.runtime.checkpoint import HashState, SourceSpan, StaleBatch
from rigwatch.stack import Endpoints
from rigwatch.windowing import Update, unpack_counts
from rigwatch.windowstore import WindowStore

pytestmark = pytest.mark.integration

SIZE, LATENESS, IDLE = 1_000, 500, 10_000
A, B, C = "readings/0", "readings/1", "readings/2"


#: Makes a store on the test's namespace; keyword arguments override the window parameters.
StoreFactory = Callable[..., WindowStore]


@pytest.fixture
def redis_client(stack: Endpoints) -> Iterator[Redis]:
    client = Redis.from_url(stack.redis_url)
    yield client
    client.close()


@pytest.fixture
def namespace() -> str:
    return f"test:{uuid.uuid4().hex}"


@pytest.fixture
def store(redis_client: Redis, namespace: str) -> StoreFactory:
    """A factory of stores sharing the test's namespace and one client (several workers' view)."""

    def make(**kwargs: Any) -> WindowStore:
        params = {"size_ms": SIZE, "lateness_ms": LATENESS, "idle_ms": IDLE} | kwargs
        return WindowStore(redis_client, namespace, **params)

    return make


def test_counts_of_two_batches_from_two_sources_add_up_in_the_window_hash(store: StoreFactory) -> None:
    ws = store()
    assert ws.window_start(2_999) == 2_000
    late = ws.apply(
        [SourceSpan(A, 0, 9, 2_500)],
        [Update("m1", 2_000, 10, {"n": 10, "class_0": 7}, {"sum_x": 1.5, "sum_x2": 0.25})],
        now_ms=0,
    )
    assert late == {}
    late = ws.apply(
        [SourceSpan(B, 100, 104, 2_700)],
        [
            Update("m1", 2_000, 5, {"n": 5, "class_1": 3}, {"sum_x": 2.25}),
            Update("m2", 2_000, 1, {"n": 1}, {}),
        ],
        now_ms=0,
    )
    assert late == {}
    fields, late_count = ws.read("m1", 2_000)
    assert {k.decode(): v.decode() for k, v in fields.items()} == {
        "n": "15",
        "class_0": "7",
        "class_1": "3",
        "sum_x": "3.75",
        "sum_x2": "0.25",
    }
    assert float(fields[b"sum_x"]) == 3.75
    assert late_count == 0
    fields, _ = ws.read("m2", 2_000)
    assert fields == {b"n": b"1"}
    assert ws.read("m1", 3_000) == ({}, 0)


def test_replayed_batch_at_or_below_the_applied_offset_is_stale_and_adds_nothing(store: StoreFactory) -> None:
    ws = store()
    assert ws.applied_offsets() == {}
    ws.apply([SourceSpan(A, 0, 9, 1_100)], [Update("m1", 1_000, 10, {"n": 10})], now_ms=0)
    ws.apply([SourceSpan(B, 50, 59, 1_200)], [Update("m1", 1_000, 10, {"n": 10})], now_ms=0)
    assert ws.applied_offsets() == {A: 9, B: 59}

    # A replay of the whole batch, and one overlapping the applied offset by one record.
    for first in (0, 9):
        with pytest.raises(StaleBatch) as caught:
            ws.apply(
                [SourceSpan(B, 60, 69, 1_300), SourceSpan(A, first, 19, 1_900)],
                [Update("m1", 1_000, 20, {"n": 20}), Update("m1", 5_000, 1, {"n": 1})],
                now_ms=0,
            )
        assert (caught.value.source, caught.value.applied) == (A, 9)
    # Nothing of the refused batch landed: counts, offsets (even B's fresh ones) and watermark.
    assert ws.read("m1", 1_000) == ({b"n": b"20"}, 0)
    assert ws.read("m1", 5_000) == ({}, 0)
    assert ws.applied_offsets() == {A: 9, B: 59}
    assert ws.watermark(now_ms=0) == 1_100

    # The next batch, starting right after the applied offset, is accepted.
    ws.apply([SourceSpan(A, 10, 19, 1_900)], [Update("m1", 1_000, 10, {"n": 10})], now_ms=0)
    assert ws.read("m1", 1_000) == ({b"n": b"30"}, 0)
    assert ws.applied_offsets() == {A: 19, B: 59}
    # Another store instance (another worker) sees the same offsets.
    assert store().applied_offsets() == {A: 19, B: 59}


def test_a_batch_call_is_built_without_redis_and_made_again_is_stale_or_reloads_a_flushed_script(
    store: StoreFactory, redis_client: Redis
) -> None:
    # Built (arguments encoded) with the server unreachable: the runtime does this on its
    # main thread, and an outage must only show when the call is made.
    unreachable = WindowStore(
        Redis(port=1, socket_connect_timeout=0.5),
        "test:nowhere",
        size_ms=SIZE,
        lateness_ms=LATENESS,
        idle_ms=IDLE,
    )
    unreachable.batch_call([SourceSpan(A, 0, 0, 1_100)], [Update("m1", 1_000, 1, {"n": 1})], now=lambda: 0)

    ws = store()
    clock = iter([5, 7])
    call = ws.batch_call(
        [SourceSpan(A, 0, 9, 1_100)], [Update("m1", 1_000, 10, {"n": 10})], now=lambda: next(clock)
    )
    assert call() == ({}, [])
    # Made again, as after an outage whose reply was lost: the guard refuses it, nothing doubles.
    with pytest.raises(StaleBatch):
        call()
    assert ws.read("m1", 1_000) == ({b"n": b"10"}, 0)

    # A Redis that lost its scripts (a restart): the packed EVALSHA falls back to loading it.
    redis_client.script_flush()
    late, _ = ws.apply_batch([SourceSpan(A, 10, 19, 1_200)], [Update("m1", 1_000, 10, {"n": 10})], 0)
    assert late == {} and ws.read("m1", 1_000) == ({b"n": b"20"}, 0)


def test_watermark_is_the_min_over_active_sources_and_the_max_once_all_are_idle(store: StoreFactory) -> None:
    ws = store()
    assert ws.watermark(now_ms=0) is None
    ws.apply([SourceSpan(A, 0, 0, 5_000)], [], now_ms=0)
    ws.apply([SourceSpan(B, 0, 0, 3_000)], [], now_ms=0)
    assert ws.watermark(now_ms=0) == 3_000
    # The watermark of a source only grows: an older event time does not lower it.
    ws.apply([SourceSpan(B, 1, 1, 2_000)], [], now_ms=0)
    assert ws.watermark(now_ms=0) == 3_000
    ws.apply([SourceSpan(A, 1, 1, 7_000)], [], now_ms=6_000)
    assert ws.watermark(now_ms=6_000) == 3_000
    # B last delivered at 0: active up to idle_ms inclusive, then it no longer holds A back.
    assert ws.watermark(now_ms=IDLE) == 3_000
    assert ws.watermark(now_ms=IDLE + 1) == 7_000
    # Both silent past idle_ms: the largest watermark.
    ws.apply([SourceSpan(B, 2, 2, 4_000)], [], now_ms=7_000)
    assert ws.watermark(now_ms=16_000) == 4_000
    assert ws.watermark(now_ms=17_001) == 7_000


def test_an_assigned_source_without_data_holds_windows_open_until_it_goes_idle(store: StoreFactory) -> None:
    ws = store(lateness_ms=0)
    ws.apply([SourceSpan(A, 0, 9, 5_500)], [Update("m1", 2_000, 10, {"n": 10})], now_ms=0, assigned=[A, B])
    assert ws.watermark(now_ms=0) == -math.inf
    assert ws.close_due(now_ms=0) == 0
    # A keeps delivering; B, assigned at 0 but silent, holds the watermark back up to idle_ms.
    ws.apply([SourceSpan(A, 10, 19, 6_000)], [], now_ms=8_000)
    assert ws.watermark(now_ms=IDLE) == -math.inf
    assert ws.close_due(now_ms=IDLE) == 0
    assert ws.sealed() == []
    assert ws.watermark(now_ms=IDLE + 1) == 6_000
    assert ws.close_due(now_ms=IDLE + 1) == 1
    assert ws.sealed() == [("m1", 2_000)]
    assert ws.read("m1", 2_000) == ({b"n": b"10"}, 0)

    # Assigned again (a rebalance), B counts as active from then on, for idle_ms.
    ws.apply([], [], now_ms=12_000, assigned=[B])
    assert ws.applied_offsets() == {A: 19}
    assert ws.watermark(now_ms=12_000) == -math.inf
    assert ws.watermark(now_ms=12_000 + IDLE) == -math.inf
    assert ws.watermark(now_ms=12_000 + IDLE + 1) == 6_000


def test_close_due_seals_windows_past_end_plus_lateness_and_late_records_are_counted_per_subject(
    store: StoreFactory,
) -> None:
    ws = store()
    ws.apply(
        [SourceSpan(A, 0, 9, 1_200)],
        [
            Update("b", 0, 4, {"n": 4}, {"s": 0.5}),
            Update("c", 1_000, 2, {"n": 2}),
            Update("a", 1_000, 3, {"n": 3}),
        ],
        now_ms=0,
    )
    assert ws.close_due(now_ms=0) == 0  # window 0: 1_000 + 500 > 1_200
    ws.apply([SourceSpan(A, 10, 10, 1_499)], [], now_ms=0)
    assert ws.close_due(now_ms=0) == 0
    assert ws.sealed() == []
    ws.apply([SourceSpan(A, 11, 11, 1_500)], [], now_ms=0)
    assert ws.close_due(now_ms=0) == 1  # 1_000 + 500 <= 1_500
    assert ws.sealed() == [("b", 0)]
    assert ws.close_due(now_ms=0) == 0  # idempotent
    ws.apply([SourceSpan(A, 12, 12, 2_499)], [Update("a", 2_000, 1, {"n": 1})], now_ms=0)
    assert ws.close_due(now_ms=0) == 0
    ws.apply([SourceSpan(A, 13, 13, 2_500)], [], now_ms=0)
    assert ws.close_due(now_ms=0) == 2
    assert ws.sealed() == [("b", 0), ("a", 1_000), ("c", 1_000)]

    # Records for closed windows are late, per subject, and never reach the window.
    late = ws.apply(
        [SourceSpan(B, 0, 9, 2_600)],
        [
            Update("b", 0, 3, {"n": 3}, {"s": 4.0}),
            Update("a", 1_000, 2, {"n": 2}),
            Update("a", 0, 5, {"n": 5}),
            Update("a", 2_000, 6, {"n": 6}, {"s": 1.25}),
        ],
        now_ms=0,
    )
    assert late == {"b": 3, "a": 7}
    assert ws.read("b", 0) == ({b"n": b"4", b"s": b"0.5"}, 3)
    assert ws.read("a", 1_000) == ({b"n": b"3"}, 7)
    assert ws.read("a", 0) == ({}, 7)
    assert ws.read("a", 2_000) == ({b"n": b"7", b"s": b"1.25"}, 7)

    # The emitter publishes, then finishes: window gone, late count reported, state saved.
    ws.finish("b", 0, late_reported=3, state=("b", b"\x00detectors\xff"))
    assert ws.sealed() == [("a", 1_000), ("c", 1_000)]
    assert ws.read("b", 0) == ({}, 0)
    assert ws.load_state("b") == b"\x00detectors\xff"
    assert ws.load_state("a") is None
    ws.finish("a", 1_000, late_reported=4)
    assert ws.sealed() == [("c", 1_000)]
    assert ws.read("a", 1_000) == ({}, 3)
    assert ws.read("a", 2_000) == ({b"n": b"7", b"s": b"1.25"}, 3)
    # Saving state again replaces it.
    ws.finish("c", 1_000, late_reported=0, state=("b", b"v2"))
    assert ws.sealed() == []
    assert ws.read("c", 1_000) == ({}, 0)
    assert ws.load_state("b") == b"v2"


def test_a_window_sealed_but_not_finished_is_emitted_again_by_another_store(store: StoreFactory) -> None:
    crashed = store()
    crashed.apply(
        [SourceSpan(A, 0, 1, 3_000)],
        [Update("m1", 0, 2, {"n": 2}), Update("m1", 1_000, 1, {"n": 1})],
        now_ms=0,
    )
    assert crashed.close_due(now_ms=0) == 2
    assert crashed.acquire()
    assert crashed.sealed() == [("m1", 0), ("m1", 1_000)]
    crashed.finish("m1", 0, late_reported=0)
    # ...published m1@1000 but crashed before finish(); its lock is not released.

    successor = store()
    assert successor.sealed() == [("m1", 1_000)]
    assert successor.read("m1", 1_000) == ({b"n": b"1"}, 0)
    successor.finish("m1", 1_000, late_reported=0)
    assert crashed.sealed() == []


def test_only_one_store_holds_the_emitter_lock_until_released_or_expired(store: StoreFactory) -> None:
    first, second = store(), store()
    assert first.acquire(ttl_ms=30_000)
    assert not second.acquire(ttl_ms=30_000)
    assert first.acquire(ttl_ms=30_000)  # renew
    second.release()  # not the holder: no effect
    assert not second.acquire(ttl_ms=30_000)
    first.release()
    assert second.acquire(ttl_ms=30_000)
    assert not first.acquire(ttl_ms=30_000)
    second.release()

    # A short lease expires without a release.
    assert first.acquire(ttl_ms=200)
    assert not second.acquire(ttl_ms=200)
    started = time.monotonic()
    acquired = False
    while time.monotonic() - started < 5:
        if second.acquire(ttl_ms=30_000):
            acquired = True
            break
        time.sleep(0.02)
    elapsed = time.monotonic() - started
    assert acquired and 0.1 < elapsed < 5
    assert not first.acquire(ttl_ms=200)


def test_a_batch_without_usable_event_time_advances_offsets_only(store: StoreFactory) -> None:
    ws = store()
    # Only undecodable records so far: offsets move, but there is no watermark yet.
    ws.apply([SourceSpan(C, 0, 19, -1)], [], now_ms=0)
    assert ws.applied_offsets() == {C: 19}
    assert ws.watermark(now_ms=0) is None
    assert ws.close_due(now_ms=0) == 0

    ws.apply([SourceSpan(A, 0, 9, 5_000)], [], now_ms=0)
    ws.apply([SourceSpan(B, 0, 9, 9_000)], [], now_ms=0)
    # C, seen with no event time only, neither holds the watermark back at -1 nor counts as active.
    assert ws.watermark(now_ms=0) == 5_000
    # A's next batch is all undecodable, delivered late in wall time: A is not refreshed.
    ws.apply([SourceSpan(A, 10, 29, -1), SourceSpan(B, 10, 19, 9_500)], [], now_ms=2_000)
    assert ws.applied_offsets() == {A: 29, B: 19, C: 19}
    assert ws.watermark(now_ms=2_000) == 5_000
    assert ws.watermark(now_ms=IDLE) == 5_000
    # A went idle at IDLE + 1 (last seen at 0), though a batch of it came at 2_000.
    assert ws.watermark(now_ms=IDLE + 1) == 9_500
    assert ws.watermark(now_ms=2_000 + IDLE + 1) == 9_500
    with pytest.raises(StaleBatch):
        ws.apply([SourceSpan(A, 29, 30, 6_000)], [], now_ms=2_000)


def test_when_every_source_is_idle_the_window_holding_the_last_event_closes_too(store: StoreFactory) -> None:
    ws = store()
    ws.apply(
        [SourceSpan(A, 0, 9, 2_600)],
        [Update("m1", 1_000, 4, {"n": 4}), Update("m1", 2_000, 6, {"n": 6})],
        now_ms=0,
    )
    # Active: only windows ending lateness before the watermark close.
    assert ws.close_due(now_ms=0) == 1
    assert ws.sealed() == [("m1", 1_000)]
    # Stream stopped: the last window closes as well, later windows stay free.
    assert ws.close_due(now_ms=IDLE + 1) == 1
    assert ws.sealed() == [("m1", 1_000), ("m1", 2_000)]
    ws.apply([SourceSpan(A, 10, 10, 3_100)], [Update("m1", 3_000, 1, {"n": 1})], now_ms=IDLE + 2)
    assert ws.read("m1", 3_000) == ({b"n": b"1"}, 0)


def test_maxes_keep_the_largest_value_and_items_are_kept_in_order_until_finished(store: StoreFactory) -> None:
    ws = store()
    ws.apply(
        [SourceSpan(A, 0, 1, 1_100)],
        [Update("m1", 1_000, 2, {"n": 2}, maxes={"last_ms": 1_100.5}, items=["a", "b"])],
        now_ms=0,
    )
    ws.apply(
        [SourceSpan(A, 2, 3, 1_050)],
        [Update("m1", 1_000, 2, {"n": 2}, maxes={"last_ms": 1_050}, items=[str(k) for k in range(2500)])],
        now_ms=0,
    )
    fields, _ = ws.read("m1", 1_000)
    assert float(fields[b"last_ms"]) == 1_100.5
    items = ws.read_items("m1", 1_000)
    assert items[:3] == [b"a", b"b", b"0"] and len(items) == 2502 and items[-1] == b"2499"
    assert ws.seal_before(2_000) == 1
    ws.finish("m1", 1_000, 0)
    assert ws.read_items("m1", 1_000) == []
    assert ws.read("m1", 1_000) == ({}, 0)


def test_the_extension_runs_atomically_with_the_batch_and_sees_closed_windows(store: StoreFactory) -> None:
    # A toy extension: add one record per argument to window ARGV[i], report the keys it got.
    extension = """
local n = tonumber(ARGV[i]); i = i + 1
for k = 1, n do
  local key = open_window('x', ARGV[i], 1)
  if key then redis.call('HINCRBY', key, 'n', 1) end
  table.insert(extension, key or 'closed')
  i = i + 1
end
"""

    ws = store(extension=extension)
    late, reported = ws.apply_batch([SourceSpan(A, 0, 0, 1_500)], [], 0, (), [2, 1_000, 1_000])
    assert late == {} and reported == [f"{ws.ns}:w:1000:x".encode()] * 2
    assert ws.read("x", 1_000) == ({b"n": b"2"}, 0)
    ws.seal_before(2_000)
    late, reported = ws.apply_batch([SourceSpan(A, 1, 1, 1_500)], [], 0, (), [1, 1_000])
    assert late == {"x": 1} and reported == [b"closed"]
    # A stale batch runs no extension either.
    with pytest.raises(StaleBatch):
        ws.apply_batch([SourceSpan(A, 1, 1, 1_500)], [], 0, (), [1, 3_000])
    assert ws.read("x", 3_000) == ({}, 1)


def test_wall_clock_when_idle_closes_windows_on_the_clock_once_every_source_is_idle(
    store: StoreFactory,
) -> None:
    ws = store()
    # No data at all yet: the clock closes windows (a health processor reports "no data").
    assert ws.close_due(5_600, wall_clock_when_idle=True) == 0
    assert ws.closed_before() == 5_000
    ws.apply([SourceSpan(A, 0, 0, 7_200)], [Update("m1", 7_000, 1, {"n": 1})], now_ms=7_300)
    # An active source: the watermark decides, not the clock.
    ws.close_due(9_000, wall_clock_when_idle=True)
    assert ws.closed_before() == 6_000
    # Idle: the clock moves on past the last event's window.
    assert ws.close_due(7_300 + IDLE + 1, wall_clock_when_idle=True) == 1
    assert ws.closed_before() == ws.window_start(7_300 + IDLE + 1 - LATENESS)
    ws.save_state("s", b"x")
    assert ws.load_state("s") == b"x"


def test_hash_state_shares_the_offset_guard_a_stale_span_writes_nothing(
    redis_client: Redis, namespace: str, store: StoreFactory
) -> None:
    state = HashState(redis_client, namespace)
    assert state.resume_offsets() == {}
    state.checkpoint([SourceSpan(A, 0, 9), SourceSpan(B, 50, 59)], {"rule-1": b"firing"})
    state.checkpoint([SourceSpan(A, 10, 14)], {"rule-2": b"ok"})
    assert state.resume_offsets() == {A: 14, B: 59}
    assert state.load() == {"rule-1": b"firing", "rule-2": b"ok"}

    # At the stored offset, below it, and a replay of the whole span: refused as a whole,
    # B's fresh span included, and no field is written.
    for first in (14, 12, 10):
        with pytest.raises(StaleBatch) as caught:
            state.checkpoint([SourceSpan(B, 60, 69), SourceSpan(A, first, 20)], {"rule-1": b"resolved"})
        assert (caught.value.source, caught.value.applied) == (A, 14)
    assert state.load() == {"rule-1": b"firing", "rule-2": b"ok"}
    assert state.resume_offsets() == {A: 14, B: 59}

    # Right after the stored offset: accepted, last offsets recorded per source.
    state.checkpoint([SourceSpan(B, 60, 69), SourceSpan(A, 15, 20)], {"rule-1": b"resolved"})
    assert state.load() == {"rule-1": b"resolved", "rule-2": b"ok"}
    assert state.resume_offsets() == {A: 20, B: 69}

    # One guard, one offsets hash: the window store on the namespace reads and enforces the same.
    ws = store()
    assert ws.applied_offsets() == state.resume_offsets()
    with pytest.raises(StaleBatch):
        ws.apply([SourceSpan(A, 20, 25, 1_000)], [Update("m1", 1_000, 1, {"n": 1})], now_ms=0)
    assert ws.read("m1", 1_000) == ({}, 0)


def test_dense_counts_are_one_packed_item_per_batch_added_up_on_read_never_to_a_closed_window(
    store: StoreFactory,
) -> None:
    ws = store()
    ones = (np.ones(2_000, np.int64), np.full(1_500, 0.25))
    twos = (np.full(2_000, 2, np.int64), np.full(1_500, 0.5))
    ws.apply([SourceSpan(A, 0, 9, 1_200)], [Update("m1", 1_000, 10, {"n": 10}, counts=ones)], now_ms=0)
    ws.apply([SourceSpan(B, 0, 4, 1_300)], [Update("m1", 1_000, 5, counts=twos)], now_ms=0)
    fields, items, late = ws.read_window("m1", 1_000)
    assert fields == {b"n": b"10"} and late == 0 and len(items) == 2
    assert items == ws.read_items("m1", 1_000)
    totals = [unpack_counts(item, 2_000, 1_500) for item in items]
    assert sum(i for i, _ in totals).tolist() == [3] * 2_000
    assert sum(f for _, f in totals).tolist() == [0.75] * 1_500

    # A replay is refused whole: no item is appended.
    with pytest.raises(StaleBatch):
        ws.apply([SourceSpan(A, 5, 12, 1_400)], [Update("m1", 1_000, 8, counts=ones)], now_ms=0)
    assert len(ws.read_window("m1", 1_000)[1]) == 2

    # Closed: later counts for it are late records of the subject, and no item is added.
    assert ws.seal_before(2_000) == 1
    late_now = ws.apply([SourceSpan(A, 10, 12, 2_100)], [Update("m1", 1_000, 3, counts=twos)], now_ms=0)
    assert late_now == {"m1": 3}
    _, items, late = ws.read_window("m1", 1_000)
    assert len(items) == 2 and late == 3
    ws.finish("m1", 1_000, late_reported=3)
    assert ws.read_window("m1", 1_000) == ({}, [], 0)
