"""The runtime's logic without a broker: checkpoint order, rewinds, resume points, Redis outages, merging.

The confluent consumer and the producer are small fakes that write what is
asked of them to one shared call log, so a test reads the order of a
checkpoint off it. ``Runtime`` is driven by its own methods with the fakes
set as its clients (``_open`` is replaced, nothing else).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from types import SimpleNamespace
from typing import Any, cast

import pytest
from confluent_kafka import OFFSET_INVALID, TopicPartition
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError

from rigwatch.exceptions import DeliveryError
from rigwatch.kafka import StopFlag
from rigwatch.runtime import loop
from rigwatch.runtime.checkpoint import SourceSpan, StaleBatch
from rigwatch.runtime.loop import LONG_POLL, Runtime, RuntimeMetrics, Service, StateWrite, _by_topic
from rigwatch.runtime.outage import RedisWait, StoppedWhileWaiting
from rigwatch.runtime.records import Batch, Output
from rigwatch.windowing import Pending, Update, Updates

IN, OUT, SERVICE = "rig.in", "rig.out", "svc"
#: A partition's offset left for the client to choose (committed offset, else auto.offset.reset).
UNSET = OFFSET_INVALID
Call = tuple[Any, ...]


# ---------------------------------------------------------------------------- fakes


class FakeMessage:
    """What ``Runtime._poll`` and ``_by_topic`` read of a confluent ``Message``."""

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return f"{self._partition}@{self._offset}".encode()

    def key(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, 0)

    def headers(self) -> None:
        return None

    def error(self) -> None:
        return None


def _tps(partitions: Iterable[TopicPartition]) -> list[tuple[str, int, int]]:
    """Partitions as sorted ``(topic, partition, offset)``: the runtime keeps its assignment in a set."""
    return sorted((tp.topic, tp.partition, tp.offset) for tp in partitions)


class FakeConsumer:
    """Hands out scripted polls; records offset stores and (un)assignments; keeps the assignment.

    When the script runs out, the stop flag is set (the loop's SIGTERM).
    :meth:`rebalance` calls a rebalance callback as confluent-kafka's
    ``Consumer_rebalance_cb`` does: when the callback made no (incremental)
    (un)assign call of its own, the client makes the default one for it.
    """

    def __init__(self, calls: list[Call], polls: Sequence[Sequence[FakeMessage]], stop: StopFlag) -> None:
        self.calls, self.stop = calls, stop
        self._polls = [list(p) for p in polls]
        self._rest: list[FakeMessage] = []
        self.assignment: dict[tuple[str, int], int] = {}
        self._assign_calls = 0
        #: Runs inside the next ``consume()``, as librdkafka serves a rebalance there.
        self.during_consume: Callable[[], None] | None = None

    def poll(self, timeout: float) -> FakeMessage | None:
        if not self._polls:
            self.stop.set()
            return None
        first, *self._rest = self._polls.pop(0)
        return first

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        if self.during_consume is not None:
            hook, self.during_consume = self.during_consume, None
            hook()
        out, self._rest = self._rest[:num_messages], self._rest[num_messages:]
        return out

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        self.calls.append(("store_offsets", _tps(offsets)))

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        self._assign_calls += 1
        self.calls.append(("assign", _tps(partitions)))
        self.assignment.update({(tp.topic, tp.partition): tp.offset for tp in partitions})

    def incremental_unassign(self, partitions: list[TopicPartition]) -> None:
        self._assign_calls += 1
        self.calls.append(("unassign", _tps(partitions)))
        for tp in partitions:
            del self.assignment[(tp.topic, tp.partition)]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.calls.append(("pause", _tps(partitions)))

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.calls.append(("resume", _tps(partitions)))

    def rebalance(
        self,
        callback: Callable[[Any, list[TopicPartition]], None],
        partitions: list[TopicPartition],
        *,
        assign: bool,
    ) -> None:
        self._assign_calls = 0
        callback(self, partitions)
        if not self._assign_calls:
            (self.incremental_assign if assign else self.incremental_unassign)(partitions)


class FakeProducer:
    """Records produce and flush calls; a flush raises *fail* when given."""

    def __init__(self, calls: list[Call], fail: Exception | None = None) -> None:
        self.calls, self.fail = calls, fail

    def produce(
        self, topic: str, value: bytes, key: Any = None, headers: Any = None, timestamp_ms: int = 0
    ) -> None:
        self.calls.append(("produce", topic, value))

    def flush(self, timeout: float = 30.0) -> None:
        self.calls.append(("flush",))
        if self.fail is not None:
            raise self.fail


class RecordingService(Service):
    """One output per record; logs checkpoints and discards; the first *stale* checkpoints are refused."""

    topics = (IN,)

    def __init__(
        self, calls: list[Call], *, stateful: bool, stored: Mapping[str, int] | None = None, stale: int = 0
    ) -> None:
        self.calls, self.stateful, self.stale = calls, stateful, stale
        self.stored = dict(stored or {})

    def on_batch(self, batch: Batch) -> Iterable[Output]:
        return [Output(OUT, value) for value in batch.values if value is not None]

    def checkpoint(self, spans: Sequence[SourceSpan], assigned: Sequence[str]) -> None:
        self.calls.append(("checkpoint", list(spans), list(assigned)))
        if self.stale:
            self.stale -= 1
            raise StaleBatch(spans[0].source, self.stored.get(spans[0].source, -1))
        self.stored.update({s.source: s.last_offset for s in spans})

    def resume_offsets(self) -> Mapping[str, int]:
        return dict(self.stored)

    def discard(self) -> None:
        self.calls.append(("discard",))


class OverlapService(RecordingService):
    """Hands its state over (``overlap``): each write runs on the runtime's writer thread.

    Logs batches (no outputs), writes (from the writer thread), results applied, discards
    with what they dropped, and ticks. A write waits for its gate: write ``k`` is released
    when the batch holding offset ``o`` is handled for ``release_on[o] == k``, any other at
    once. ``failures`` are raised by the next write attempts, in turn.
    """

    overlap = True

    def __init__(
        self,
        calls: list[Call],
        *,
        stateful: bool = True,
        stored: Mapping[str, int] | None = None,
        stale: int = 0,
        release_on: Mapping[int, int] | None = None,
        failures: Sequence[Exception] = (),
    ) -> None:
        super().__init__(calls, stateful=stateful, stored=stored, stale=stale)
        self.release_on = dict(release_on or {})
        self.failures = list(failures)
        self.handled: list[int] = []  # offsets handled since the last take
        self.gates: list[threading.Event] = []

    def on_batch(self, batch: Batch) -> Iterable[Output]:
        self.calls.append(("batch", list(batch.offsets)))
        self.handled.extend(batch.offsets)
        for offset in batch.offsets:
            if offset in self.release_on:
                self.gates[self.release_on[offset]].set()
        return ()

    def take(self, spans: Sequence[SourceSpan], assigned: Sequence[str]) -> StateWrite:
        taken, self.handled = self.handled, []
        gate = threading.Event()
        if len(self.gates) not in self.release_on.values():
            gate.set()
        self.gates.append(gate)

        def write() -> list[int]:
            assert gate.wait(5), "a write was never released"
            self.calls.append(("write", list(spans)))
            if self.failures:
                raise self.failures.pop(0)
            if self.stale:
                self.stale -= 1
                raise StaleBatch(spans[0].source, self.stored.get(spans[0].source, -1))
            self.stored.update({s.source: s.last_offset for s in spans})
            return taken

        return StateWrite(write, lambda result: self.calls.append(("applied", result)))

    def discard(self) -> None:
        self.calls.append(("discard", self.handled))
        self.handled = []

    def on_tick(self, now_ms: int, publish: Callable[[Iterable[Output]], None]) -> None:
        self.calls.append(("tick",))


class Rig:
    """A runtime wired to fakes, with its call log and metrics registry."""

    def __init__(
        self,
        polls: Sequence[Sequence[FakeMessage]] = (),
        *,
        stateful: bool = True,
        stored: Mapping[str, int] | None = None,
        stale: int = 0,
        flush_fails: Exception | None = None,
        service: type[RecordingService] = RecordingService,
        tick_ms: int = 0,
        **service_options: Any,
    ) -> None:
        self.calls: list[Call] = []
        self.stop = StopFlag()
        self.registry = CollectorRegistry()
        self.service = service(self.calls, stateful=stateful, stored=stored, stale=stale, **service_options)
        self.consumer = FakeConsumer(self.calls, polls, self.stop)
        self.producer = FakeProducer(self.calls, flush_fails)
        self.runtime = Runtime(
            self.service,
            bootstrap="127.0.0.1:1",
            group="g",
            stop=self.stop,
            metrics=RuntimeMetrics(self.registry, SERVICE),
            roles=LONG_POLL,
            checkpoint_ms=0,  # a checkpoint after every poll
            tick_ms=tick_ms,
        )
        self.runtime._consumer = cast(Any, self.consumer)
        self.runtime._producer = cast(Any, self.producer)

    def run(self, monkeypatch: pytest.MonkeyPatch) -> int:
        monkeypatch.setattr(self.runtime, "_open", lambda stack: (self.consumer, self.producer))
        with ExitStack() as stack:
            return self.runtime.run(stack)

    def poll(self) -> None:
        """One poll's records handled, as the loop does."""
        for batch in _by_topic(self.runtime._poll(cast(Any, self.consumer))):
            list(self.service.on_batch(batch))

    def assign(self, *partitions: int) -> None:
        tps = [TopicPartition(IN, p) for p in partitions]
        self.consumer.rebalance(self.runtime._on_assign, tps, assign=True)

    def revoke(self, *partitions: int) -> None:
        tps = [TopicPartition(IN, p) for p in partitions]
        self.consumer.rebalance(self.runtime._on_revoke, tps, assign=False)

    def metric(self, name: str) -> float | None:
        return self.registry.get_sample_value(name, {"service": SERVICE})

    def named(self, *names: str) -> list[Call]:
        return [c for c in self.calls if c[0] in names]


def _msgs(partition: int, *offsets: int) -> list[FakeMessage]:
    return [FakeMessage(IN, partition, o) for o in offsets]


# ---------------------------------------------------------------------------- (a) checkpoint order


def test_a_checkpoint_produces_then_flushes_then_writes_state_with_its_spans_then_stores_offsets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig([[*_msgs(0, 5, 6), *_msgs(1, 3)], _msgs(0, 7)])
    rig.assign(0, 1)
    rig.calls.clear()

    assert rig.run(monkeypatch) == 0

    assert rig.calls == [
        ("produce", OUT, b"0@5"),
        ("produce", OUT, b"0@6"),
        ("produce", OUT, b"1@3"),
        ("flush",),
        # First and last offset per partition; the sources assigned since the last checkpoint, once.
        ("checkpoint", [SourceSpan(f"{IN}/0", 5, 6), SourceSpan(f"{IN}/1", 3, 3)], [f"{IN}/0", f"{IN}/1"]),
        ("store_offsets", [(IN, 0, 7), (IN, 1, 4)]),
        ("produce", OUT, b"0@7"),
        ("flush",),
        ("checkpoint", [SourceSpan(f"{IN}/0", 7, 7)], []),
        ("store_offsets", [(IN, 0, 8)]),
    ]
    assert rig.metric("rigwatch_runtime_checkpoints_total") == 2


def test_a_failed_flush_writes_no_state_and_stores_no_offsets() -> None:
    rig = Rig([_msgs(0, 5, 6)], flush_fails=DeliveryError("delivery failed: broker down"))
    rig.poll()

    with pytest.raises(DeliveryError):
        rig.runtime.checkpoint()

    assert rig.calls == [("flush",)]
    assert rig.metric("rigwatch_runtime_checkpoints_total") == 0


def test_a_failed_flush_ends_the_loop_with_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig([_msgs(0, 5)], stateful=False, flush_fails=DeliveryError("delivery failed"))

    with pytest.raises(DeliveryError):
        rig.run(monkeypatch)

    assert rig.named("checkpoint", "store_offsets") == []


# ---------------------------------------------------------------------------- (b) stale spans


def test_a_stale_checkpoint_discards_the_work_and_reassigns_at_the_stored_offsets() -> None:
    rig = Rig([[*_msgs(0, 40, 41), *_msgs(1, 4)]], stored={f"{IN}/0": 39, f"{IN}/1": 3}, stale=1)
    rig.assign(0, 1)
    assert rig.consumer.assignment == {(IN, 0): 40, (IN, 1): 4}
    rig.calls.clear()
    rig.poll()
    # Another worker (or this one, its reply lost) checkpointed these partitions meanwhile.
    rig.service.stored = {f"{IN}/0": 41, f"{IN}/1": 9}

    rig.runtime.checkpoint()

    assert rig.calls == [
        ("flush",),
        ("checkpoint", [SourceSpan(f"{IN}/0", 40, 41), SourceSpan(f"{IN}/1", 4, 4)], [f"{IN}/0", f"{IN}/1"]),
        ("discard",),
        ("unassign", [(IN, 0, UNSET), (IN, 1, UNSET)]),
        ("assign", [(IN, 0, 42), (IN, 1, 10)]),
    ]
    assert rig.consumer.assignment == {(IN, 0): 42, (IN, 1): 10}
    assert rig.metric("rigwatch_runtime_rewinds_total") == 1
    assert rig.metric("rigwatch_runtime_checkpoints_total") == 0
    # The span is gone with the work: the next checkpoint has nothing stale to repeat, only the
    # assignment (not yet written) to report.
    rig.runtime.checkpoint()
    assert rig.calls[-2:] == [("flush",), ("checkpoint", [], [f"{IN}/0", f"{IN}/1"])]
    assert rig.named("store_offsets") == []


# ---------------------------------------------------------------------------- (c) resume points


def test_on_assign_a_stateful_service_resumes_after_its_stored_offsets() -> None:
    rig = Rig(stored={f"{IN}/0": 41, f"{IN}/2": 0})

    rig.assign(0, 1, 2)

    # Partition 1 has no stored offset: left as given (Kafka's committed offset, else auto.offset.reset).
    assert rig.calls == [("assign", [(IN, 0, 42), (IN, 1, UNSET), (IN, 2, 1)])]


def test_on_assign_a_stateless_service_resumes_from_kafka() -> None:
    rig = Rig(stateful=False, stored={f"{IN}/0": 41})

    rig.consumer.rebalance(
        rig.runtime._on_assign, [TopicPartition(IN, 0), TopicPartition(IN, 1, 7)], assign=True
    )

    assert rig.calls == [("assign", [(IN, 0, UNSET), (IN, 1, 7)])]


# ---------------------------------------------------------------------------- rebalances


def test_on_revoke_the_partitions_are_checkpointed_then_unassigned() -> None:
    rig = Rig([[*_msgs(0, 5), *_msgs(1, 8)]], stored={f"{IN}/0": 4, f"{IN}/1": 7})
    rig.assign(0, 1)
    rig.runtime.checkpoint()  # the assignment reported
    rig.poll()
    rig.calls.clear()

    rig.revoke(1)

    assert rig.calls == [
        ("flush",),
        ("checkpoint", [SourceSpan(f"{IN}/0", 5, 5), SourceSpan(f"{IN}/1", 8, 8)], []),
        ("store_offsets", [(IN, 0, 6), (IN, 1, 9)]),
        ("unassign", [(IN, 1, UNSET)]),
    ]
    assert rig.consumer.assignment == {(IN, 0): 5}


def test_a_stale_checkpoint_on_revoke_rewinds_only_the_partitions_still_owned() -> None:
    # on_lost's case above all: another worker already owns partition 1 and checkpointed past
    # our span. The rewind must not assign it to this worker again, and since the callback
    # assigns (the rewind), the client leaves unassigning the revoked one to it.
    rig = Rig([[*_msgs(0, 5), *_msgs(1, 8)]], stored={f"{IN}/0": 4, f"{IN}/1": 7}, stale=1)
    rig.assign(0, 1)
    rig.poll()
    rig.service.stored[f"{IN}/1"] = 20

    rig.revoke(1)

    assert rig.consumer.assignment == {(IN, 0): 5}
    assert rig.named("discard", "store_offsets") == [("discard",)]


def test_a_rebalance_served_inside_consume_checkpoints_no_record_still_in_hand() -> None:
    rig = Rig([[*_msgs(0, 100, 101), *_msgs(1, 7)]])
    rig.assign(0, 1)
    # librdkafka serves rebalance callbacks inside consume(): here after poll() handed out 0@100,
    # which the service has not seen yet. Its offset must not be checkpointed (and stored for
    # commit) before it is handled, or a crash before the next checkpoint would lose it.
    rig.consumer.during_consume = lambda: rig.assign(2)

    rig.poll()

    assert rig.named("checkpoint") == [("checkpoint", [], [f"{IN}/0", f"{IN}/1"])]
    assert rig.named("store_offsets") == []
    rig.runtime.checkpoint()
    assert rig.named("checkpoint")[-1] == (
        "checkpoint",
        [SourceSpan(f"{IN}/0", 100, 101), SourceSpan(f"{IN}/1", 7, 7)],
        [f"{IN}/2"],
    )


# ---------------------------------------------------------------------------- (d) Redis outages


class FakeStop:
    """A stop flag whose waits return at once; records the delays asked for."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.is_set = False

    def __bool__(self) -> bool:
        return self.is_set

    def wait(self, seconds: float) -> bool:
        self.delays.append(seconds)
        return self.is_set


def _outage(failures: int, during: Callable[[], None] = lambda: None) -> Callable[[], str]:
    """A Redis call that raises ConnectionError *failures* times, then returns ``"ok"``."""
    left = [failures]

    def call() -> str:
        during()
        if left[0]:
            left[0] -= 1
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return "ok"

    return call


def test_redis_wait_retries_through_an_outage_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    registry, stop, events = CollectorRegistry(), FakeStop(), []
    gauge = RuntimeMetrics(registry, SERVICE).redis_unavailable
    wait = RedisWait(cast(Any, stop), gauge, lambda: events.append("pause"), lambda: events.append("resume"))
    seen: list[float | None] = []

    def unavailable() -> None:
        seen.append(registry.get_sample_value("rigwatch_runtime_redis_unavailable", {"service": SERVICE}))

    with caplog.at_level(logging.WARNING, logger="rigwatch.runtime"):
        assert wait.call(_outage(2, unavailable)) == "ok"

    assert seen == [0.0, 1.0, 1.0]  # before the first failure, then while it lasts
    assert registry.get_sample_value("rigwatch_runtime_redis_unavailable", {"service": SERVICE}) == 0.0
    assert events == ["pause", "resume"]
    assert stop.delays == [0.1, 0.2]  # exponential backoff
    assert wait.outages == 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Redis unreachable" in m for m in messages) == 1
    assert sum("Redis reachable again" in m for m in messages) == 1


def test_an_outage_met_by_nested_calls_is_said_paused_for_and_resumed_from_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A tick checkpoints inside its own call: Redis can go down between the two.
    stop, events = FakeStop(), []
    gauge = RuntimeMetrics(CollectorRegistry(), SERVICE).redis_unavailable
    wait = RedisWait(cast(Any, stop), gauge, lambda: events.append("pause"), lambda: events.append("resume"))
    inner = [_outage(0), _outage(2)]  # the first checkpoint gets through, the retried one meets the outage
    outer = _outage(1)

    def tick() -> str:
        wait.call(inner.pop(0))
        return outer()

    with caplog.at_level(logging.WARNING, logger="rigwatch.runtime"):
        assert wait.call(tick) == "ok"

    assert events == ["pause", "resume"]
    assert wait.outages == 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Redis unreachable" in m for m in messages) == 1
    assert sum("Redis reachable again" in m for m in messages) == 1


def test_redis_wait_without_an_outage_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    stop, events = FakeStop(), []
    gauge = RuntimeMetrics(CollectorRegistry(), SERVICE).redis_unavailable
    wait = RedisWait(cast(Any, stop), gauge, lambda: events.append("pause"), lambda: events.append("resume"))

    with caplog.at_level(logging.WARNING, logger="rigwatch.runtime"):
        assert wait.call(lambda x: x + 1, 1) == 2

    assert (events, stop.delays, wait.outages, caplog.records) == ([], [], 0, [])


def test_a_stop_during_an_outage_ends_the_wait() -> None:
    stop = StopFlag()
    gauge = RuntimeMetrics(CollectorRegistry(), SERVICE).redis_unavailable
    wait = RedisWait(stop, gauge)

    with pytest.raises(StoppedWhileWaiting) as caught:
        wait.call(_outage(1_000, during=stop.set))

    assert isinstance(caught.value.__cause__, ConnectionError)


def _checkpoint_through_an_outage(rig: Rig) -> None:
    """One checkpoint whose first state write finds Redis down."""
    refusals = [1]
    record = rig.service.checkpoint

    def checkpoint(spans: Sequence[SourceSpan], assigned: Sequence[str]) -> None:
        if refusals[0]:
            refusals[0] -= 1
            raise ConnectionError("Redis restarting")
        record(spans, assigned)

    rig.service.checkpoint = checkpoint  # type: ignore[method-assign]
    rig.runtime.redis.stop = cast(Any, FakeStop())
    rig.runtime.checkpoint()


def test_a_checkpoint_waits_out_an_outage_with_consumption_paused() -> None:
    rig = Rig([[*_msgs(0, 5), *_msgs(1, 8)]])
    rig.assign(0, 1)
    rig.runtime.checkpoint()  # the assignment reported
    rig.poll()
    rig.calls.clear()

    _checkpoint_through_an_outage(rig)

    assert [c[0] for c in rig.calls] == ["flush", "pause", "checkpoint", "resume", "store_offsets"]
    assert rig.calls[1] == ("pause", [(IN, 0, UNSET), (IN, 1, UNSET)])
    assert rig.calls[3] == ("resume", [(IN, 0, UNSET), (IN, 1, UNSET)])
    assert rig.calls[2][1] == [SourceSpan(f"{IN}/0", 5, 5), SourceSpan(f"{IN}/1", 8, 8)]
    assert rig.calls[4] == ("store_offsets", [(IN, 0, 6), (IN, 1, 9)])
    assert rig.metric("rigwatch_runtime_redis_unavailable") == 0


def test_after_an_outage_ending_in_a_checkpoint_every_assigned_source_is_reported_active() -> None:
    rig = Rig([_msgs(0, 5), _msgs(0, 6)])
    rig.assign(0, 1)
    rig.runtime.checkpoint()  # the assignment reported
    rig.poll()
    rig.calls.clear()

    _checkpoint_through_an_outage(rig)
    rig.poll()  # partition 1 stays silent
    rig.runtime.checkpoint()

    # Were partition 1 not reported active again, windows would close on partition 0's
    # watermark alone once idle_ms had passed since partition 1's last record.
    reported = [set(assigned) for _, _, assigned in rig.named("checkpoint")]
    assert {f"{IN}/0", f"{IN}/1"} in reported, f"assigned sources reported after the outage: {reported}"


# ---------------------------------------------------------------------------- (e) writes in flight


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop's monotonic clock steps a second per reading: every checkpoint and tick is due."""
    seconds = iter(range(1_000_000))
    fake = SimpleNamespace(
        monotonic=lambda: float(next(seconds)), perf_counter=time.perf_counter, time=time.time
    )
    monkeypatch.setattr(loop, "time", fake)


def _offsets_of(calls: Sequence[Call]) -> list[Call]:
    """The log with spans as ``(first, last)`` of partition 0."""
    return [
        ("write", [(s.first_offset, s.last_offset) for s in c[1]]) if c[0] == "write" else c for c in calls
    ]


@pytest.mark.usefixtures("clock")
def test_a_write_runs_while_the_next_batch_is_handled_and_is_collected_before_the_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first write is released only by handling the second batch: were the loop waiting for
    # it before polling again, it would never finish.
    rig = Rig([_msgs(0, 5), _msgs(0, 6)], service=OverlapService, tick_ms=1, release_on={6: 0})
    rig.assign(0)

    assert rig.run(monkeypatch) == 0

    assert _offsets_of(rig.named("batch", "write", "applied", "store_offsets", "tick")) == [
        ("batch", [5]),
        ("batch", [6]),
        ("write", [(5, 5)]),
        # Collected on the main thread before the tick: it sees every record handled before it.
        ("applied", [5]),
        ("store_offsets", [(IN, 0, 6)]),
        ("tick",),
        ("write", [(6, 6)]),
        ("applied", [6]),
        ("store_offsets", [(IN, 0, 7)]),
        ("tick",),
        ("tick",),  # the last poll's: nothing left to write, so at once
    ]
    assert rig.metric("rigwatch_runtime_checkpoints_total") == 2


@pytest.mark.usefixtures("clock")
def test_a_stale_write_in_flight_discards_it_and_the_work_handled_since_and_rewinds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig(
        [_msgs(0, 40), _msgs(0, 41)],
        service=OverlapService,
        stored={f"{IN}/0": 39},
        stale=1,
        release_on={41: 0},
    )
    rig.assign(0)
    # Another worker (or this one, its reply lost) checkpointed the partition meanwhile.
    rig.service.stored[f"{IN}/0"] = 41

    assert rig.run(monkeypatch) == 0

    assert _offsets_of(
        rig.named("batch", "write", "applied", "discard", "store_offsets", "assign", "unassign")
    ) == [
        ("assign", [(IN, 0, 40)]),
        ("batch", [40]),
        ("batch", [41]),  # handled while the write was in flight
        ("write", [(40, 40)]),  # refused
        ("discard", [41]),  # what was handled since goes with it: nothing of 40 or 41 is written
        ("unassign", [(IN, 0, UNSET)]),
        ("assign", [(IN, 0, 42)]),
        # The shutdown's checkpoint reports the assignment the refused write did not write.
        ("write", []),
        ("applied", []),
    ]
    assert rig.consumer.assignment == {(IN, 0): 42}
    assert rig.metric("rigwatch_runtime_rewinds_total") == 1


@pytest.mark.usefixtures("clock")
def test_a_redis_outage_met_by_a_write_in_flight_is_waited_out_with_consumption_paused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(
        [_msgs(0, 5), _msgs(0, 6)],
        service=OverlapService,
        release_on={6: 0},
        failures=[ConnectionError("Redis restarting")],
    )
    rig.assign(0)
    rig.runtime.redis.stop = cast(Any, FakeStop())

    with caplog.at_level(logging.WARNING, logger="rigwatch.runtime"):
        assert rig.run(monkeypatch) == 0

    assert _offsets_of(rig.named("batch", "write", "applied", "store_offsets", "pause", "resume")) == [
        ("batch", [5]),
        ("batch", [6]),
        ("write", [(5, 5)]),  # meets the outage on the writer thread
        # Retried on the main thread, as a checkpoint in place: consumption paused meanwhile.
        ("pause", [(IN, 0, UNSET)]),
        ("write", [(5, 5)]),
        ("resume", [(IN, 0, UNSET)]),
        ("applied", [5]),
        ("store_offsets", [(IN, 0, 6)]),
        ("write", [(6, 6)]),
        ("applied", [6]),
        ("store_offsets", [(IN, 0, 7)]),
    ]
    assert rig.runtime.redis.outages == 1
    assert rig.metric("rigwatch_runtime_redis_unavailable") == 0
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Redis unreachable" in m for m in messages) == 1
    assert sum("Redis reachable again" in m for m in messages) == 1


def test_shutdown_waits_for_the_write_in_flight_and_stores_its_offsets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig([_msgs(0, 5, 6)], service=OverlapService, release_on={-1: 0})
    service = cast(OverlapService, rig.service)
    rig.assign(0)

    def release_after_the_stop() -> None:
        # The poll that finds nothing more sets the stop flag (the SIGTERM); the write is
        # still held then, and finishes only a while later.
        rig.stop.wait(5)
        time.sleep(0.1)
        service.gates[0].set()

    releaser = threading.Thread(target=release_after_the_stop, daemon=True)
    releaser.start()
    assert rig.run(monkeypatch) == 0
    releaser.join()

    assert _offsets_of(rig.named("batch", "write", "applied", "store_offsets")) == [
        ("batch", [5, 6]),
        ("write", [(5, 6)]),
        ("applied", [5, 6]),
        ("store_offsets", [(IN, 0, 7)]),
    ]
    assert rig.runtime._in_flight is None


# ---------------------------------------------------------------------------- (f) Pending


def test_pending_merges_updates_of_a_window_and_keeps_others_apart() -> None:
    p = Pending()
    assert not p
    p.add(
        Updates(
            [
                Update("v1", 0, 2, {"n": 2}, {"sum": 0.5}, {"last": 3.0}, ["a"]),
                Update("v2", 0, 1, {"n": 1}),
            ],
            {"t/0": 5, "t/1": 9},
            undecodable=1,
            extension={"predictions": [1, 2]},
        ),
        records=4,
    )
    p.add(
        Updates(
            [
                Update("v1", 0, 3, {"n": 3, "k": 1}, {"sum": 0.25}, {"last": 2.0, "first": 1.0}, ["b", "c"]),
                Update("v1", 1_000, 1, {"n": 1}, maxes={"last": 7.0}),
            ],
            {"t/0": 7, "t/1": 4, "t/2": 0},
            undecodable=2,
            extension={"predictions": [3], "actuals": [4]},
        ),
        records=5,
    )

    assert p and (p.records, p.undecodable) == (9, 3)
    assert {(u.subject, u.start_ms): u for u in p.updates()} == {
        ("v1", 0): Update(
            "v1", 0, 5, {"n": 5, "k": 1}, {"sum": 0.75}, {"last": 3.0, "first": 1.0}, ["a", "b", "c"]
        ),
        ("v2", 0): Update("v2", 0, 1, {"n": 1}, {}, {}, []),
        ("v1", 1_000): Update("v1", 1_000, 1, {"n": 1}, {}, {"last": 7.0}, []),
    }
    # The largest event time per source (a smaller later one does not lower it).
    assert p.max_event_ms == {"t/0": 7, "t/1": 9, "t/2": 0}
    assert p.extension == {"predictions": [1, 2, 3], "actuals": [4]}


def test_pending_does_not_share_state_with_the_updates_it_merged() -> None:
    first = Updates([Update("v1", 0, 1, {"n": 1}, items=["a"])], {"t/0": 1}, extension={"x": [1]})
    p = Pending()
    p.add(first, records=1)
    p.add(Updates([Update("v1", 0, 1, {"n": 1}, items=["b"])], {}, extension={"x": [2]}), records=1)

    assert first.updates[0].ints == {"n": 1} and list(first.updates[0].items) == ["a"]
    assert first.extension == {"x": [1]}
