"""A scorer follows its deployment: a new champion is loaded off the poll loop, swapped in between batches.

:class:`DeploymentFollower` reads ``rig.deployments`` from the beginning on a
thread of its own. At start it reads to the end and loads the champion before
the scorer joins its group, so a scorer (also one restarted with ``kill -9``
in the middle of a change) serves the deployment's current champion from its
first reading. Afterwards a change to the champion is loaded from the model
store and checked by scoring a sample on the follower's thread; the poll loop
only picks the ready scorer up (:meth:`DeploymentFollower.take`) between two
batches, so it never waits for a load. A package that fails to load or to
score leaves the old one serving; the failure goes to ``rig.audit`` and a
metric. The previous champion stays loaded, so a rollback is a swap.

The same thread reports what this scorer serves on ``rig.scorer-status``
(key: the scorer's id) every few seconds: ``rigwatch deploy status``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from rigwatch.config import Topics
from rigwatch.exceptions import RigwatchError
from rigwatch.kafka import ReliableProducer, StopFlag, groupless_consumer
from rigwatch.lifecycle.deployments import current
from rigwatch.model import ModelPackage
from rigwatch.schemas import Codecs
from services.scorer.handler import Scorer

__all__ = ["DeploymentFollower", "check_scores", "scorer_id"]

log = logging.getLogger("rigwatch.scorer")

#: Fetch wait on the deployments topic: a change reaches a scorer within this (plus the load).
FOLLOW_FETCH_WAIT_MS = 250
#: How often a scorer says what it serves; ``deploy status`` counts one silent for 3 of these as gone.
HEARTBEAT_S = 5.0
#: Loaded models kept per scorer: the champion and the one before it (a rollback is a swap).
WARM = 2


def scorer_id() -> str:
    """``host:pid``: unique among running scorers, readable in ``deploy status``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def check_scores(package: ModelPackage) -> None:
    """Score one sample row (the middle of every training range, else zeros); raise if the output is wrong.

    Raises
    ------
    RigwatchError
        The model did not return one finite probability per class summing to 1.
    """
    ranges = package.reference.get("features", {})
    row = [
        float(np.mean([ranges[f]["min"], ranges[f]["max"]]))
        if isinstance(ranges.get(f), dict) and {"min", "max"} <= set(ranges[f])
        else 0.0
        for f in package.features
    ]
    proba = package.predict_proba(np.array([row], dtype=np.float64))
    if proba.shape != (1, len(package.classes)) or not np.isfinite(proba).all():
        raise RigwatchError(f"model {package.version}: a sample scored {proba.tolist()}")
    if abs(float(proba.sum()) - 1.0) > 1e-6:
        raise RigwatchError(f"model {package.version}: sample probabilities sum to {float(proba.sum())}")


class DeploymentFollower:
    """Follow deployment *name*: the current champion's :class:`Scorer`, and each next one when ready.

    Parameters
    ----------
    bootstrap
        The broker.
    topics
        Its ``deployments`` are followed, its ``scorer_status`` gets the heartbeats.
    codecs
        The record codecs (``deployment`` and ``scorer_status`` are used).
    name
        The deployment followed.
    load
        Version -> model package (the model store's ``load``).
    make_scorer
        Package -> the scorer of it (same codecs, role and humility rules for every version).
    on_failure
        Called with (version, error) when a champion cannot be served (audit, metric).
    group
        The scorer's consumer group, reported in the heartbeat.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        codecs: Codecs,
        name: str,
        load: Callable[[str], ModelPackage],
        make_scorer: Callable[[ModelPackage], Scorer],
        on_failure: Callable[[str, Exception], None],
        group: str,
    ) -> None:
        self.bootstrap, self.topic, self.status_topic = bootstrap, topics.deployments, topics.scorer_status
        self.codecs, self.name, self.group = codecs, name, group
        self._load, self._make_scorer, self._on_failure = load, make_scorer, on_failure
        self.stop = StopFlag()  # this thread's own: set by close()
        self.id = scorer_id()
        self.started_ms = int(time.time() * 1000)
        self._warm: dict[str, Scorer] = {}  # version -> scorer, most recently used last
        self._failed: set[str] = set()  # versions that failed: not retried until named again
        self._wanted: str | None = None
        self._ready: Scorer | None = None
        self._lock = threading.Lock()
        self.serving: str | None = None  # set by the poll loop when it swaps
        self._consumer = groupless_consumer(
            bootstrap, "deployments", partition_eof=True, fetch_wait_ms=FOLLOW_FETCH_WAIT_MS
        )
        self._thread = threading.Thread(target=self._run, name=f"follow-{name}", daemon=True)

    # ------------------------------------------------------------------ the poll loop's side

    def start(self, timeout_s: float = 30.0) -> Scorer:
        """Read the deployments to their end, load the champion and start following; its scorer.

        Raises
        ------
        RigwatchError
            No deployment *name* on the topic, its champion cannot be loaded, or the
            topic's end was not reached within *timeout_s*.
        """
        self._assign()
        records = self._read_to_end(timeout_s)
        champion, previous = _champion(records, self.name)
        if champion is None:
            raise RigwatchError(
                f"no deployment {self.name!r} on {self.topic}: create it with"
                f" `rigwatch deploy create {self.name} VERSION`"
            )
        scorer = self._scorer(champion)  # raises: a scorer with nothing to serve does not start
        self.serving = champion
        self._wanted = champion
        log.info("deployment %s: serving champion %s", self.name, champion)
        if previous is not None and previous not in self._failed:
            self._warm_up(previous)
        self._thread.start()
        return scorer

    def take(self) -> Scorer | None:
        """The next champion's scorer once it is loaded and checked (once), else None."""
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is not None:
            self.serving = ready.model.version
        return ready

    def close(self) -> None:
        self.stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self._consumer.close()

    # ------------------------------------------------------------------ the follower's thread

    def _assign(self) -> None:
        metadata = self._consumer.list_topics(self.topic, timeout=10).topics[self.topic]
        if metadata.error is not None:
            raise RigwatchError(f"topic {self.topic}: {metadata.error.str()} (is the stack up?)")
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
        self._partitions = len(metadata.partitions)

    def _read_to_end(self, timeout_s: float) -> list[dict[str, Any]]:
        """Every record up to each partition's end (its EOF event)."""
        records: list[dict[str, Any]] = []
        at_end: set[int | None] = set()
        deadline = time.monotonic() + timeout_s
        while len(at_end) < self._partitions:
            if time.monotonic() > deadline:
                raise RigwatchError(f"{self.topic}: end not reached within {timeout_s:.0f} s")
            for msg in self._consumer.consume(500, 0.5):
                err = msg.error()
                if err is None:
                    at_end.discard(msg.partition())
                    records.extend(self._decode([msg.value()]))
                elif err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
        return records

    def _decode(self, values: Iterable[bytes | None]) -> list[dict[str, Any]]:
        out = []
        for value in values:
            try:
                out.append(self.codecs.deployment.decode(value))
            except RigwatchError as exc:
                log.warning("%s: skipped an unreadable deployment record: %s", self.topic, exc)
        return out

    def _run(self) -> None:
        producer = ReliableProducer(self.bootstrap, {"linger.ms": 0}, stop=self.stop)
        next_beat = 0.0
        try:
            while not self.stop:
                if time.monotonic() >= next_beat:
                    self._heartbeat(producer)
                    next_beat = time.monotonic() + HEARTBEAT_S
                messages = self._consumer.consume(100, 0.5)
                values = [m.value() for m in messages if m.error() is None]
                champion, previous = _champion(self._decode(values), self.name)
                if champion is not None and champion != self._wanted:
                    self._wanted = champion
                    self._failed.discard(champion)  # named again: try again
                    self._prepare(champion)
                    self._heartbeat(producer)
                    if previous is not None and previous not in self._warm:
                        self._warm_up(previous)
        except Exception:
            log.exception("deployment follower stopped: this scorer keeps serving %s", self.serving)
        finally:
            producer.close()

    def _prepare(self, version: str) -> None:
        try:
            scorer = self._scorer(version)
        except Exception as exc:  # any failure of a package leaves the old one serving
            log.error(
                "deployment %s: champion %s not served, %s keeps serving: %s",
                self.name,
                version,
                self.serving,
                exc,
            )
            self._failed.add(version)
            self._on_failure(version, exc)
            return
        with self._lock:
            self._ready = scorer
        log.info("deployment %s: champion %s loaded, swapped in at the next batch", self.name, version)

    def _warm_up(self, version: str) -> None:
        try:
            self._scorer(version)
        except Exception as exc:
            log.warning("deployment %s: previous champion %s not kept warm: %s", self.name, version, exc)

    def _scorer(self, version: str) -> Scorer:
        scorer = self._warm.pop(version, None)
        if scorer is None:
            package = self._load(version)
            check_scores(package)
            scorer = self._make_scorer(package)
        self._warm[version] = scorer
        while len(self._warm) > WARM:
            self._warm.pop(next(iter(self._warm)))
        return scorer

    def _heartbeat(self, producer: ReliableProducer) -> None:
        record = {
            "scorer_id": self.id,
            "deployment": self.name,
            "version": self.serving,
            "group": self.group,
            "started": self.started_ms,
            "time": int(time.time() * 1000),
        }
        producer.produce(self.status_topic, self.codecs.scorer_status.encode(record), self.id)
        producer.flush()


def _champion(records: Iterable[Mapping[str, Any]], name: str) -> tuple[str | None, str | None]:
    """The champion and previous champion of the last active record of deployment *name*."""
    state = current(records).get(name, {})
    return state.get("champion"), state.get("previous_champion")
