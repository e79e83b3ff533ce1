"""``AlertsService`` on real Redis: checkpoints refuse replays, a restart resumes states and offsets.

Batches are built as the runtime builds them; what the service checkpoints goes
to the real Redis. (The runtime's own order — flush, then checkpoint — is
tested in tests/unit/test_runtime.py and end to end in tests/e2e.)
"""

from __future__ import annotations

import uuid

import pytest
from redis import Redis

from rigwatch.runtime.checkpoint import HashState, SourceSpan, StaleBatch
from rigwatch.runtime.records import Batch
from rigwatch.schemas import Codecs
from services.alerts.app import AlertsService, alert_states
from services.alerts.handler import AlertEngine
from services.alerts.metrics import AlertsMetrics
from services.alerts.rules import load_rules

pytestmark = pytest.mark.integration

CODECS = Codecs.load()
SOURCE = "rig.metrics/0"


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


def _batch(first_offset: int, ratios: list[float]) -> Batch:
    n = len(ratios)
    return Batch(
        "rig.metrics",
        [_window(first_offset + k, r) for k, r in enumerate(ratios)],
        [SOURCE] * n,
        list(range(first_offset, first_offset + n)),
        [None] * n,
        [0] * n,
        [[]] * n,
    )


def _span(batch: Batch) -> list[SourceSpan]:
    return [SourceSpan(SOURCE, batch.offsets[0], batch.offsets[-1])]


def _service(redis: Redis, ns: str) -> AlertsService:
    service = AlertsService(
        AlertEngine(load_rules().rules),
        HashState(redis, ns),
        CODECS.metric_window,
        CODECS.alert,
        "rig.alerts",
        AlertsMetrics(),
        topics=["rig.metrics"],
    )
    service.resume_offsets()  # what the runtime calls on assignment
    return service


def _transitions(service: AlertsService, batch: Batch) -> list[tuple[str, str, str]]:
    alerts = [CODECS.alert.decode(o.value) for o in service.on_batch(batch)]
    return [(a["alert_id"], a["state"], a["severity"]) for a in alerts]


def test_a_replayed_span_is_refused_and_a_restarted_service_resolves_once(stack) -> None:
    redis = Redis.from_url(stack.redis_url)
    ns = f"test-alerts:{uuid.uuid4().hex}"

    first = _service(redis, ns)
    fired = _batch(0, [0.5, 21.0])
    assert _transitions(first, fired) == [("feature_drift/v1/tsb_temp", "firing", "critical")]
    first.checkpoint(_span(fired), [])
    # The same span again (a zombie worker, or Kafka re-delivering): nothing is written.
    with pytest.raises(StaleBatch):
        first.checkpoint(_span(fired), [])

    # A new process resumes after the stored offset, with the stored states.
    second = _service(redis, ns)
    assert second.state.resume_offsets() == {SOURCE: 1}
    assert second.states["feature_drift/v1/tsb_temp"].severity == "critical"
    healed = _batch(2, [0.4, 0.6, 0.5])
    # clear_for = 2: the second healthy window (window 3) resolves it.
    assert _transitions(second, healed) == [("feature_drift/v1/tsb_temp", "resolved", "ok")]
    second.checkpoint(_span(healed), [])
    assert alert_states(HashState(redis, ns))["feature_drift/v1/tsb_temp"].severity == "ok"
    redis.close()


def test_work_not_checkpointed_is_discarded_and_read_again_the_same(stack) -> None:
    redis = Redis.from_url(stack.redis_url)
    ns = f"test-alerts:{uuid.uuid4().hex}"
    service = _service(redis, ns)
    batch = _batch(0, [0.5, 21.0])
    once = _transitions(service, batch)
    # Redis lost the write, or the worker stopped first: the span is read again from the state.
    service.discard()
    assert _transitions(service, batch) == once
    redis.close()
