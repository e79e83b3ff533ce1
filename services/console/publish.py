"""Readings from ``POST /score`` onto the readings topic, awaited on the event loop without blocking it.

A confluent-kafka producer, like every other producer of readings: its key
partitioner (crc32 of ``rig_id``) is the pump's and producers', so a rig's
readings from the console land on the partition its other readings are on,
which aiokafka's (murmur2) would not. librdkafka delivers in its own threads;
a thread of this class serves the delivery callbacks and hands each result to
the event loop, where the request awaits its records.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence

from confluent_kafka import KafkaError, Message, Producer

from rigwatch.exceptions import DeliveryError
from rigwatch.kafka import client_config

__all__ = ["Publisher"]

#: How long a request waits for its records' acknowledgements.
ACK_TIMEOUT_S = 30.0
#: How long a request waits for space in a full producer queue.
FULL_QUEUE_WAIT_S = 5.0


class Publisher:
    """Produce records and await their acknowledgement from a coroutine.

    Parameters
    ----------
    bootstrap
        The brokers.
    linger_ms
        Batching delay: concurrent requests share a produce request to the broker.

    Examples
    --------
    ::

        publisher = Publisher(bootstrap)
        await publisher.send(topics.sensor_readings, [("rig-7", encoded)])   # acknowledged
        publisher.close()
    """

    def __init__(self, bootstrap: str, *, linger_ms: int = 2) -> None:
        # Idempotent: a retried produce request neither duplicates nor reorders a rig's readings.
        conf = client_config(bootstrap, {"linger.ms": linger_ms, "compression.type": "none"})
        conf["enable.idempotence"] = True
        self._producer = Producer(conf)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="console-publisher", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(0.1)

    async def send(self, topic: str, records: Sequence[tuple[str, bytes]]) -> None:
        """Produce *records* (key, value) to *topic*, in order; return once the broker has every one.

        Raises
        ------
        DeliveryError
            A record was not acknowledged (the first error), the queue stayed full,
            or the acknowledgements did not come within :data:`ACK_TIMEOUT_S`.
        """
        if not records:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        waiting = [len(records)]

        def settle(err: KafkaError | None) -> None:  # on the event loop
            if done.done():
                return
            if err is not None:
                done.set_exception(DeliveryError(f"delivery failed: {err.str()} (code {err.code()})"))
                return
            waiting[0] -= 1
            if waiting[0] == 0:
                done.set_result(None)

        def on_delivery(err: KafkaError | None, msg: Message) -> None:  # on the poll thread
            # RuntimeError: the loop closed first (a shutdown); nobody awaits this record any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, err)

        for key, value in records:
            waited = 0.0
            while True:
                try:
                    self._producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                    break
                except BufferError:
                    if waited >= FULL_QUEUE_WAIT_S:
                        raise DeliveryError(
                            f"producer queue still full after {waited:.0f} s: the broker takes no records"
                        ) from None
                    await asyncio.sleep(0.05)
                    waited += 0.05
        try:
            await asyncio.wait_for(done, ACK_TIMEOUT_S)
        except TimeoutError:
            raise DeliveryError(
                f"{waiting[0]} of {len(records)} records unacknowledged after {ACK_TIMEOUT_S:.0f} s"
            ) from None

    def close(self, timeout: float = 10.0) -> int:
        """Deliver what is queued (at most *timeout* seconds) and stop; the records still undelivered."""
        self._closing.set()
        self._thread.join()
        return int(self._producer.flush(timeout))
