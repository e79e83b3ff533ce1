"""``AlertsService`` on real Redis and broker: replays change nothing, restarts resume, outboxes are sent.

Input records are stand-ins for consumed messages (topic, partition, offset,
value); everything the service writes goes to the real Redis and rig.alerts.
"""

from __future__ import annotations

import uuid

import pytest
from redis import Redis
from streams import collect

from rigwatch.kafka import ReliableProducer
from rigwatch.schemas import Codecs
from services.alerts.app import AlertsService, AlertStore
from services.alerts.handler import AlertEngine
from services.alerts.metrics import AlertsMetrics
from services.alerts.rules import load_rules

pytestmark = pytest.mark.integration

CODECS = Codecs.load()


class _Msg:
    """What the service reads of a consumed record."""

    def __init__(self, offset: int, value: bytes, partition: int = 0) -> None:
        self._offset, self._value, self._partition = offset, value, partition

    def topic(self) -> str:
        return "rig.metrics"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value


def _window(k: int, ratio: float) -> bytes:
    return CODECS.metric_window.encode(
        {
            "kind": "drift",
            "subject": "v1",
            "window_start": 30_000 * k,
            "window_end": 30_000 * (k + 1),
            "count": 300,
            "metrics": {"psi_ratio.tsb_temp": ratio, "psi.tsb_temp": ratio / 10, "drift_score": 0.1},
            "detail": None,
        }
    )


def _service(settings, redis: Redis, namespace: str) -> AlertsService:
    return AlertsService(
        AlertEngine(load_rules().rules),
        AlertStore(redis, namespace),
        CODECS.metric_window,
        CODECS.alert,
        ReliableProducer(settings.bootstrap),
        settings.topics.alerts,
        AlertsMetrics(),
    )


def _published(settings, n: int) -> list[dict]:
    seen = collect(
        settings.bootstrap, [settings.topics.alerts], lambda s: len(s) >= n, timeout=30, settle=1.0
    )
    return [CODECS.alert.decode(m.value()) for m in seen]


def test_replayed_windows_change_nothing_and_a_restarted_service_resolves_once(settings) -> None:
    redis = Redis.from_url(settings.redis_url)
    namespace = f"test-alerts:{uuid.uuid4().hex}"
    batch = [_Msg(0, _window(0, 0.5)), _Msg(1, _window(1, 21.0))]

    first = _service(settings, redis, namespace)
    fired = first.handle(batch)
    assert [(a["alert_id"], a["state"], a["severity"]) for a in fired] == [
        ("feature_drift/v1/tsb_temp", "firing", "critical")
    ]
    # Kafka delivers the batch again (no commit before a crash): nothing new.
    assert first.handle(batch) == []

    # A new process: state and offsets come from Redis.
    second = _service(settings, redis, namespace)
    healed = [_Msg(2, _window(2, 0.4)), _Msg(3, _window(3, 0.6)), _Msg(4, _window(4, 0.5))]
    resolved = second.handle(healed)
    # clear_for = 2: the second healthy window (window 3) resolves it.
    assert [(a["state"], a["window_end"]) for a in resolved] == [("resolved", 30_000 * 4)]
    assert second.handle(healed) == []

    records = _published(settings, 2)
    assert [(a["state"], a["severity"]) for a in records] == [("firing", "critical"), ("resolved", "ok")]
    assert AlertStore(redis, namespace).states()["feature_drift/v1/tsb_temp"].severity == "ok"
    redis.close()


def test_alerts_left_in_the_outbox_by_a_crash_are_sent_before_new_work(settings) -> None:
    redis = Redis.from_url(settings.redis_url)
    namespace = f"test-alerts:{uuid.uuid4().hex}"
    store = AlertStore(redis, namespace)
    service = _service(settings, redis, namespace)
    # As if a worker committed state and outbox, then died before producing.
    alert = {
        "alert_id": "stale/v1",
        "rule": "stale",
        "severity": "warning",
        "state": "firing",
        "metric": "staleness_s",
        "value": 45.0,
        "threshold": 30.0,
        "window_end": 1_000,
        "first_seen": 1_000,
        "message": "no prediction for 45 s",
    }
    store.commit({}, {"rig.metrics/3": 9}, {"rig.metrics/3": [CODECS.alert.encode(alert)]})

    assert service.handle([_Msg(10, _window(0, 0.5), partition=3)]) == []
    assert _published(settings, 1) == [alert]
    assert redis.llen(store.outbox("rig.metrics/3")) == 0
    redis.close()
