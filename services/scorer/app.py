"""Scorer entrypoint: wires its deployment, metrics and the runtime around :class:`Scorer`.

The scorer serves the champion of a deployment and follows it
(:class:`~services.scorer.follow.DeploymentFollower`): a promotion or rollback
is swapped in between two batches, and every prediction names the version
that made it. With a canary challenger the same scorer serves the canary's
rigs with the challenger and puts the champion's prediction of them on
``rig.predictions.shadow`` (so both are compared on every canary reading);
one consumer group decides, so every reading gets exactly one served
prediction. A shadow scorer (``--shadow``, its own group) serves the shadow
challenger to ``rig.predictions.shadow`` only, and consumes without scoring
while there is none.

The scorer is stateless: its checkpoint is the runtime's flush and offset
store after every poll, so a reading is scored, produced and acknowledged
before its offset can be committed (at-least-once; a replay repeats the same
prediction, unless a new champion came between).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import fields
from typing import Any

from rigwatch.config import Settings, Topics
from rigwatch.exceptions import ConfigError
from rigwatch.kafka import StopFlag
from rigwatch.lifecycle.audit import AuditLog
from rigwatch.lifecycle.deployments import read_deployments
from rigwatch.lifecycle.operations import DEFAULT_DEPLOYMENT, ensure_deployment
from rigwatch.lifecycle.store import ModelStore
from rigwatch.model import ModelPackage
from rigwatch.runtime.loop import Roles, Service, run_service
from rigwatch.runtime.records import Batch, Output
from rigwatch.schemas import Codecs
from rigwatch.stack import endpoints
from services.scorer.config import ScorerSettings
from services.scorer.follow import DeploymentFollower, Serving, in_canary, scorer_id
from services.scorer.handler import ScoredBatch, Scorer
from services.scorer.humility import HumilityRules
from services.scorer.metrics import ScorerMetrics

__all__ = ["ScorerService", "humility_rules", "run", "scorer_roles"]

log = logging.getLogger("rigwatch.scorer")

#: How often the poll loop looks for a new champion while no reading comes.
SWAP_TICK_MS = 500


class ScorerService(Service):
    """Readings in; predictions, and DLQ records for what cannot be scored, out.

    *serving* is what the scorer serves now; *served_topic* where its predictions go
    (``rig.predictions``, or ``rig.predictions.shadow`` for a shadow scorer, which
    sends nothing to the DLQ: the champion's scorers do).
    """

    def __init__(
        self,
        serving: Serving,
        topics: Topics,
        metrics: ScorerMetrics,
        follower: DeploymentFollower | None = None,
        *,
        shadow: bool = False,
    ) -> None:
        self.serving, self.out, self.metrics, self.follower = serving, topics, metrics, follower
        self.shadow = shadow
        self.served_topic = topics.predictions_shadow if shadow else topics.predictions
        self.topics = [topics.sensor_readings]
        self._served(serving)

    def on_batch(self, batch: Batch) -> Iterable[Output]:
        """Score *batch*. ``processing_ms`` of its predictions counts from here."""
        self._swap()
        serving = self.serving
        self.metrics.events_in.inc(len(batch))
        self.metrics.batch_size.observe(len(batch))
        if serving.primary is None:
            return ()  # a shadow scorer without a challenger: its offsets move on
        started = time.perf_counter()
        now_ms = int(time.time() * 1000)
        rows = list(range(len(batch)))
        canary_rows: list[int] = []
        if serving.canary is not None:
            canary_rows = [i for i in rows if in_canary(batch.keys[i], serving.percent)]
            picked = set(canary_rows)
            rows = [i for i in rows if i not in picked]
        outputs = self._score(serving.primary, batch, rows, now_ms, started, self.served_topic)
        if canary_rows and serving.canary is not None:
            outputs += self._score(serving.canary, batch, canary_rows, now_ms, started, self.served_topic)
            # The champion on the canary's readings too, never served: the pairs of the comparison.
            outputs += self._score(
                serving.primary, batch, canary_rows, now_ms, started, self.out.predictions_shadow, dlq=False
            )
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        return outputs

    def _score(
        self,
        scorer: Scorer,
        batch: Batch,
        rows: list[int],
        now_ms: int,
        started: float,
        topic: str,
        *,
        dlq: bool = True,
    ) -> list[Output]:
        """Predictions of *scorer* for the batch's *rows* on *topic*; their rejects to the DLQ."""
        if not rows:
            return []
        every = len(rows) == len(batch)
        values = batch.values if every else [batch.values[i] for i in rows]
        scored: ScoredBatch = scorer.score(values, now_ms=now_ms, started=started)
        outputs = [Output(topic, value, key) for key, value in scored.outputs]
        self.metrics.predictions_out.inc(len(scored.outputs))
        if self.shadow or not dlq:
            return outputs
        for reject in scored.rejects:
            i = reject.index if every else rows[reject.index]
            source_topic, _, partition = batch.sources[i].rpartition("/")
            headers: list[tuple[str, str | bytes | None]] = [
                ("error", reject.reason),
                ("error_detail", reject.detail),
                ("source_topic", source_topic),
                ("source_partition", partition),
                ("source_offset", str(batch.offsets[i])),
                # Which model rejected it: health windows are per model version.
                ("model_version", scorer.model.version),
            ]
            # The batch's scored_time: health windows count a rejected record beside the
            # predictions of the same batch.
            outputs.append(Output(self.out.dlq, batch.values[i] or b"", batch.keys[i], headers, now_ms))
            self.metrics.dlq.labels(reject.reason).inc()
        return outputs

    def on_tick(self, now_ms: int, publish: Callable[[Iterable[Output]], None]) -> None:
        # Also while no reading comes, so `deploy status` shows the new champion at once.
        self._swap()

    def _swap(self) -> None:
        """Serve what the follower has ready: between two batches only."""
        fresh = self.follower.take() if self.follower is not None else None
        if fresh is None:
            return
        log.info("now serving %s (was %s)", fresh.describe(), self.serving.describe())
        self.serving = fresh
        self.metrics.switches.inc()
        self._served(fresh)

    def _served(self, serving: Serving) -> None:
        if serving.primary is not None:  # an idle shadow scorer keeps the last one it served
            model = serving.primary.model
            self.metrics.model.info(
                {"name": model.name, "version": model.version, "role": serving.primary.role}
            )


def scorer_roles(config: ScorerSettings) -> Roles:
    """Latency-critical: a reading waits for no fetch and no linger beyond these.

    A shadow group starts at the end of the readings when it first joins: a challenger
    is compared from when it starts, not on the topic's whole retention (once joined,
    it idles along while there is no challenger, so its offsets stay at the head).
    """
    consumer: dict[str, Any] = {"fetch.wait.max.ms": config.fetch_wait_ms}
    if config.shadow:
        consumer["auto.offset.reset"] = "latest"
    return Roles(consumer=consumer, producer={"linger.ms": config.linger_ms})


def humility_rules(config: ScorerSettings) -> HumilityRules:
    """The humility rules *config* asks for.

    Raises
    ------
    ConfigError
        A bad rule setting, named as the environment variable that set it.
    """
    try:
        return HumilityRules(**{f.name: getattr(config, f.name) for f in fields(HumilityRules)})
    except ConfigError as exc:
        # The fields are spelled as settings; an operator sets them as RIGWATCH_SCORER_<FIELD>.
        raise ConfigError(f"scorer humility settings (RIGWATCH_SCORER_*): {exc}") from exc


def run(settings: Settings, config: ScorerSettings, stop: StopFlag) -> int:
    """Score until *stop* is set; finish the batch in hand, flush, commit and return 0."""
    ends = endpoints(settings)
    topics = settings.topics
    settings = settings.model_copy(update={"bootstrap": ends.bootstrap})
    codecs = Codecs.load()
    rules = humility_rules(config)
    metrics = ScorerMetrics()
    name = deployment_of(settings, config)
    store = ModelStore(settings.model_store)
    audit = AuditLog(settings)

    def make_scorer(model: ModelPackage, role: str) -> Scorer:
        return Scorer(model, codecs.sensor_reading, codecs.prediction, role=role, rules=rules)

    def failed(version: str, exc: Exception) -> None:
        metrics.load_failures.inc()
        audit.record(
            "load_failed",
            follower.id,
            deployment=name,
            model_version=version,
            reason="errors",
            comment=str(exc),
        )

    # A shadow scorer reads every reading too: in a group of its own.
    group = f"{config.group}-shadow" if config.shadow else config.group
    follower = DeploymentFollower(
        ends.bootstrap, topics, codecs, name, store.load, make_scorer, failed, group, shadow=config.shadow
    )
    with ExitStack() as stack:
        stack.callback(follower.close)
        serving = follower.start()
        scorer = serving.primary
        if scorer is not None and rules.outlying_margin is not None and not scorer.outlying_features:
            # Said once here, or the rule would look on while it can never fire.
            log.warning(
                "outlying rule inactive: model %s has no training ranges in its reference",
                scorer.model.version,
            )
        log.info("humility rules: %s", rules.describe())
        service = ScorerService(serving, topics, metrics, follower, shadow=config.shadow)
        return run_service(
            stack,
            service,
            config.model_copy(update={"group": group}),
            name="scorer",
            about=f"{topics.sensor_readings} -> {service.served_topic}, deployment {name}"
            + (" (shadow challenger)" if config.shadow else ""),
            bootstrap=ends.bootstrap,
            stop=stop,
            registry=metrics.registry,
            roles=scorer_roles(config),
            checkpoint_ms=0,  # flush and store offsets after every poll
            tick_ms=SWAP_TICK_MS,
        )


def deployment_of(settings: Settings, config: ScorerSettings) -> str:
    """The deployment this scorer follows; a missing one is created with the configured package.

    Named (``RIGWATCH_SCORER_DEPLOYMENT``): that one. Unnamed: the only deployment
    there is, or ``cooler`` when there is none yet.

    Raises
    ------
    ConfigError
        Unnamed while several deployments exist.
    """
    active = read_deployments(settings)
    name = config.deployment
    if name is None:
        if len(active) > 1:
            raise ConfigError(
                f"{len(active)} deployments ({', '.join(sorted(active))}): name the one to serve"
                " with RIGWATCH_SCORER_DEPLOYMENT or --deployment"
            )
        name = next(iter(active), DEFAULT_DEPLOYMENT)
    if name not in active:
        package = config.model_dir or settings.model_dir
        change = ensure_deployment(settings, name, package, actor=f"rigwatch-scorer@{scorer_id()}")
        log.info("deployment %s created with %s (%s)", name, change.record["champion"], package)
    return name
