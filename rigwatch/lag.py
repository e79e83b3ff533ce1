"""Consumer lag of one consumer group on one topic, correct on tansu and on Apache Kafka.

tansu 0.6 answers ListOffsets "latest" (and so uncached watermarks) with the base offset of
the partition's last record batch plus one, e.g. 1 after a single batch of 100 records, so a
lag computed from it is wrong; the high watermark in its fetch responses is right. Mode
``"fetch"`` therefore takes each partition's end from the records a reader actually fetches
(offset + 1 of the last one, or the offset of the end-of-partition event), reading until it
reaches the fetch responses' high watermark; ``"watermarks"`` takes ListOffsets "latest",
which is cheaper and right on Apache Kafka.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from rigwatch.exceptions import ConfigError, StackError
from rigwatch.kafka import client_config, fetched_high, groupless_consumer

__all__ = ["MODES", "GroupLag", "LagSample"]

MODES = ("fetch", "watermarks")
#: Records taken from the reader's queue per ``consume`` call.
BATCH = 10_000
#: The reader's fetch wait: short, since it reads only during a sample (paused between).
FETCH_WAIT_MS = 10
#: Longest wait of one ``consume`` call: several fetch waits, so the high watermark
#: the reader knows is fresher than any record acked before the sample.
IDLE_S = 0.1


@dataclass(frozen=True)
class LagSample:
    """One measurement of a group's lag on a topic, per partition.

    Examples
    --------
    >>> s = LagSample("g", "t", committed={0: 40}, ends={0: 100, 1: 20}, lag={0: 60, 1: 20})
    >>> s.total, s.max_partition
    (80, 60)
    """

    group: str
    topic: str
    committed: dict[int, int]  # partition -> committed offset; missing: nothing committed
    ends: dict[int, int]  # partition -> next offset to be written, as far as known
    lag: dict[int, int]  # partition -> ends - committed (or - first offset), >= 0

    @property
    def total(self) -> int:
        """Records not yet committed by the group, over all partitions."""
        return sum(self.lag.values())

    @property
    def max_partition(self) -> int:
        """The largest lag of any one partition (0 for no partitions)."""
        return max(self.lag.values(), default=0)


class GroupLag:
    """Samples the lag of consumer group *group* on *topic*.

    Synchronous and not thread-safe: run :meth:`sample` in an executor, one at a time.

    Parameters
    ----------
    bootstrap
        Kafka bootstrap servers.
    group, topic
        The consumer group and the topic it consumes.
    mode
        ``"fetch"`` (ends from records actually fetched; right on tansu) or
        ``"watermarks"`` (ends from high watermarks; right on Apache Kafka only).
    """

    def __init__(self, bootstrap: str, group: str, topic: str, *, mode: str = "fetch") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown lag mode {mode!r}: expected one of {', '.join(MODES)}")
        self.group, self.topic, self.mode = group, topic, mode
        self._admin = AdminClient(client_config(bootstrap))
        # EOF events give a partition's end even when nothing is new.
        self._reader = groupless_consumer(bootstrap, "lag", partition_eof=True, fetch_wait_ms=FETCH_WAIT_MS)
        self._seen: dict[int, int] = {}  # partition -> end seen while fetching

    def _where(self) -> str:
        return f"group {self.group!r} on topic {self.topic!r}"

    def sample(self, timeout_s: float = 5.0) -> LagSample:
        """Measure the group's committed offsets, the partitions' ends and the lag now.

        Raises
        ------
        ConfigError
            The topic does not exist.
        StackError
            The broker failed or did not answer in *timeout_s*, or (mode ``"fetch"``) the
            reader had not reached the end of every partition by then; a later sample
            continues from where this one stopped.
        """
        deadline = time.monotonic() + timeout_s
        try:
            partitions = self._partitions(timeout_s)
            committed = self._committed(partitions, timeout_s)
            if self.mode == "fetch":
                ends = self._fetch_ends(partitions, committed, deadline)
            else:
                ends = self._list_offsets(partitions, OffsetSpec.latest(), timeout_s)
            # A partition with nothing committed is behind by everything still retained.
            uncommitted = [p for p in partitions if p not in committed]
            firsts = self._list_offsets(uncommitted, OffsetSpec.earliest(), timeout_s) if uncommitted else {}
        except (KafkaException, TimeoutError) as exc:  # futures time out with TimeoutError
            raise StackError(f"lag of {self._where()}: {exc!r}") from exc
        # The group may commit offsets the reader has not fetched yet: they exist all the same.
        ends = {p: max(ends[p], committed.get(p, 0)) for p in partitions}
        lag = {p: max(0, ends[p] - committed.get(p, firsts.get(p, 0))) for p in partitions}
        return LagSample(self.group, self.topic, committed, ends, lag)

    def _partitions(self, timeout_s: float) -> list[int]:
        topic = self._reader.list_topics(self.topic, timeout=timeout_s).topics[self.topic]
        if topic.error is not None:
            if topic.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise ConfigError(f"lag of {self._where()}: the topic does not exist")
            raise KafkaException(topic.error)
        return sorted(topic.partitions)

    def _committed(self, partitions: list[int], timeout_s: float) -> dict[int, int]:
        # The admin API reads the group's offsets without posing as a member (works on tansu).
        request = ConsumerGroupTopicPartitions(
            self.group, [TopicPartition(self.topic, p) for p in partitions]
        )
        future = self._admin.list_consumer_group_offsets([request], request_timeout=timeout_s)[self.group]
        result = future.result(timeout=timeout_s)
        return {tp.partition: tp.offset for tp in result.topic_partitions if tp.offset >= 0}

    def _list_offsets(self, partitions: list[int], spec: OffsetSpec, timeout_s: float) -> dict[int, int]:
        futures = self._admin.list_offsets(
            {TopicPartition(self.topic, p): spec for p in partitions}, request_timeout=timeout_s
        )
        return {tp.partition: f.result(timeout=timeout_s).offset for tp, f in futures.items()}

    def _fetch_ends(
        self, partitions: list[int], committed: dict[int, int], deadline: float
    ) -> dict[int, int]:
        # Assigned only while sampling: an assigned reader fetches in the background, and on
        # the local broker every fetch costs CPU whether or not it brings data (README). Each
        # partition starts where the group stands or where the last sample got to, if further.
        starts = {p: max(self._seen.get(p, -1), committed.get(p, -1)) for p in partitions}
        assignment = [
            TopicPartition(self.topic, p, o if o >= 0 else OFFSET_BEGINNING) for p, o in starts.items()
        ]
        self._reader.incremental_assign(assignment)
        try:
            return self._read_to_end(partitions, deadline)
        finally:
            self._reader.incremental_unassign(assignment)

    def _read_to_end(self, partitions: list[int], deadline: float) -> dict[int, int]:
        fresh: set[int] = set()  # partitions with a record or an end event since the assignment
        while True:
            remaining = deadline - time.monotonic()
            messages = self._reader.consume(num_messages=BATCH, timeout=max(0.0, min(IDLE_S, remaining)))
            for msg in messages:
                err = msg.error()
                offset = msg.offset()
                assert offset is not None  # set on records and on EOF events
                if err is None:
                    self._seen[msg.partition()] = offset + 1  # type: ignore[index]
                elif err.code() == KafkaError._PARTITION_EOF:
                    self._seen[msg.partition()] = offset  # type: ignore[index]
                elif not err.retriable():
                    raise KafkaException(err)
                else:
                    continue
                fresh.add(msg.partition())  # type: ignore[arg-type]
            # Reading stops only at the end: tansu pauses up to ~0.9 s between fetches of a
            # backlog (measured), so a quiet spell proves nothing. The high watermark in its
            # fetch responses (librdkafka's cached one) is right, unlike its ListOffsets.
            behind = [
                p
                for p in partitions
                if p not in fresh or self._seen.get(p, -1) < fetched_high(self._reader, self.topic, p)
            ]
            # The IDLE_S wait of a batch that did not fill lets fetches answer after the call.
            if len(messages) < BATCH and not behind:
                return {p: self._seen[p] for p in partitions}
            if remaining <= 0:
                raise StackError(
                    f"lag of {self._where()}: partitions {behind} not read to their end "
                    "in time; sample again to continue"
                )

    def close(self) -> None:
        """Close the reader (it never committed anything) and drop the admin client."""
        self._reader.close()

    def __enter__(self) -> GroupLag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
