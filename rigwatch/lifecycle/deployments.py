"""Deployments on ``rig.deployments``: which model version serves each, and the changes awaiting approval.

One Deployment record per change. The topic is compacted, so a reader must
not need more than the last record of each key:

- an **active** record (the champion serves from now on) is keyed by the
  deployment name: the last one is the deployment's state;
- a **pending** change (awaiting approval) is keyed ``<deployment>/pending``,
  and so is the record that settles it (the approved change, state active, or
  a rejected one), so compaction never drops the active record behind a
  pending one, nor keeps a settled change pending.

The topic has one partition (``rigwatch.kafka.CONTROL_PARTITIONS``), so every
reader folds the records in the order they were written: :func:`current` and
:func:`pending` are that fold, shared by the command line and the scorers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from rigwatch.config import Settings
from rigwatch.kafka import ReliableProducer
from rigwatch.lifecycle._topic import bootstrap_of, read_all
from rigwatch.lifecycle.exceptions import LifecycleError
from rigwatch.schemas import Codecs

__all__ = [
    "ACTIVE",
    "CANARY",
    "MODES",
    "PENDING",
    "REJECTED",
    "SHADOW",
    "check_name",
    "control_producer",
    "current",
    "pending",
    "pending_changes",
    "publish",
    "read_deployments",
    "read_records",
    "record_key",
]

ACTIVE, PENDING, REJECTED = "active", "pending", "rejected"
STATES = (ACTIVE, PENDING, REJECTED)
#: How a challenger runs: scored on every reading beside the champion and never served
#: (``rig.predictions.shadow``), or serving a share of the rigs on ``rig.predictions``.
SHADOW, CANARY = "shadow", "canary"
MODES = (SHADOW, CANARY)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_name(name: str) -> str:
    """*name* if it can name a deployment (letters, digits, ``.``, ``_``, ``-``; up to 64).

    Examples
    --------
    >>> check_name("cooler")
    'cooler'
    """
    if not _NAME.fullmatch(name):
        raise LifecycleError(
            f"deployment name {name!r}: expected letters, digits, '.', '_' or '-' (up to 64, no '/')"
        )
    return name


def record_key(record: Mapping[str, Any]) -> str:
    """The Kafka key of a Deployment record (see the module docstring).

    Examples
    --------
    >>> record_key({"deployment": "cooler", "state": "pending"})
    'cooler/pending'
    """
    if record["state"] not in STATES:
        raise LifecycleError(
            f"deployment record: state {record['state']!r} is not one of {', '.join(STATES)}"
        )
    return record["deployment"] if record["state"] == ACTIVE else f"{record['deployment']}/pending"


def current(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each deployment's state: its last active record, in the order given (topic order).

    Examples
    --------
    >>> records = [
    ...     {"deployment": "cooler", "state": "active", "champion": "a", "change_id": "1"},
    ...     {"deployment": "cooler", "state": "pending", "champion": "b", "change_id": "2"},
    ...     {"deployment": "cooler", "state": "active", "champion": "c", "change_id": "3"},
    ... ]
    >>> {name: r["champion"] for name, r in current(records).items()}
    {'cooler': 'c'}
    """
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.get("state") == ACTIVE:
            out[record["deployment"]] = dict(record)
    return out


def pending(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Changes awaiting approval, by change id: pending records no later record of the same change settled.

    Examples
    --------
    >>> records = [
    ...     {"deployment": "cooler", "state": "pending", "champion": "b", "change_id": "2"},
    ...     {"deployment": "cooler", "state": "rejected", "champion": "b", "change_id": "2"},
    ...     {"deployment": "cooler", "state": "pending", "champion": "c", "change_id": "3"},
    ... ]
    >>> list(pending(records))
    ['3']
    """
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.get("state") == PENDING:
            out[record["change_id"]] = dict(record)
        else:
            out.pop(record.get("change_id", ""), None)
    return out


def read_records(settings: Settings) -> list[dict[str, Any]]:
    """Every record of the deployments topic, from its beginning to its end, in order."""
    return read_all(bootstrap_of(settings), settings.topics.deployments, Codecs.load().deployment)


def read_deployments(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each deployment's state now (:func:`current` of the whole topic)."""
    return current(read_records(settings))


def pending_changes(settings: Settings) -> dict[str, dict[str, Any]]:
    """The changes awaiting approval now, by change id (:func:`pending` of the whole topic)."""
    return pending(read_records(settings))


def control_producer(settings: Settings) -> ReliableProducer:
    """A producer for control records: nothing to batch, every operation waits for its records.

    Not idempotent: an operation's first record would wait for a producer id (up to a
    second on the local broker). Records carry their change or event id, so the rare
    duplicate a retry makes is recognisable.
    """
    return ReliableProducer(bootstrap_of(settings), {"linger.ms": 0}, idempotent=False)


def publish(
    settings: Settings,
    records: Iterable[Mapping[str, Any]],
    *,
    settle: bool = False,
    producer: ReliableProducer | None = None,
) -> None:
    """Write Deployment records, in order, and wait until the broker has every one.

    ``settle``: an active record is also written under ``<deployment>/pending``,
    settling the approved change there (see the module docstring).

    Raises
    ------
    DeliveryError
        The broker did not acknowledge them: the change did not happen.
    """
    codec, topic = Codecs.load().deployment, settings.topics.deployments
    producer = producer or control_producer(settings)
    for record in records:
        value = codec.encode(dict(record))
        producer.produce(topic, value, key=record_key(record))
        if settle and record["state"] == ACTIVE:
            producer.produce(topic, value, key=f"{record['deployment']}/pending")
    producer.flush()
