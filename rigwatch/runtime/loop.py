"""The one loop every service runs on: consume → handle → produce → flush → checkpoint → store offsets.

The order of a checkpoint is said here and nowhere else:

1. the service's outputs are produced as each batch is handled;
2. at a checkpoint the producer is flushed (every output acknowledged);
3. a stateful service writes its state with the offsets it covers (Redis, one
   atomic call: :mod:`rigwatch.runtime.checkpoint`);
4. the offsets are stored for Kafka's commit (lag tools, and the resume point
   of a stateless service).

A service that hands its state over (:attr:`Service.overlap`: the windowed
ones) has step 3 run on one writer thread while the loop handles the next
batches; step 4 and everything that follows the write happen on the main
thread once its result is collected: when it is done, and at the latest before
the next checkpoint, before a tick, on a rebalance and at shutdown. So at most
one write is in flight, and the order holds per checkpoint.

A crash anywhere repeats work from the last checkpoint, never loses it. Ticks
(window closing) run once everything handled before them is checkpointed, so
they see every record handled so far. SIGTERM/SIGINT/SIGHUP finish the batch in
hand, checkpoint and return 0; every client is closed through one ``ExitStack``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from rigwatch.kafka import SESSION_TIMEOUT_MS, ReliableProducer, StopFlag, client_config, redacted
from rigwatch.metrics import serve_metrics
from rigwatch.runtime.checkpoint import SourceSpan, StaleBatch
from rigwatch.runtime.outage import REDIS_DOWN, RedisWait, StoppedWhileWaiting
from rigwatch.runtime.records import Batch, Output, source_name

__all__ = [
    "LONG_POLL",
    "Roles",
    "Runtime",
    "RuntimeMetrics",
    "Service",
    "ServiceConfig",
    "StateWrite",
    "run_service",
]

log = logging.getLogger("rigwatch.runtime")


@dataclass(frozen=True)
class Roles:
    """The request pattern of a service's clients on the broker (measured: README, broker CPU)."""

    consumer: Mapping[str, Any]
    producer: Mapping[str, Any]


#: Monitoring processors: windows are seconds long, so long-poll and batch. The broker
#: holds a fetch until 256 KiB or 250 ms, instead of answering a request every 10 ms.
LONG_POLL = Roles(
    consumer={"fetch.wait.max.ms": 250, "fetch.min.bytes": 262_144},
    producer={"linger.ms": 50},
)


def _nothing(result: Any) -> None:
    """What a write's result needs by default: nothing."""


@dataclass(frozen=True)
class StateWrite:
    """A checkpoint's state as the service handed it over: the Redis call that writes it, then what follows.

    ``write`` may run on the runtime's writer thread, and is called again, whole, after
    a Redis outage, so it uses nothing the service changes meanwhile; it raises
    :class:`StaleBatch` when the offset guard refuses it. ``applied`` runs on the main
    thread with its result once it succeeded (counters, metrics).
    """

    write: Callable[[], Any]
    applied: Callable[[Any], None] = _nothing


class Service:
    """What a service gives the runtime; a stateless one overrides :meth:`on_batch` only.

    ``topics`` are its inputs. A stateful service keeps what it accumulated
    since its last checkpoint and writes it in :meth:`checkpoint`; it then
    also implements :meth:`resume_offsets` and :meth:`discard`.
    """

    topics: Sequence[str] = ()
    #: True when :meth:`resume_offsets` (not Kafka's committed offsets) says where to resume.
    stateful = False
    #: True when :meth:`take` hands the accumulated state over, so its write may run on the
    #: runtime's writer thread while the next batches are handled.
    overlap = False

    def on_batch(self, batch: Batch) -> Iterable[Output]:
        """Handle records of one topic; returns what to produce now."""
        return ()

    def on_tick(self, now_ms: int, publish: Callable[[Iterable[Output]], None]) -> None:
        """Periodic work after a checkpoint (closing windows); *publish* produces and flushes."""

    def pending(self) -> int:
        """Records handled since the last checkpoint."""
        return 0

    def checkpoint(self, spans: Sequence[SourceSpan], assigned: Sequence[str]) -> None:
        """Write what was accumulated with the offsets *spans* cover (may raise :class:`StaleBatch`).

        ``assigned`` names sources this worker was given since the last checkpoint.
        """

    def take(self, spans: Sequence[SourceSpan], assigned: Sequence[str]) -> StateWrite:
        """What was accumulated, as a write of it with the offsets *spans* cover.

        The default writes through :meth:`checkpoint` (in place: ``overlap`` stays False).
        A service with ``overlap`` starts afresh here: the state goes with the write, and a
        :meth:`discard` afterwards forgets only what was handled since.
        """
        return StateWrite(lambda: self.checkpoint(spans, assigned))

    def resume_offsets(self) -> Mapping[str, int]:
        """The last offset per source the stored state covers."""
        return {}

    def discard(self) -> None:
        """Forget what was accumulated since the last checkpoint (it will be read again)."""


class RuntimeMetrics:
    """What the runtime itself reports (``rigwatch_runtime_*``, labelled by service)."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        r, labels = registry, ["service"]
        self.redis_unavailable = Gauge(
            "rigwatch_runtime_redis_unavailable", "1 while Redis is unreachable", labels, registry=r
        ).labels(service)
        self.consumer_errors = Counter(
            "rigwatch_runtime_consumer_errors",
            "Non-fatal consumer errors, by librdkafka code",
            [*labels, "code"],
            registry=r,
        )
        self.checkpoints = Counter(
            "rigwatch_runtime_checkpoints", "Checkpoints written", labels, registry=r
        ).labels(service)
        self.checkpoint_seconds = Histogram(
            "rigwatch_runtime_checkpoint_seconds",
            "Flush + state write + offset store",
            labels,
            registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
        ).labels(service)
        self.rewinds = Counter(
            "rigwatch_runtime_rewinds", "Spans refused as stale and read again", labels, registry=r
        ).labels(service)
        self.service = service


@dataclass
class _Checkpoint:
    """A checkpoint whose state was taken: its write, and what to do once it is written."""

    state: StateWrite
    offsets: list[TopicPartition]  # to store once written
    assigned: set[str]  # the sources it reports newly assigned
    started: float
    future: Future[Any] | None = None  # its write on the writer thread; None: written in place

    def done(self) -> bool:
        return self.future is None or self.future.done()


class Runtime:
    """Run one :class:`Service` in a consumer group until *stop*.

    Parameters
    ----------
    service
        The service.
    bootstrap, group
        The cluster and the consumer group.
    stop
        Set by a signal; the loop finishes the batch in hand, checkpoints and returns.
    metrics
        Where the runtime's own metrics go (the service's registry).
    roles
        Client settings for the service's request pattern.
    batch_max, poll_timeout_ms
        Records taken per poll at most, and the longest wait for the first one.
    checkpoint_ms, checkpoint_records
        A checkpoint is written when this much time has passed or this many
        records were handled since the last one (0 ms: after every poll).
    tick_ms
        How often :meth:`Service.on_tick` runs (0: never).
    """

    def __init__(
        self,
        service: Service,
        *,
        bootstrap: str,
        group: str,
        stop: StopFlag,
        metrics: RuntimeMetrics,
        roles: Roles,
        batch_max: int = 2000,
        poll_timeout_ms: int = 100,
        checkpoint_ms: int = 250,
        checkpoint_records: int = 20_000,
        tick_ms: int = 0,
    ) -> None:
        self.service, self.stop, self.metrics = service, stop, metrics
        self.bootstrap, self.group, self.roles = bootstrap, group, roles
        self.batch_max, self.poll_timeout = batch_max, poll_timeout_ms / 1000
        self.checkpoint_s, self.checkpoint_records = checkpoint_ms / 1000, checkpoint_records
        self.tick_s = tick_ms / 1000
        self.redis = RedisWait(stop, metrics.redis_unavailable, self._pause, self._resume)
        self._spans: dict[tuple[str, int], list[int]] = {}  # (topic, partition) -> [first, last]
        self._assigned: set[tuple[str, int]] = set()
        self._newly_assigned: set[str] = set()
        self._errors: dict[str, int] = {}  # non-fatal consumer errors by name
        self._consumer: Consumer | None = None
        self._producer: ReliableProducer | None = None
        # One thread, one write at a time: the next checkpoint collects the one before it.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{metrics.service}-writer")
        self._in_flight: _Checkpoint | None = None
        self._tick_waits = False  # a tick is due once the write in flight is collected

    # ------------------------------------------------------------------ clients

    def consumer_config(self) -> dict[str, Any]:
        """The consumer's settings: role defaults, ``RIGWATCH_KAFKA_*``, then what the loop relies on."""
        conf = client_config(
            self.bootstrap,
            {
                "auto.offset.reset": "earliest",
                "session.timeout.ms": SESSION_TIMEOUT_MS,
                "partition.assignment.strategy": "cooperative-sticky",
                "auto.commit.interval.ms": 1000,
                **self.roles.consumer,
            },
        )
        return conf | {"group.id": self.group, "enable.auto.offset.store": False, "enable.auto.commit": True}

    def _open(self, stack: ExitStack) -> tuple[Consumer, ReliableProducer]:
        producer = ReliableProducer(self.bootstrap, self.roles.producer, stop=self.stop)
        conf = self.consumer_config()
        log.info("%s consumer: %s", self.metrics.service, redacted(conf))
        consumer = Consumer(conf)
        # Closed last-in first-out: the consumer (commit, leave the group) before the producer's flush.
        stack.callback(producer.close)
        stack.callback(self._close_consumer, consumer)
        self._consumer, self._producer = consumer, producer
        consumer.subscribe(
            list(self.service.topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        return consumer, producer

    def _close_consumer(self, consumer: Consumer) -> None:
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("final commit failed: %s", exc)
        finally:
            consumer.close()

    # ------------------------------------------------------------------ the loop

    def run(self, stack: ExitStack) -> int:
        """Consume until stopped; returns the exit code (0).

        The clients are closed through *stack*, the one the service's own
        resources (Redis, metrics server) are on, when the caller leaves it.
        """
        consumer, producer = self._open(stack)
        # Left first: a write still in flight after an error ends before the clients close.
        stack.callback(self._writer.shutdown)
        last_checkpoint = last_tick = time.monotonic()
        try:
            while not self.stop:
                messages = self._poll(consumer)
                for batch in _by_topic(messages):
                    for out in self.service.on_batch(batch):
                        producer.produce(out.topic, out.value, out.key, out.headers, out.timestamp_ms)
                if self._in_flight is not None and self._in_flight.done():
                    self._collect()  # its offsets stored as soon as it is written
                now = time.monotonic()
                due = now - last_checkpoint >= self.checkpoint_s or (
                    self.service.pending() >= self.checkpoint_records
                )
                # Before a checkpoint collects the tick's write and starts another, so no
                # stream of checkpoints can put a tick off.
                if self._tick_waits and (due or self._in_flight is None):
                    self._run_tick()
                    due = True  # what was handled while it waited: the writer has nothing to do
                if self._spans and due:
                    self.checkpoint(overlap=True)
                    last_checkpoint = now
                # Not before an assignment: this worker would close windows on stale
                # watermarks while the records it is about to be given wait unread.
                if self.tick_s and self._assigned and now - last_tick >= self.tick_s and not self._tick_waits:
                    # Everything handled so far is written first; the tick runs once it is.
                    self.checkpoint(overlap=True)
                    self._tick_waits = True
                    last_checkpoint = last_tick = now
                    if self._in_flight is None:
                        self._run_tick()
            self.checkpoint()  # the batch in hand, after the write in flight
        except StoppedWhileWaiting:
            log.warning("stopped while Redis was unreachable: work since the last checkpoint is read again")
        log.info("%s stopped", self.metrics.service)
        return 0

    def _poll(self, consumer: Consumer) -> list[Message]:
        """Up to ``batch_max`` records: whatever has arrived once the first one has (adaptive batching)."""
        first = consumer.poll(self.poll_timeout)
        if first is None:
            return []
        batch = []
        for msg in (first, *consumer.consume(self.batch_max - 1, 0)):
            err = msg.error()
            if err is None:
                batch.append(msg)
                key: tuple[str, int] = (msg.topic(), msg.partition())  # type: ignore[assignment]
                offset: int = msg.offset()  # type: ignore[assignment]
                span = self._spans.get(key)
                if span is None:
                    self._spans[key] = [offset, offset]
                else:
                    span[1] = offset
            elif err.fatal():
                raise KafkaException(err)
            elif err.code() != KafkaError._PARTITION_EOF:
                # librdkafka retries transport errors itself; say what happened, keep going.
                self.metrics.consumer_errors.labels(self.metrics.service, err.name()).inc()
                seen = self._errors[err.name()] = self._errors.get(err.name(), 0) + 1
                if seen in (1, 10, 100) or seen % 1000 == 0:  # a flapping broker must not flood the log
                    log.warning("consumer error (%d of this kind so far): %s", seen, err.str())
        return batch

    def _run_tick(self) -> None:
        self._tick_waits = False
        if self._assigned:  # not once every partition was taken away meanwhile
            self.redis.call(self._tick)

    def _tick(self) -> None:
        # The write the tick waited for first, so windows close on every record handled before
        # the tick; no write is in flight while on_tick runs. Sources reported active again
        # (assigned since, or every one after an outage: _pause) are written first too, so
        # that none counts as idle when windows close. Retried as one unit, so a tick cut
        # short by a Redis outage does that as well.
        self._collect()
        if self._newly_assigned:
            self.checkpoint()
        self.service.on_tick(int(time.time() * 1000), self._publish)

    def _publish(self, outputs: Iterable[Output]) -> None:
        assert self._producer is not None
        for out in outputs:
            self._producer.produce(out.topic, out.value, out.key, out.headers, out.timestamp_ms)
        self._producer.flush()

    def checkpoint(self, *, overlap: bool = False) -> None:
        """Flush the outputs, write the service's state with its offsets, store the offsets.

        The checkpoint in flight is collected first. With *overlap*, a service that hands its
        state over has it written on the writer thread and this returns at once (the next
        collection stores the offsets); otherwise this returns once everything handled so
        far is written and its offsets are stored.
        """
        if overlap and not self._spans and not self._newly_assigned:
            return  # nothing to write: a write in flight may go on
        if not self._collect():
            return  # refused as stale: the rewind reads it all again
        if not self._spans and not self._newly_assigned:
            return
        assert self._consumer is not None and self._producer is not None
        started = time.perf_counter()
        self._producer.flush()
        spans = [
            SourceSpan(source_name(topic, partition), first, last)
            for (topic, partition), (first, last) in self._spans.items()
        ]
        offsets = [TopicPartition(t, p, last + 1) for (t, p), (_, last) in self._spans.items()]
        assigned = set(self._newly_assigned)
        state = self.service.take(spans, sorted(assigned))
        self._spans.clear()
        self._newly_assigned.clear()
        self._in_flight = _Checkpoint(state, offsets, assigned, started)
        if overlap and self.service.overlap:
            self._in_flight.future = self._writer.submit(state.write)
        else:
            self._collect()

    def _collect(self) -> bool:
        """Finish the checkpoint in flight: write it (or wait for its write), apply, store its offsets.

        A write that met a Redis outage on the writer thread is retried here, so the outage
        is said once, consumption paused and the outage waited out as for a write in place.
        Returns False when the write was refused as stale: then what was handled since it
        was taken is discarded too, and the partitions are read again from the stored offsets.
        """
        pending, self._in_flight = self._in_flight, None
        if pending is None:
            return True
        assert self._consumer is not None
        try:
            if pending.future is None:
                result = self.redis.call(pending.state.write)
            else:
                try:
                    result = pending.future.result()
                except REDIS_DOWN as exc:
                    result = self.redis.call(pending.state.write, failed=exc)
        except StaleBatch as exc:
            log.warning("%s; reading again from the checkpointed offsets", exc)
            self.metrics.rewinds.inc()
            self.service.discard()
            self._spans.clear()
            self._newly_assigned.update(pending.assigned)  # not written: reported again
            self._rewind(self._consumer, [TopicPartition(t, p) for t, p in self._assigned])
            return False
        pending.state.applied(result)
        if pending.offsets:
            try:
                self._consumer.store_offsets(offsets=pending.offsets)
            except KafkaException as exc:
                # A partition revoked meanwhile: its new owner resumes from the checkpoint.
                log.info("offsets not stored: %s", exc)
        self.metrics.checkpoints.inc()
        self.metrics.checkpoint_seconds.observe(time.perf_counter() - pending.started)
        return True

    # ------------------------------------------------------------------ assignment

    def _resume_points(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """*partitions* set to start after the offsets checkpointed with the state (stateful services)."""
        if not self.service.stateful:
            return partitions
        stored = self.redis.call(self.service.resume_offsets)
        for tp in partitions:
            last = stored.get(source_name(tp.topic, tp.partition))
            if last is not None:
                tp.offset = last + 1
        return partitions

    def _rewind(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.incremental_unassign(partitions)
        consumer.incremental_assign(
            self._resume_points([TopicPartition(tp.topic, tp.partition) for tp in partitions])
        )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # What is in hand first: the service may reload its state with the resume points.
        self.checkpoint()
        consumer.incremental_assign(self._resume_points(partitions))
        for tp in partitions:
            self._assigned.add((tp.topic, tp.partition))
            self._newly_assigned.add(source_name(tp.topic, tp.partition))
        log.info("assigned %s", ", ".join(f"{tp.topic}/{tp.partition}@{tp.offset}" for tp in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("revoked %s", ", ".join(f"{tp.topic}/{tp.partition}" for tp in partitions))
        # No longer ours, even for a rewind of a stale checkpoint below.
        for tp in partitions:
            self._assigned.discard((tp.topic, tp.partition))
        # What was handled of them is checkpointed now, so their next owner starts after it.
        try:
            self.checkpoint()
        except StoppedWhileWaiting:
            self.service.discard()
            self._spans.clear()
        finally:
            # Said here because a rewind above assigns: then the client leaves this to us.
            consumer.incremental_unassign(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning(
            "lost %s (session timed out)", ", ".join(f"{tp.topic}/{tp.partition}" for tp in partitions)
        )
        # Another worker may own them already: the checkpoint guard refuses a span it has applied.
        self._on_revoke(consumer, partitions)

    def _pause(self) -> None:
        if self._consumer is not None and self._assigned:
            self._consumer.pause([TopicPartition(t, p) for t, p in self._assigned])
        # Every source will have been silent through the outage: counted as idle, the first
        # one read again would let windows close ahead of the others. So the checkpoint that
        # ends the outage reports them all active.
        self._newly_assigned.update(source_name(t, p) for t, p in self._assigned)

    def _resume(self) -> None:
        if self._consumer is not None and self._assigned:
            self._consumer.resume([TopicPartition(t, p) for t, p in self._assigned])


def _by_topic(messages: Sequence[Message]) -> list[Batch]:
    """The records of a poll as one :class:`Batch` per topic, each in consumption order."""
    grouped: dict[str, list[Message]] = {}
    for msg in messages:
        grouped.setdefault(msg.topic(), []).append(msg)  # type: ignore[arg-type]
    return [
        Batch(
            topic,
            [m.value() for m in msgs],
            [source_name(topic, m.partition()) for m in msgs],  # type: ignore[arg-type]
            [m.offset() for m in msgs],  # type: ignore[misc]
            [m.key() for m in msgs],
            [m.timestamp()[1] for m in msgs],
            [m.headers() or [] for m in msgs],  # type: ignore[misc]
        )
        for topic, msgs in grouped.items()
    ]


class ServiceConfig(Protocol):
    """The settings every service has (``RIGWATCH_<SERVICE>_GROUP``, ``_BATCH_MAX``, ...)."""

    @property
    def group(self) -> str: ...
    @property
    def batch_max(self) -> int: ...
    @property
    def batch_timeout_ms(self) -> int: ...
    @property
    def metrics_port(self) -> int: ...
    @property
    def metrics_host(self) -> str: ...


def run_service(
    stack: ExitStack,
    service: Service,
    config: ServiceConfig,
    *,
    name: str,
    about: str,
    bootstrap: str,
    stop: StopFlag,
    registry: CollectorRegistry,
    roles: Roles,
    checkpoint_ms: int = 0,
    checkpoint_records: int = 20_000,
    tick_ms: int = 0,
) -> int:
    """What every ``app.py`` ends with: serve the metrics, say what runs, run until *stop*.

    *about* describes the service for its start-up log line; the metrics server
    and the clients close with *stack*. Returns the exit code.
    """
    port = serve_metrics(registry, config.metrics_port, config.metrics_host, stack)
    logging.getLogger(f"rigwatch.{name}").info("%s (group %s, metrics port %s)", about, config.group, port)
    runtime = Runtime(
        service,
        bootstrap=bootstrap,
        group=config.group,
        stop=stop,
        metrics=RuntimeMetrics(registry, name),
        roles=roles,
        batch_max=config.batch_max,
        poll_timeout_ms=config.batch_timeout_ms,
        checkpoint_ms=checkpoint_ms,
        checkpoint_records=checkpoint_records,
        tick_ms=tick_ms,
    )
    return runtime.run(stack)
