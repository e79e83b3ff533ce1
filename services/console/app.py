"""Console entrypoint: a faust-streaming app that follows the control-plane topics and serves the API.

Faust's agents read ``rig.alerts``, ``rig.metrics``, ``rig.deployments``,
``rig.audit`` and ``rig.scorer-status`` (raw bytes, decoded with the
project's codecs) into the in-memory :class:`~services.console.tables.Tables`,
and faust's aiohttp web server serves :mod:`services.console.routes` on the
same event loop. Blocking work (lifecycle operations, model loads, the model
store) runs on a thread pool.

Every console reads every partition from the beginning at start: each runs in
a consumer group of its own (a shared group would split the partitions between
consoles), so its tables are whole without a changelog of their own. The
topics are the log: deployments compacted, the audit trail kept forever.
Faust tables are not used: they would write a changelog topic per console and
recover from it by end offsets, which the local broker reports wrong.

The tables trail the topics by up to a fetch wait: faust builds its aiokafka
consumer with ``fetch_max_wait_ms=1500``, and the local broker holds every
fetch that long (one fetch request per 1.5 s, cheap for the broker). An
operation's answer carries its own change, so a caller need not wait for it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, ClassVar

import faust
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from faust.exceptions import ConsumerNotStarted
from faust.web import Web
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from rigwatch.codec import Codec
from rigwatch.config import Settings
from rigwatch.exceptions import DecodeError, StackError
from rigwatch.kafka import client_config
from rigwatch.lifecycle._topic import bootstrap_of
from rigwatch.lifecycle.store import ModelStore
from rigwatch.schemas import Codecs
from services.console.auth import Auth
from services.console.config import ConsoleSettings
from services.console.events import Hub
from services.console.handler import ConsoleHandler, ModelCache
from services.console.kafka_auth import faust_credentials
from services.console.openapi import openapi
from services.console.publish import Publisher
from services.console.routes import routes
from services.console.server import json_errors, register
from services.console.tables import Progress, Tables
from services.console.tickets import Tickets
from services.console.tokens import TokenStore
from services.scorer.app import humility_rules
from services.scorer.config import ScorerSettings
from services.scorer.handler import Scorer

__all__ = ["ConsoleApp", "build_app", "run"]

log = logging.getLogger("rigwatch.console")

#: How often the console looks whether it has read its topics to their end.
READY_CHECK_S = 0.25


class ConsoleWeb(AiohttpWeb):
    """Faust's aiohttp server without faust's own pages: the console answers every path, ``/`` too.

    (Faust's defaults would show table contents, the cluster's routing and its
    statistics to anyone, without a token.)
    """

    default_blueprints: ClassVar[list[Any]] = []
    production_blueprints: ClassVar[list[Any]] = []
    debug_blueprints: ClassVar[list[Any]] = []
    optional_blueprints: ClassVar[list[Any]] = []

    async def stop_server(self) -> None:
        # End the event streams first: aiohttp would otherwise wait for them to close for up to a minute.
        hub = getattr(self.app, "hub", None)
        if hub is not None:
            hub.close()
        await super().stop_server()


class ConsoleApp(faust.App):
    """A faust app served by :class:`ConsoleWeb`; ``hub`` feeds its event streams."""

    hub: Hub | None = None

    def _new_web(self) -> Web:
        return ConsoleWeb(self)


def _followed(settings: Settings, codecs: Codecs) -> list[tuple[str, str, Codec]]:
    """(table kind, topic, codec) of every topic the console follows."""
    t = settings.topics
    return [
        ("alert", t.alerts, codecs.alert),
        ("window", t.metrics, codecs.metric_window),
        ("deployment", t.deployments, codecs.deployment),
        ("audit", t.audit, codecs.audit_event),
        ("heartbeat", t.scorer_status, codecs.scorer_status),
    ]


def _package_version() -> str:
    try:
        return version("rigwatch")
    except PackageNotFoundError:
        return "0"


def check_topics(bootstrap: str, topics: Iterable[str], timeout_s: float = 10.0) -> None:
    """Raise :class:`StackError` naming the first of *topics* the broker does not have (or no broker)."""
    admin = AdminClient(client_config(bootstrap))
    try:
        found = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise StackError(f"no broker answered at {bootstrap} within {timeout_s:.0f} s: {exc}") from exc
    for topic in topics:
        if topic not in found or found[topic].error is not None:
            raise StackError(f"topic {topic} does not exist at {bootstrap}; `rigwatch stack up` creates it")


def build_app(
    settings: Settings,
    config: ConsoleSettings,
    *,
    publisher: Publisher | None,
    executor: ThreadPoolExecutor,
    datadir: Path,
) -> ConsoleApp:
    """The console's faust app: agents into the tables, the API on the web server. Nothing starts yet."""
    assert settings.bootstrap is not None
    codecs = Codecs.load()
    tables = Tables(config.windows_per_subject, config.recent_alerts)
    progress = Progress()
    rules = humility_rules(ScorerSettings())  # the streaming scorer's, from the same RIGWATCH_SCORER_*
    store = ModelStore(settings.model_store)

    async def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            executor, functools.partial(fn, *args, **kwargs)
        )

    def load(version: str) -> Scorer:
        return Scorer(store.load(version), codecs.sensor_reading, codecs.prediction, rules=rules)

    app = ConsoleApp(
        # A group of its own (see the module docstring).
        f"{config.group}-{uuid.uuid4().hex[:8]}",
        broker=[f"kafka://{server.strip()}" for server in settings.bootstrap.split(",")],
        # RIGWATCH_KAFKA_* security settings, which every librdkafka client of rigwatch gets too.
        broker_credentials=faust_credentials(client_config(settings.bootstrap)),
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        # The local broker's first join waits half the session timeout (DESIGN: local stack).
        broker_session_timeout=6,
        broker_rebalance_timeout=6,
        broker_heartbeat_interval=2,
        # No leader election (no on_leader tasks) and no topics of faust's own.
        topic_disable_leader=True,
        topic_allow_declare=False,
        web_bind=config.host,
        web_host=config.host,
        web_port=config.port,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_router_enabled=False,
        web_tables_enabled=False,
        web_application_options={
            "client_max_size": int(config.max_body_mb * 1024 * 1024),
            "middlewares": [json_errors(int(config.max_body_mb * 1024 * 1024))],
        },
        datadir=datadir,
        autodiscover=False,
    )
    app.hub = Hub()
    tables.listeners.append(app.hub.publish)
    tickets = Tickets()  # issued by the handler, redeemed by the server's auth
    for kind, topic, codec in _followed(settings, codecs):
        app.agent(app.topic(topic), name=f"follow-{kind}")(_follower(kind, codec, tables, progress))

    started = time.monotonic()

    @app.timer(READY_CHECK_S)
    async def _ready() -> None:
        if progress.ready:
            return
        try:
            caught_up = progress.check(app.consumer.assignment(), app.consumer.highwater)
        except ConsumerNotStarted:
            return  # its thread is still starting: the next tick looks again
        if caught_up:
            counts = ", ".join(f"{n} {kind}" for kind, n in tables.counts.items())
            log.info("caught up in %.1f s: %s", time.monotonic() - started, counts)

    handler = ConsoleHandler(
        settings,
        tables,
        ModelCache(load, run, config.models_cached),
        run,
        publisher=publisher,
        ready=lambda: progress.ready,
        openapi=openapi(routes(), _package_version()),
        max_readings=config.max_readings,
        codecs=codecs,
        hub=app.hub,
        tickets=tickets,
    )
    auth = Auth(TokenStore(config.tokens_file), config.allow_anonymous, tickets)
    register(app, handler, auth, routes())
    return app


def _follower(kind: str, codec: Codec, tables: Tables, progress: Progress) -> Callable[[Any], Any]:
    """The agent that folds the records of one topic into the tables."""

    async def follow(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            progress.seen(message.topic, message.partition, message.offset)
            if event.value is None:
                continue  # a tombstone: nothing the console shows
            try:
                record = codec.decode(event.value)
            except DecodeError as exc:
                log.warning("%s[%d]@%d left out: %s", message.topic, message.partition, message.offset, exc)
                continue
            tables.add(kind, record)

    follow.__name__ = f"follow_{kind}"
    return follow


class _Worker(faust.Worker):
    def install_signal_handlers(self) -> None:
        super().install_signal_handlers()
        # Like every rigwatch service: SIGHUP stops it cleanly too (faust handles INT and TERM).
        self.loop.add_signal_handler(signal.SIGHUP, self._on_sigterm)


def run(settings: Settings, config: ConsoleSettings) -> int:
    """Serve until SIGTERM / SIGINT / SIGHUP, then stop cleanly; return 0.

    Raises
    ------
    ConfigError
        Anonymous access off loopback, an unreadable tokens file, a bad humility setting.
    StackError
        No broker, or a topic missing.
    """
    config.check()
    settings = settings.model_copy(update={"bootstrap": bootstrap_of(settings)})
    assert settings.bootstrap is not None
    topics = [topic for _, topic, _ in _followed(settings, Codecs.load())]
    check_topics(settings.bootstrap, [*topics, settings.topics.sensor_readings])
    humility_rules(ScorerSettings())  # a bad RIGWATCH_SCORER_* stops the start, not the first score
    tokens = TokenStore(config.tokens_file)
    if not tokens.principals() and config.allow_anonymous is None:
        log.warning(
            "no API tokens in %s: every request will be refused (401) until"
            " `rigwatch console token add NAME --role ROLE`",
            config.tokens_file,
        )
    if not log.isEnabledFor(logging.DEBUG):
        # Faust logs every service's start and stop at INFO, under its own and its subclasses' modules.
        for name in ("faust", "mode", "aiokafka", __name__):
            logging.getLogger(name).setLevel(logging.WARNING)
    executor = ThreadPoolExecutor(config.threads, thread_name_prefix="console")
    publisher = Publisher(settings.bootstrap)
    scratch = tempfile.TemporaryDirectory(prefix="rigwatch-console-")
    try:
        app = build_app(settings, config, publisher=publisher, executor=executor, datadir=Path(scratch.name))
        anonymous = f", anonymous: {config.allow_anonymous}" if config.allow_anonymous is not None else ""
        log.info(
            "console on http://%s:%d/ (API under /api/v1; tokens %s%s), following %s",
            config.host,
            config.port,
            config.tokens_file,
            anonymous,
            ", ".join(topics),
        )
        worker = _Worker(app, quiet=True, redirect_stdouts=False, override_logging=False)
        worker.spinner = None  # its progress dots would go to a log file as escape codes
        worker.execute_from_commandline()  # returns by SystemExit: 0 after a signal
    finally:
        left = publisher.close()
        if left:
            log.warning("%d published readings were not acknowledged at shutdown", left)
        executor.shutdown(wait=True, cancel_futures=True)
        scratch.cleanup()
    return 0
