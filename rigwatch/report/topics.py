"""Reading the topics of ``rigwatch report`` to their end, and :func:`write_report`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Message, TopicPartition

from rigwatch.config import Settings
from rigwatch.data.columns import FEATURES
from rigwatch.exceptions import DecodeError, ModelError, StackError
from rigwatch.kafka import fetched_high, groupless_consumer
from rigwatch.report.charts import _utc
from rigwatch.report.page import build_report

__all__ = ["write_report"]

# --- reading the topics ------------------------------------------------------------------------------

#: Records taken from the reader's queue per ``consume`` call.
_BATCH = 10_000


def _read_to_end(
    bootstrap: str, topic: str, *, last: int | None = None, timeout: float = 60.0
) -> list[Message]:
    """The records of *topic* up to its end as of now: all of them, or the *last* of each partition.

    A partition's end is the high watermark of its first fetch response. The local broker
    answers ListOffsets wrongly and pauses up to ~0.9 s between fetches of a backlog
    (``rigwatch.lag``), so neither end offsets nor a quiet spell tell where a topic ends.
    """
    consumer = groupless_consumer(bootstrap, "report", partition_eof=True)
    deadline = time.monotonic() + timeout
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        if metadata.error is not None:
            raise StackError(f"cannot read topic {topic!r} at {bootstrap}: {metadata.error.str()}")
        partitions = sorted(metadata.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: list[Message] = []
        start: dict[int, int] = dict.fromkeys(partitions, 0)  # first offset wanted
        reached: dict[int, int] = {}  # partition -> next offset, once it answered
        ends: dict[int, int] | None = None
        while ends is None or any(reached[p] < ends[p] for p in partitions):
            if time.monotonic() > deadline:
                behind = [p for p in partitions if ends is None or reached.get(p, -1) < ends[p]]
                raise StackError(
                    f"topic {topic!r}: partitions {behind} not read to their end in {timeout:.0f} s"
                )
            for msg in consumer.consume(_BATCH, 0.1):
                p, offset, err = msg.partition(), msg.offset(), msg.error()
                assert p is not None and offset is not None  # set on records and EOF events
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        reached[p] = max(reached.get(p, 0), offset)
                    elif err.fatal() or not err.retriable():
                        raise KafkaException(err)
                    continue
                if offset < max(start[p], reached.get(p, 0)) or (ends is not None and offset >= ends[p]):
                    continue  # a stale prefetch, or produced after we started
                records.append(msg)
                reached[p] = offset + 1
            if ends is None and all(p in reached for p in partitions):
                ends = {p: max(fetched_high(consumer, topic, p), reached[p]) for p in partitions}
                if last is not None:
                    start = {p: max(0, ends[p] - last) for p in partitions}
                    records = [m for m in records if _position(m) >= start[m.partition() or 0]]
                    if any(reached[p] < start[p] for p in partitions):
                        reached = {p: max(reached[p], start[p]) for p in partitions}
                        consumer.assign([TopicPartition(topic, p, reached[p]) for p in partitions])
        return records
    except KafkaException as exc:
        raise StackError(f"reading topic {topic!r} at {bootstrap}: {exc}") from exc
    finally:
        consumer.close()


def _position(msg: Message) -> int:
    offset = msg.offset()
    return -1 if offset is None else offset


def _decode_all(
    decode: Callable[[bytes | None], dict[str, Any]], messages: Iterable[Message]
) -> tuple[list[dict[str, Any]], int]:
    out, bad = [], 0
    for msg in messages:
        try:
            out.append(decode(msg.value()))
        except DecodeError:
            bad += 1  # not ours to judge here: counted and left out
    return out, bad


def write_report(
    settings: Settings,
    out: Path,
    *,
    max_readings: int = 5000,
    rigs: bool = False,
    progress: Callable[[str], None] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Read the metrics, alerts and newest readings to their current end and write the HTML page.

    Parameters
    ----------
    settings
        Broker (or the local stack), topic prefix and model package.
    out
        The HTML file (parent folders are created).
    max_readings
        The newest readings for the input histograms; 0 reads none.
    rigs
        Also chart the rig segments.
    progress
        Called with a line of progress for people.
    timeout
        Seconds each topic may take to be read to its end.

    Returns
    -------
    Path
        *out*.

    Raises
    ------
    StackError
        No broker is configured or running, a topic is missing, or it was not read in time.

    Examples
    --------
    ::

        write_report(Settings(), Path("report.html"), progress=print)
    """
    from rigwatch.model import ModelPackage
    from rigwatch.schemas import Codecs
    from rigwatch.stack import endpoints

    say = progress or (lambda _: None)
    topics, codecs = settings.topics, Codecs.load()
    bootstrap = settings.bootstrap or endpoints(settings).bootstrap  # Kafka only: no Redis needed
    windows, bad = _decode_all(
        codecs.metric_window.decode, _read_to_end(bootstrap, topics.metrics, timeout=timeout)
    )
    say(
        f"{topics.metrics}: {len(windows)} metric windows" + (f" ({bad} undecodable, skipped)" if bad else "")
    )
    alerts, bad = _decode_all(codecs.alert.decode, _read_to_end(bootstrap, topics.alerts, timeout=timeout))
    say(f"{topics.alerts}: {len(alerts)} alert records" + (f" ({bad} undecodable, skipped)" if bad else ""))
    reference, version = None, "none"
    try:
        package = ModelPackage.load(settings.model_dir)
        reference, version = package.reference, package.version
    except ModelError as exc:
        say(f"no reference profile, input histograms left out: {exc}")
    recent = None
    if max_readings > 0:
        tail = _read_to_end(bootstrap, topics.sensor_readings, last=max_readings, timeout=timeout)
        tail.sort(key=lambda m: m.timestamp()[1])
        readings, bad = _decode_all(codecs.sensor_reading.decode, tail[-max_readings:])
        features = list(reference["features"]) if reference else list(FEATURES)
        recent = {f: np.array([r.get(f) for r in readings], dtype=np.float64) for f in features}
        say(
            f"{topics.sensor_readings}: the newest {len(readings)} readings"
            + (f" ({bad} undecodable)" if bad else "")
        )
    notes = [
        f"Generated {_utc(time.time() * 1000)} UTC from {bootstrap}: {topics.metrics}, {topics.alerts} read"
        f" from the beginning to their end; the newest readings of {topics.sensor_readings}.",
        f"Reference profile: model {version} ({settings.model_dir}).",
    ]
    page = build_report(
        windows, alerts, reference, recent, "rigwatch monitoring report", rigs=rigs, notes=notes
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    say(f"wrote {out} ({len(page.encode()) / 1024:.0f} KiB)")
    return out
