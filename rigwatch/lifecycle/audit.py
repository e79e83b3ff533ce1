"""The audit trail on ``rig.audit``: who registered, promoted, approved, rolled back or was refused, and why.

Every lifecycle operation writes one :class:`AuditEvent <rigwatch.schemas.Codecs>`
record and waits for the broker to acknowledge it before it reports success.
The topic has the delete policy with no retention limit and one partition, so
``rigwatch audit`` reads one complete trail in the order it was written.
"""

from __future__ import annotations

import getpass
import os
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from rigwatch.config import Settings
from rigwatch.exceptions import StackError
from rigwatch.kafka import ReliableProducer, client_config
from rigwatch.lifecycle._topic import bootstrap_of, read_all
from rigwatch.lifecycle.exceptions import LifecycleError
from rigwatch.lifecycle.guardrails import GuardrailResult
from rigwatch.schemas import Codecs

__all__ = ["ACTOR_ENV", "REASONS", "AuditLog", "actor", "check_reason", "parse_since"]

#: Why a deployment changes (DataRobot's list of replacement reasons).
REASONS = ("accuracy", "data_drift", "errors", "scheduled_refresh", "scoring_speed", "deprecation", "other")
#: Who acts when ``--as`` is not given.
ACTOR_ENV = "RIGWATCH_ACTOR"
_FIELDS = ("deployment", "model_version", "change_id", "reason", "comment", "before", "after")


def actor(as_name: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """Who acts: *as_name* (``--as NAME``), else ``RIGWATCH_ACTOR``, else the OS user.

    Recorded as given: enforcing who may do what belongs to the operations API.

    Examples
    --------
    >>> actor("ana", {"RIGWATCH_ACTOR": "ben"}), actor(None, {"RIGWATCH_ACTOR": "ben"})
    ('ana', 'ben')
    """
    env = os.environ if environ is None else environ
    for source, name in (("--as", as_name), (ACTOR_ENV, env.get(ACTOR_ENV))):
        if name is not None:
            if not name.strip():
                raise LifecycleError(f"{source} is empty: give the name of who acts")
            return name.strip()
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        return f"uid:{os.getuid()}"


def check_reason(reason: str) -> str:
    """*reason* if it is one of :data:`REASONS`.

    Examples
    --------
    >>> check_reason("data_drift")
    'data_drift'
    """
    if reason not in REASONS:
        raise LifecycleError(f"reason {reason!r} is not one of: {', '.join(REASONS)}")
    return reason


_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now_ms: int | None = None) -> int:
    """Epoch ms from ``10m`` / ``2h`` / ``1d`` / ``30s`` ago, or an ISO time (UTC when it has no zone).

    Examples
    --------
    >>> parse_since("10m", now_ms=3_600_000)
    3000000
    >>> parse_since("1970-01-01T00:00:01")
    1000
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    span = _SPAN.fullmatch(text.strip())
    if span:
        return now - int(float(span.group(1)) * _UNIT_S[span.group(2)] * 1000)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise LifecycleError(
            f"--since {text!r}: expected a span like 10m, 2h, 1d, 30s or an ISO time like 2026-12-03T09:00"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _guardrail_records(results: Iterable[GuardrailResult | Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [r.to_record() if isinstance(r, GuardrailResult) else dict(r) for r in results]


class AuditLog:
    """Write and read the audit trail of *settings*' broker and topic prefix.

    Examples
    --------
    ::

        log = AuditLog(settings)
        log.record("comment", "ana", model_version="3459619ba192", comment="good on the new rig")
        [e["action"] for e in log.read(deployment="cooler", since_ms=parse_since("1d"))]
    """

    def __init__(self, settings: Settings, producer: ReliableProducer | None = None) -> None:
        self.bootstrap = bootstrap_of(settings)
        self.topic = settings.topics.audit
        self.codec = Codecs.load().audit_event
        # An operation passes the producer its deployment records went through: a new idempotent
        # producer waits half a second for its producer id before its first record.
        self._producer = producer

    def check(self, timeout_s: float = 10.0) -> None:
        """Raise :class:`~rigwatch.exceptions.StackError` unless the broker answers and has the audit topic.

        Called before an operation changes anything, so a missing broker stops it
        before the change rather than between the change and its audit record.
        """
        admin = AdminClient(client_config(self.bootstrap))
        try:
            topic = admin.list_topics(self.topic, timeout=timeout_s).topics.get(self.topic)
        except KafkaException as exc:
            raise StackError(
                f"no broker answered at {self.bootstrap} within {timeout_s:.0f} s: {exc}"
            ) from exc
        if topic is None or topic.error is not None:
            raise StackError(
                f"topic {self.topic} does not exist at {self.bootstrap}; `rigwatch stack up` creates it"
            )

    def record(
        self,
        action: str,
        actor: str,
        *,
        guardrails: Iterable[GuardrailResult | Mapping[str, Any]] = (),
        **fields: str | None,
    ) -> dict[str, Any]:
        """Append one event and wait until the broker has it; the event as written.

        *fields* are the AuditEvent's optional fields (``deployment``,
        ``model_version``, ``change_id``, ``reason``, ``comment``, ``before``, ``after``).

        Raises
        ------
        LifecycleError
            An unknown field, an empty action or actor, or a reason not in :data:`REASONS`.
        DeliveryError
            The broker did not acknowledge the event.
        """
        unknown = sorted(set(fields) - set(_FIELDS))
        if unknown:
            raise LifecycleError(f"audit event: unknown field(s) {unknown}; expected some of {list(_FIELDS)}")
        if not action or not actor:
            raise LifecycleError(f"audit event: action {action!r} and actor {actor!r} must not be empty")
        if fields.get("reason") is not None:
            check_reason(str(fields["reason"]))
        event: dict[str, Any] = {
            "event_id": uuid.uuid4().hex,
            "time": int(time.time() * 1000),
            "actor": actor,
            "action": action,
            **{name: fields.get(name) for name in _FIELDS},
            "guardrails": _guardrail_records(guardrails),
        }
        key = event["deployment"] or event["model_version"] or action
        if self._producer is None:
            # Nothing to batch: an operation waits for its one record anyway.
            self._producer = ReliableProducer(self.bootstrap, {"linger.ms": 0}, idempotent=False)
        self._producer.produce(self.topic, self.codec.encode(event), key=key)
        self._producer.flush()
        return event

    def read(self, deployment: str | None = None, since_ms: int | None = None) -> list[dict[str, Any]]:
        """The events, oldest first; only *deployment*'s, only from *since_ms* (epoch ms) on."""
        return [
            e
            for e in read_all(self.bootstrap, self.topic, self.codec)
            if (deployment is None or e["deployment"] == deployment)
            and (since_ms is None or e["time"] >= since_ms)
        ]
