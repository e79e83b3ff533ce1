"""Promotion gate entrypoint: rig.metrics in; promotions and ended challenges (deployments, audit) out.

For a deployment whose challenge was started with ``auto_promote``, a
``better`` verdict of the comparison (on at least its ``min_pairs`` labelled
pairs) promotes the challenger through the lifecycle's own ``promote`` (so the
guardrails run and the audit records it, actor ``rigwatch-auto``, with the
test's figures); ``worse`` ends the challenge. The gate keeps no state: the
deployment it changed no longer matches the next verdict, and a window read
again after a restart finds the change made.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import ExitStack

from rigwatch.codec import Codec
from rigwatch.config import Settings
from rigwatch.exceptions import DecodeError, RigwatchError
from rigwatch.kafka import StopFlag
from rigwatch.lifecycle.deployments import read_deployments
from rigwatch.lifecycle.operations import AUTO_ACTOR, end_challenge, promote
from rigwatch.runtime.loop import LONG_POLL, Service, run_service
from rigwatch.runtime.records import Batch, Output
from rigwatch.schemas import Codecs
from rigwatch.stack import endpoints
from services.gate.config import GateSettings
from services.gate.handler import Action, decide
from services.gate.metrics import GateMetrics

__all__ = ["GateService", "run"]

log = logging.getLogger("rigwatch.gate")


class GateService(Service):
    """Comparison windows in; lifecycle operations (not outputs) out."""

    def __init__(self, settings: Settings, codec: Codec, metrics: GateMetrics) -> None:
        self.settings, self.codec, self.metrics = settings, codec, metrics
        self.topics = [settings.topics.metrics]
        #: (deployment, challenger) refused once (a guardrail failed): not tried again every window.
        self._refused: set[tuple[str, str]] = set()

    def on_batch(self, batch: Batch) -> Iterable[Output]:
        windows, unusable = [], 0
        for value in batch.values:
            try:
                window = self.codec.decode(value)
            except DecodeError:
                unusable += 1
                continue
            if window["kind"] == "comparison" and window["metrics"].get("verdict", 0.0) != 0.0:
                windows.append(window)
        self.metrics.stream.count(batch.topic, len(batch), unusable, {})
        if windows:
            # Decided verdicts are rare: the deployments are read when one comes, not followed.
            deployments = read_deployments(self.settings)
            for window in windows:
                action = decide(window, deployments)
                if action is not None and (action.deployment, action.challenger) not in self._refused:
                    self._act(action)
                    deployments = read_deployments(self.settings)
        return ()

    def _act(self, action: Action) -> None:
        try:
            if action.kind == "promote":
                change = promote(
                    self.settings, action.deployment, action.challenger, reason="accuracy",
                    comment=action.comment, actor=AUTO_ACTOR,
                )  # fmt: skip
            else:
                change = end_challenge(
                    self.settings,
                    action.deployment,
                    reason="accuracy",
                    comment=action.comment,
                    actor=AUTO_ACTOR,
                )
        except RigwatchError as exc:  # refused (audited by the operation): said once, not retried
            self._refused.add((action.deployment, action.challenger))
            self.metrics.actions.labels(action.kind, "refused").inc()
            log.warning(
                "deployment %s: %s of %s refused: %s", action.deployment, action.kind, action.challenger, exc
            )
            return
        self.metrics.actions.labels(action.kind, "done").inc()
        log.info("deployment %s: %s %s (change %s): %s", action.deployment, action.kind, action.challenger,
                 change.record["change_id"], action.comment)  # fmt: skip


def run(settings: Settings, config: GateSettings, stop: StopFlag) -> int:
    """Act on verdicts until *stop*; return 0."""
    ends = endpoints(settings)
    settings = settings.model_copy(update={"bootstrap": ends.bootstrap})
    metrics = GateMetrics()
    with ExitStack() as stack:
        return run_service(
            stack,
            GateService(settings, Codecs.load().metric_window, metrics),
            config,
            name="gate",
            about=f"promotion gate: {settings.topics.metrics} (comparisons) -> {settings.topics.deployments}",
            bootstrap=ends.bootstrap,
            stop=stop,
            registry=metrics.registry,
            roles=LONG_POLL,
            checkpoint_ms=0,
        )
