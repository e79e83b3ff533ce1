"""Kafka client settings, the one producer wrapper, topic admin and readers every part of rigwatch uses.

Every client is configured through :func:`client_config`, so ``RIGWATCH_KAFKA_*``
settings (security) reach all of them. The services' consumer loop is the
runtime's (:mod:`rigwatch.runtime.loop`).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import FrameType
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from rigwatch.config import Topics
from rigwatch.exceptions import ConfigError, DeliveryError, StackError

__all__ = [
    "CONTROL_PARTITIONS",
    "ENV_PREFIX",
    "ReliableProducer",
    "StopFlag",
    "TopicReader",
    "client_config",
    "create_rig_topics",
    "create_topics",
    "delete_topics",
    "fetched_high",
    "groupless_consumer",
    "read_topics",
    "redacted",
    "wait_for_broker",
]

# The local broker's first group join waits half the session timeout (measured on tansu 0.6).
SESSION_TIMEOUT_MS = 6000
#: How long a reader's fetch may wait for data (librdkafka's default is 500 ms). The local
#: broker holds every fetch this long, data or not, and a reader fetches in the background
#: while assigned: at 10 ms one reader cost a fifth of the broker's core (README), at 100 ms
#: a twentieth. A reader that measures latency passes its own.
READER_FETCH_WAIT_MS = 100
#: A producer serves its delivery callbacks after this many records.
POLL_EVERY = 100
#: How long a full producer queue is waited for, and once stopping.
FULL_QUEUE_WAIT_S, STOPPING_WAIT_S = 60.0, 5.0

#: ``RIGWATCH_KAFKA_SASL_MECHANISM=PLAIN`` sets librdkafka's ``sasl.mechanism`` on every client.
ENV_PREFIX = "RIGWATCH_KAFKA_"
# What the delivery guarantees rest on: the environment must not change these
# (``metadata.broker.list`` is librdkafka's alias of ``bootstrap.servers``).
_PROTECTED = frozenset(
    {
        "bootstrap.servers",
        "metadata.broker.list",
        "group.id",
        "enable.auto.offset.store",
        "enable.idempotence",
        "enable.auto.commit",
    }
)
# One client's identity: given to every client, they would fence each other out.
_PER_CLIENT = frozenset({"group.instance.id", "transactional.id"})
# A property whose name holds one of these is a secret: never logged.
_SECRET_PARTS = ("password", "passphrase", "secret", "key.pem", "jaas", "token", "sasl.oauthbearer.config")


def _environment_config(environ: Mapping[str, str]) -> dict[str, str]:
    """librdkafka properties from ``RIGWATCH_KAFKA_<PROPERTY>`` variables (``_`` -> ``.``, lower case)."""
    out = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX:
            continue
        prop = name.removeprefix(ENV_PREFIX).lower().replace("_", ".")
        if prop in _PROTECTED:
            raise ConfigError(
                f"{name}: {prop!r} is set by rigwatch (its delivery guarantees depend on it);"
                " use RIGWATCH_BOOTSTRAP or the service's own settings instead"
            )
        if prop in _PER_CLIENT:
            raise ConfigError(
                f"{name}: {prop!r} names one client, but RIGWATCH_KAFKA_* reaches every client"
                " rigwatch creates; they would fence each other out"
            )
        out[prop] = value
    return out


def client_config(
    bootstrap: str, defaults: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The configuration of a Kafka client: *defaults*, then ``RIGWATCH_KAFKA_*``, then the bootstrap.

    Every consumer, producer and admin client rigwatch creates is built from
    this, so security settings (``RIGWATCH_KAFKA_SECURITY_PROTOCOL``,
    ``RIGWATCH_KAFKA_SASL_USERNAME``, ``RIGWATCH_KAFKA_SSL_CA_LOCATION``, ...)
    reach all of them, and may override a role's defaults (linger, fetch wait).

    Examples
    --------
    >>> env = {"RIGWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RIGWATCH_KAFKA_LINGER_MS": "20"}
    >>> conf = client_config("b:9092", {"linger.ms": 5}, env)
    >>> conf["security.protocol"], conf["linger.ms"], conf["bootstrap.servers"]
    ('SASL_SSL', '20', 'b:9092')
    """
    conf: dict[str, Any] = dict(defaults or {})
    conf.update(_environment_config(os.environ if environ is None else environ))
    conf["bootstrap.servers"] = bootstrap
    return conf


def redacted(conf: Mapping[str, Any]) -> dict[str, Any]:
    """*conf* fit for a log line: secret values replaced by ``***``.

    Examples
    --------
    >>> redacted({"sasl.username": "ops", "sasl.password": "hunter2"})
    {'sasl.username': 'ops', 'sasl.password': '***'}
    """
    return {k: "***" if any(part in k for part in _SECRET_PARTS) else v for k, v in conf.items()}


class StopFlag:
    """Set by SIGTERM/SIGINT/SIGHUP so a loop can finish the batch in hand and exit cleanly."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def install(self) -> StopFlag:
        """Route SIGTERM, SIGINT and SIGHUP to this flag (main thread only)."""
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.set()
        # Re-install the default SIGINT handler so doing Ctrl+C twice interrupts at once.
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def set(self) -> None:
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)


class ReliableProducer:
    """A confluent-kafka producer that never loses a delivery error.

    The first failed delivery is kept and raised by :meth:`flush`, so the
    caller does not commit the input of a batch whose outputs were lost.

    Idempotent by default: a retried batch is neither duplicated nor reordered.
    ``idempotent=False`` is for a writer that sends one record at a time and waits
    for it (control records): one request in flight keeps the order, and its first
    record is not held up by the producer id request (half a second to a second on
    the local broker; 3 ms without). A retry after a lost acknowledgement can then
    write a record twice; such records carry their own id.
    """

    def __init__(
        self,
        bootstrap: str,
        config: Mapping[str, Any] | None = None,
        *,
        stop: StopFlag | None = None,
        idempotent: bool = True,
    ) -> None:
        self._stop = stop
        conf = client_config(bootstrap, {"linger.ms": 5, "compression.type": "none", **(config or {})})
        conf["enable.idempotence"] = idempotent
        if not idempotent:
            conf |= {"acks": "all", "max.in.flight.requests.per.connection": 1}
        self._producer = Producer(conf)
        self._error: KafkaError | None = None
        self._queued = 0
        self.delivered = 0

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            if self._error is None:
                self._error = err
        else:
            self.delivered += 1

    def produce(
        self,
        topic: str,
        value: bytes,
        key: str | bytes | None = None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
        timestamp_ms: int = 0,
    ) -> None:
        """Queue one record (``timestamp_ms`` 0: now); waits for queue space rather than fail when full.

        The wait is bounded: :data:`FULL_QUEUE_WAIT_S`, or :data:`STOPPING_WAIT_S`
        once the stop flag is set, so a broker that stopped taking records
        cannot hold a shutdown forever. Then :class:`DeliveryError` (nothing of
        the batch is committed; it is read again).
        """
        waited = 0.0
        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=headers,
                    timestamp=timestamp_ms,
                    on_delivery=self._on_delivery,
                )
                break
            except BufferError as exc:
                limit = STOPPING_WAIT_S if self._stop else FULL_QUEUE_WAIT_S
                if waited >= limit:
                    raise DeliveryError(f"producer queue still full after {waited:.0f} s") from exc
                self._producer.poll(0.05)
                waited += 0.05
        # Serve delivery callbacks regularly; polling after every record costs a fifth
        # of the scorer's time at high rates (profiled), and flush() serves the rest.
        self._queued += 1
        if self._queued % POLL_EVERY == 0:
            self._producer.poll(0)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for every queued record; raise :class:`DeliveryError` if any was lost."""
        remaining = self._producer.flush(timeout)
        error, self._error = self._error, None
        if error is not None:
            raise DeliveryError(f"delivery failed: {error.str()} (code {error.code()})")
        if remaining:
            raise DeliveryError(f"{remaining} records still unacknowledged after {timeout:.0f} s")

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is still queued (the last step of a shutdown)."""
        self.flush(timeout)


def wait_for_broker(bootstrap: str, timeout: float = 30.0) -> None:
    """Poll until a broker at *bootstrap* answers a metadata request."""
    admin = AdminClient(client_config(bootstrap))
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise StackError(f"no Kafka broker answered at {bootstrap} within {timeout:.0f} s") from exc


def create_topics(
    bootstrap: str,
    topics: Iterable[str],
    partitions: int = 4,
    *,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    partitions_of: Mapping[str, int] | None = None,
) -> list[str]:
    """Create *topics*; existing topics are left alone (their settings too). Returns the new ones.

    Parameters
    ----------
    bootstrap
        The broker.
    topics
        Topic names.
    partitions
        Partitions of a topic not in *partitions_of*.
    configs
        Topic-level settings by topic (``cleanup.policy``, ``retention.ms``, ...).
    partitions_of
        Partitions by topic, where a topic needs its own count.
    """
    configs, partitions_of = configs or {}, partitions_of or {}
    admin = AdminClient(client_config(bootstrap))
    futures = admin.create_topics(
        [
            NewTopic(
                t,
                num_partitions=partitions_of.get(t, partitions),
                replication_factor=1,
                config=dict(configs.get(t, {})),
            )
            for t in topics
        ],
        operation_timeout=10,
    )
    created = []
    for topic, future in futures.items():
        try:
            future.result()
            created.append(topic)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise StackError(f"could not create topic {topic!r}: {exc}") from exc
    return created


#: Partitions of each control topic (deployments, audit, scorer status): one, so every reader
#: sees their records in the order they were written (an approval after its proposal, one
#: audit trail); they carry a few records a day.
CONTROL_PARTITIONS = 1


def create_rig_topics(bootstrap: str, topics: Topics, partitions: int = 4) -> list[str]:
    """Create every rigwatch topic: data topics with *partitions*, control topics with their settings.

    Returns the topics created (existing ones are left as they are).
    """
    return create_topics(
        bootstrap,
        topics.all(),
        partitions,
        configs=topics.configs(),
        partitions_of=dict.fromkeys(topics.control(), CONTROL_PARTITIONS),
    )


def delete_topics(bootstrap: str, topics: Iterable[str]) -> None:
    """Delete *topics* (missing ones are ignored): a benchmark's data must not pile up in the broker."""
    admin = AdminClient(client_config(bootstrap))
    for topic, future in admin.delete_topics(list(topics), operation_timeout=10).items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise StackError(f"could not delete topic {topic!r}: {exc}") from exc


def fetched_high(consumer: Consumer, topic: str, partition: int) -> int:
    """The high watermark of the partition's last fetch response; 0 before its first one.

    librdkafka's cached watermark: right on the local broker too, whose ListOffsets
    (and so the uncached watermarks) answers wrongly (``rigwatch.lag``).

    Parameters
    ----------
    consumer
        A consumer that has fetched, or is fetching, the partition.
    topic, partition
        The partition.

    Returns
    -------
    int
        The next offset to be written, as of the consumer's last fetch response.

    Examples
    --------
    ::

        ends = {p: fetched_high(consumer, topic, p) for p in partitions}
    """
    return max(consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)[1], 0)


def groupless_consumer(
    bootstrap: str,
    purpose: str,
    *,
    partition_eof: bool = False,
    fetch_wait_ms: int = READER_FETCH_WAIT_MS,
) -> Consumer:
    """A consumer for partitions it assigns itself: it never joins a group nor commits.

    librdkafka still wants a ``group.id``: a throwaway one named after *purpose*.
    ``partition_eof`` delivers an event at each partition's end (also past
    transaction markers, which never arrive as records).
    """
    defaults = {
        "allow.auto.create.topics": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": fetch_wait_ms,
    }
    conf = client_config(bootstrap, defaults)
    conf |= {
        "group.id": f"rigwatch-{purpose}-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # The caller's choice, not a tunable: the lag probe counts on these events.
        "enable.partition.eof": partition_eof,
    }
    return Consumer(conf)


class TopicReader:
    """Read every partition of some topics without joining a group (nothing is committed).

    Assigning partitions directly skips the group join, which costs seconds on
    the local broker. Use as a context manager.

    ``since_ms`` (epoch ms) means "records produced from then on"; None reads
    everything. The local broker reports wrong end offsets (and offset 0 for a time
    with no record after it), so the reader starts at the offset the broker gives for
    that time, or the end where it has none, and also drops records whose timestamp
    is older.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        *,
        since_ms: int | None = None,
        fetch_wait_ms: int = READER_FETCH_WAIT_MS,
    ) -> None:
        self._consumer = groupless_consumer(bootstrap, "reader", fetch_wait_ms=fetch_wait_ms)
        self._since_ms = -1 if since_ms is None else since_ms
        try:
            assignment = []
            for topic in topics:
                metadata = self._consumer.list_topics(topic, timeout=10).topics[topic]
                if metadata.error is not None:
                    raise KafkaException(metadata.error)
                assignment += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
            if since_ms is not None:
                for tp in assignment:
                    tp.offset = self._since_ms
                found = self._consumer.offsets_for_times(assignment, timeout=10)
                assignment = [
                    TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
                    for tp in found
                ]
        except BaseException:
            self._consumer.close()
            raise
        self._consumer.assign(assignment)

    def poll(self, timeout: float = 0.1, max_messages: int = 500) -> list[Message]:
        """The next records (possibly none) within *timeout* seconds."""
        return [
            m
            for m in self._consumer.consume(max_messages, timeout)
            if m.error() is None and m.timestamp()[1] >= self._since_ms
        ]

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_topics(
    bootstrap: str,
    topics: Sequence[str],
    *,
    from_beginning: bool = True,
    idle_timeout: float | None = None,
    stop: StopFlag | None = None,
) -> Iterator[Message]:
    """Yield the records of *topics* until *idle_timeout* seconds pass without one, or *stop*."""
    since_ms = None if from_beginning else int(time.time() * 1000)
    with TopicReader(bootstrap, topics, since_ms=since_ms) as reader:
        last = time.monotonic()
        while not stop:
            messages = reader.poll()
            yield from messages
            if messages:
                last = time.monotonic()
            elif idle_timeout is not None and time.monotonic() - last > idle_timeout:
                return
