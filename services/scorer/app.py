"""Scorer entrypoint: wires its deployment, metrics and the runtime around :class:`Scorer`.

The scorer serves the champion of a deployment and follows it
(:class:`~services.scorer.follow.DeploymentFollower`): a promotion or rollback
is swapped in between two batches, and every prediction names the version
that made it. The scorer is stateless: its checkpoint is the runtime's flush
and offset store after every poll, so a reading is scored, produced and
acknowledged before its offset can be committed (at-least-once; a replay
repeats the same prediction, unless a new champion came between).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import fields

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
from services.scorer.follow import DeploymentFollower, scorer_id
from services.scorer.handler import Scorer
from services.scorer.humility import HumilityRules
from services.scorer.metrics import ScorerMetrics

__all__ = ["ScorerService", "humility_rules", "run", "scorer_roles"]

log = logging.getLogger("rigwatch.scorer")

#: How often the poll loop looks for a new champion while no reading comes.
SWAP_TICK_MS = 500


class ScorerService(Service):
    """Readings in; predictions, and DLQ records for what cannot be scored, out."""

    def __init__(
        self,
        scorer: Scorer,
        topics: Topics,
        metrics: ScorerMetrics,
        follower: DeploymentFollower | None = None,
    ) -> None:
        self.scorer, self.out, self.metrics, self.follower = scorer, topics, metrics, follower
        self.topics = [topics.sensor_readings]
        self._served(scorer)

    def on_batch(self, batch: Batch) -> Iterable[Output]:
        """Score *batch*. ``processing_ms`` of its predictions counts from here."""
        self._swap()
        started = time.perf_counter()
        now_ms = int(time.time() * 1000)
        scored = self.scorer.score(batch.values, now_ms=now_ms, started=started)
        outputs = [Output(self.out.predictions, value, key) for key, value in scored.outputs]
        for reject in scored.rejects:
            i = reject.index
            source_topic, _, partition = batch.sources[i].rpartition("/")
            headers: list[tuple[str, str | bytes | None]] = [
                ("error", reject.reason),
                ("error_detail", reject.detail),
                ("source_topic", source_topic),
                ("source_partition", partition),
                ("source_offset", str(batch.offsets[i])),
                # Which deployment rejected it: health windows are per model version.
                ("model_version", self.scorer.model.version),
            ]
            # The batch's scored_time: health windows count a rejected record beside the
            # predictions of the same batch.
            outputs.append(Output(self.out.dlq, batch.values[i] or b"", batch.keys[i], headers, now_ms))
            self.metrics.dlq.labels(reject.reason).inc()
        self.metrics.events_in.inc(len(batch))
        self.metrics.predictions_out.inc(len(scored.outputs))
        self.metrics.batch_size.observe(len(batch))
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        return outputs

    def on_tick(self, now_ms: int, publish: Callable[[Iterable[Output]], None]) -> None:
        # Also while no reading comes, so `deploy status` shows the new champion at once.
        self._swap()

    def _swap(self) -> None:
        """Serve the deployment's new champion if the follower has it ready: between two batches only."""
        fresh = self.follower.take() if self.follower is not None else None
        if fresh is None:
            return
        log.info("now serving %s (was %s)", fresh.model.version, self.scorer.model.version)
        self.scorer = fresh
        self.metrics.switches.inc()
        self._served(fresh)

    def _served(self, scorer: Scorer) -> None:
        model = scorer.model
        self.metrics.model.info({"name": model.name, "version": model.version, "role": scorer.role})


def scorer_roles(config: ScorerSettings) -> Roles:
    """Latency-critical: a reading waits for no fetch and no linger beyond these."""
    return Roles(
        consumer={"fetch.wait.max.ms": config.fetch_wait_ms}, producer={"linger.ms": config.linger_ms}
    )


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

    def make_scorer(model: ModelPackage) -> Scorer:
        return Scorer(model, codecs.sensor_reading, codecs.prediction, role=config.role, rules=rules)

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

    follower = DeploymentFollower(
        ends.bootstrap, topics, codecs, name, store.load, make_scorer, failed, config.group
    )
    with ExitStack() as stack:
        stack.callback(follower.close)
        scorer = follower.start()
        if rules.outlying_margin is not None and not scorer.outlying_features:
            # Said once here, or the rule would look on while it can never fire.
            log.warning(
                "outlying rule inactive: model %s has no training ranges in its reference",
                scorer.model.version,
            )
        log.info("humility rules: %s", rules.describe())
        return run_service(
            stack,
            ScorerService(scorer, topics, metrics, follower),
            config,
            name="scorer",
            about=f"{topics.sensor_readings} -> {topics.predictions}, deployment {name}",
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
