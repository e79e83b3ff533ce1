"""A scorer follows its deployment: new models are loaded off the poll loop, swapped in between batches.

:class:`DeploymentFollower` reads ``rig.deployments`` from the beginning on a
thread of its own. At start it reads to the end and loads what the scorer
serves before it joins its group, so a scorer (also one restarted with
``kill -9`` in the middle of a change) serves the deployment's current state
from its first reading. What a scorer serves is a :class:`Plan` of the
deployment's state (:func:`plan_of`):

- a champion scorer serves the champion, and with a canary challenger the
  challenger on the canary's share of rigs (:func:`in_canary`); the previous
  champion stays loaded, so a rollback is a swap;
- a shadow scorer (its own consumer group) serves a shadow challenger, else
  nothing.

A change is loaded from the model store and checked by scoring a sample on
the follower's thread; the poll loop only picks the ready :class:`Serving` up
(:meth:`DeploymentFollower.take`) between two batches, so it never waits for
a load. A package that fails to load or to score leaves the old one serving
(a canary that fails: the champion serves every reading); the failure goes to
``rig.audit`` and a metric.

The same thread reports what this scorer serves on ``rig.scorer-status``
(key: the scorer's id) every few seconds: ``rigwatch deploy status``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from rigwatch.config import Topics
from rigwatch.exceptions import RigwatchError
from rigwatch.kafka import ReliableProducer, StopFlag, groupless_consumer
from rigwatch.lifecycle.deployments import CANARY, SHADOW, current
from rigwatch.model import ModelPackage
from rigwatch.schemas import Codecs
from services.scorer.handler import Scorer

__all__ = ["DeploymentFollower", "Plan", "Serving", "check_scores", "in_canary", "plan_of", "scorer_id"]

log = logging.getLogger("rigwatch.scorer")

#: Fetch wait on the deployments topic: a change reaches a scorer within this (plus the load).
FOLLOW_FETCH_WAIT_MS = 250
#: How often a scorer says what it serves; ``deploy status`` counts one silent for 3 of these as gone.
HEARTBEAT_S = 5.0
#: Loaded packages kept per scorer: the champion, the one before it (a rollback is a swap), a challenger.
WARM = 3
#: Buckets of the canary split: a percent with two decimals selects exactly.
_BUCKETS = 10_000


def in_canary(key: bytes | None, percent: float) -> bool:
    """Whether the rig keyed *key* is in a canary serving *percent* % of rigs (stable, every process alike).

    Examples
    --------
    >>> sum(in_canary(f"rig-{i:03d}".encode(), 25.0) for i in range(1000))
    272
    >>> in_canary(b"rig-001", 0.0), in_canary(b"rig-001", 100.0)
    (False, True)
    """
    return key is not None and zlib.crc32(key) % _BUCKETS < percent * (_BUCKETS // 100)


@dataclass(frozen=True)
class Plan:
    """The versions a scorer serves: *primary* (None: nothing), *canary* on *percent* % of rigs."""

    primary: str | None
    canary: str | None = None
    percent: float = 0.0
    #: Kept loaded beside them: the previous champion.
    warm: str | None = None


def plan_of(state: Mapping[str, Any] | None, *, shadow: bool) -> Plan:
    """What a champion scorer (or, *shadow*, a shadow scorer) serves of a deployment's *state*.

    Examples
    --------
    >>> state = {"champion": "a", "previous_champion": "z", "challenger": "b",
    ...          "challenger_mode": "canary", "challenger_percent": 10.0}
    >>> plan_of(state, shadow=False)
    Plan(primary='a', canary='b', percent=10.0, warm='z')
    >>> plan_of(state, shadow=True)
    Plan(primary=None, canary=None, percent=0.0, warm=None)
    >>> plan_of(state | {"challenger_mode": "shadow"}, shadow=True)
    Plan(primary='b', canary=None, percent=0.0, warm=None)
    """
    if not state:
        return Plan(None)
    mode, challenger = state.get("challenger_mode"), state.get("challenger")
    if shadow:
        return Plan(challenger if mode == SHADOW else None)
    if mode == CANARY and challenger is not None:
        return Plan(state["champion"], challenger, float(state.get("challenger_percent") or 0.0),
                    state.get("previous_champion"))  # fmt: skip
    return Plan(state["champion"], warm=state.get("previous_champion"))


@dataclass(frozen=True)
class Serving:
    """The scorers of a :class:`Plan`: *primary* (None: nothing to serve), *canary* on *percent* % of rigs."""

    primary: Scorer | None
    canary: Scorer | None = None
    percent: float = 0.0

    def describe(self) -> str:
        """``a``, ``a + canary b 10%`` or ``nothing``."""
        if self.primary is None:
            return "nothing"
        served = self.primary.model.version
        if self.canary is not None:
            served += f" + canary {self.canary.model.version} {self.percent:g}%"
        return served


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
    """Follow deployment *name*: the :class:`Serving` of its current state, and each next one when ready.

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
        (Package, role) -> the scorer of it (same codecs and humility rules for every version).
    on_failure
        Called with (version, error) when a version cannot be served (audit, metric).
    group
        The scorer's consumer group, reported in the heartbeat.
    shadow
        Serve the deployment's shadow challenger (a shadow scorer) rather than its champion.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        codecs: Codecs,
        name: str,
        load: Callable[[str], ModelPackage],
        make_scorer: Callable[[ModelPackage, str], Scorer],
        on_failure: Callable[[str, Exception], None],
        group: str,
        *,
        shadow: bool = False,
    ) -> None:
        self.bootstrap, self.topic, self.status_topic = bootstrap, topics.deployments, topics.scorer_status
        self.codecs, self.name, self.group, self.shadow = codecs, name, group, shadow
        self._load, self._make_scorer, self._on_failure = load, make_scorer, on_failure
        self.stop = StopFlag()  # this thread's own: set by close()
        self.id = scorer_id()
        self.started_ms = int(time.time() * 1000)
        self._packages: dict[str, ModelPackage] = {}  # version -> package, most recently used last
        self._scorers: dict[tuple[str, str], Scorer] = {}  # (version, role) of the loaded packages
        self._failed: set[str] = set()  # versions that failed: not retried until named again
        self._wanted = Plan(None)
        self._ready: Serving | None = None
        self._lock = threading.Lock()
        self.serving = "nothing"  # what the poll loop serves (Serving.describe), set when it swaps
        self._version: str | None = None  # its primary version, for the heartbeat
        self._consumer = groupless_consumer(
            bootstrap, "deployments", partition_eof=True, fetch_wait_ms=FOLLOW_FETCH_WAIT_MS
        )
        self._thread = threading.Thread(target=self._run, name=f"follow-{name}", daemon=True)

    # ------------------------------------------------------------------ the poll loop's side

    def start(self, timeout_s: float = 30.0) -> Serving:
        """Read the deployments to their end, load what to serve and start following; its :class:`Serving`.

        Raises
        ------
        RigwatchError
            No deployment *name* on the topic, its champion cannot be loaded (a
            champion scorer), or the topic's end was not reached within *timeout_s*.
        """
        self._assign()
        state = current(self._read_to_end(timeout_s)).get(self.name)
        if state is None:
            raise RigwatchError(
                f"no deployment {self.name!r} on {self.topic}: create it with"
                f" `rigwatch deploy create {self.name} VERSION`"
            )
        plan = plan_of(state, shadow=self.shadow)
        if self.shadow:
            serving = self._prepare(plan) or Serving(None)
        else:
            # Raises: a champion scorer with nothing to serve does not start.
            serving = self._serving(plan, self._scorer(plan.primary or "", "champion"))
        self._wanted = plan
        self._served(serving)
        log.info("deployment %s: serving %s", self.name, serving.describe())
        self._thread.start()
        return serving

    def take(self) -> Serving | None:
        """The next :class:`Serving` once its models are loaded and checked (once), else None."""
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is not None:
            self._served(ready)
        return ready

    def close(self) -> None:
        self.stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self._consumer.close()

    def _served(self, serving: Serving) -> None:
        self.serving = serving.describe()
        self._version = None if serving.primary is None else serving.primary.model.version

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
        producer = ReliableProducer(self.bootstrap, {"linger.ms": 0}, stop=self.stop, idempotent=False)
        next_beat = 0.0
        try:
            while not self.stop:
                if time.monotonic() >= next_beat:
                    self._heartbeat(producer)
                    next_beat = time.monotonic() + HEARTBEAT_S
                messages = self._consumer.consume(100, 0.5)
                state = current(self._decode([m.value() for m in messages if m.error() is None])).get(
                    self.name
                )
                if state is None:
                    continue
                plan = plan_of(state, shadow=self.shadow)
                if plan != self._wanted:
                    self._wanted = plan
                    self._failed -= {plan.primary, plan.canary}  # named again: try again
                    ready = self._prepare(plan)
                    if ready is not None:
                        with self._lock:
                            self._ready = ready
                        log.info("deployment %s: %s loaded, swapped in at the next batch", self.name,
                                 ready.describe())  # fmt: skip
                    self._heartbeat(producer)
        except Exception:
            log.exception("deployment follower stopped: this scorer keeps serving %s", self.serving)
        finally:
            producer.close()

    def _prepare(self, plan: Plan) -> Serving | None:
        """The :class:`Serving` of *plan*, or None when its primary cannot be served (the old one stays)."""
        if plan.primary is None:
            return Serving(None)
        try:
            primary = self._scorer(plan.primary, "challenger" if self.shadow else "champion")
        except Exception as exc:  # any failure of a package leaves the old one serving
            log.error("deployment %s: %s not served, %s keeps serving: %s", self.name, plan.primary,
                      self.serving, exc)  # fmt: skip
            self._failed.add(plan.primary)
            self._on_failure(plan.primary, exc)
            return None
        return self._serving(plan, primary)

    def _serving(self, plan: Plan, primary: Scorer) -> Serving:
        """*primary* with the canary of *plan* (left out if it fails); the previous champion warmed."""
        canary = None
        if plan.canary is not None and plan.canary not in self._failed:
            try:
                canary = self._scorer(plan.canary, "challenger")
            except Exception as exc:
                log.error("deployment %s: canary %s not served, %s serves every reading: %s", self.name,
                          plan.canary, primary.model.version, exc)  # fmt: skip
                self._failed.add(plan.canary)
                self._on_failure(plan.canary, exc)
        if plan.warm is not None and plan.warm not in self._failed:
            try:
                self._package(plan.warm)
            except Exception as exc:
                log.warning(
                    "deployment %s: previous champion %s not kept warm: %s", self.name, plan.warm, exc
                )
        return Serving(primary, canary, plan.percent if canary is not None else 0.0)

    def _package(self, version: str) -> ModelPackage:
        package = self._packages.pop(version, None)
        if package is None:
            package = self._load(version)
            check_scores(package)
        self._packages[version] = package
        while len(self._packages) > WARM:
            gone = next(iter(self._packages))
            del self._packages[gone]
            self._scorers = {k: v for k, v in self._scorers.items() if k[0] != gone}
        return package

    def _scorer(self, version: str, role: str) -> Scorer:
        package = self._package(version)
        scorer = self._scorers.get((version, role))
        if scorer is None:
            scorer = self._scorers[(version, role)] = self._make_scorer(package, role)
        return scorer

    def _heartbeat(self, producer: ReliableProducer) -> None:
        record = {
            "scorer_id": self.id,
            "deployment": self.name,
            "version": self._version,
            "group": self.group,
            "started": self.started_ms,
            "time": int(time.time() * 1000),
        }
        producer.produce(self.status_topic, self.codecs.scorer_status.encode(record), self.id)
        producer.flush()
