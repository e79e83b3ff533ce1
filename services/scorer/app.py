"""Scorer entrypoint: wires the model, metrics and the runtime around :class:`Scorer`.

The scorer is stateless: its checkpoint is the runtime's flush and offset
store after every poll, so a reading is scored, produced and acknowledged
before its offset can be committed (at-least-once; a replay repeats the same
prediction).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import fields

from rigwatch.config import Settings, Topics
from rigwatch.exceptions import ConfigError
from rigwatch.kafka import StopFlag
from rigwatch.model import ModelPackage
from rigwatch.runtime.loop import Roles, Service, run_service
from rigwatch.runtime.records import Batch, Output
from rigwatch.schemas import Codecs
from rigwatch.stack import endpoints
from services.scorer.config import ScorerSettings
from services.scorer.handler import Scorer
from services.scorer.humility import HumilityRules
from services.scorer.metrics import ScorerMetrics

__all__ = ["ScorerService", "humility_rules", "run", "scorer_roles"]

log = logging.getLogger("rigwatch.scorer")


class ScorerService(Service):
    """Readings in; predictions, and DLQ records for what cannot be scored, out."""

    def __init__(self, scorer: Scorer, topics: Topics, metrics: ScorerMetrics) -> None:
        self.scorer, self.out, self.metrics = scorer, topics, metrics
        self.topics = [topics.sensor_readings]

    def on_batch(self, batch: Batch) -> Iterable[Output]:
        """Score *batch*. ``processing_ms`` of its predictions counts from here."""
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
    model = ModelPackage.load(config.model_dir or settings.model_dir)
    codecs = Codecs.load()
    rules = humility_rules(config)
    scorer = Scorer(model, codecs.sensor_reading, codecs.prediction, role=config.role, rules=rules)
    metrics = ScorerMetrics()
    metrics.model.info({"name": model.name, "version": model.version, "role": config.role})
    if rules.outlying_margin is not None and not scorer.outlying_features:
        # Said once here, or the rule would look on while it can never fire.
        log.warning("outlying rule inactive: model %s has no training ranges in its reference", model.version)
    log.info("humility rules: %s", rules.describe())
    with ExitStack() as stack:
        return run_service(
            stack,
            ScorerService(scorer, topics, metrics),
            config,
            name="scorer",
            about=f"{topics.sensor_readings} -> {topics.predictions} with {model.name} {model.version}",
            bootstrap=ends.bootstrap,
            stop=stop,
            registry=metrics.registry,
            roles=scorer_roles(config),
            checkpoint_ms=0,  # flush and store offsets after every poll
        )
