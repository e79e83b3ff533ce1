"""Kafka client settings from one place: ``RIGWATCH_KAFKA_*`` reaches every client rigwatch creates.

No broker: the confluent-kafka classes are replaced, where rigwatch imports them,
by fakes that write down the configuration they are built with.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import rigwatch.kafka
import rigwatch.lag
from loadgen.pump import PumpOptions, run_pump
from rigwatch.config import Settings
from rigwatch.data import simulate
from rigwatch.exceptions import ConfigError
from rigwatch.kafka import (
    ENV_PREFIX,
    ReliableProducer,
    StopFlag,
    TopicReader,
    client_config,
    create_topics,
    delete_topics,
    groupless_consumer,
    redacted,
    wait_for_broker,
)
from rigwatch.lag import GroupLag
from rigwatch.runtime.loop import LONG_POLL, Runtime, RuntimeMetrics, Service

BOOTSTRAP = "broker-1.example:9093"
#: A SASL_SSL cluster as an operator would configure it.
SECURITY_ENV = {
    "RIGWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "RIGWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "RIGWATCH_KAFKA_SASL_USERNAME": "rigwatch-svc",
    "RIGWATCH_KAFKA_SASL_PASSWORD": "hunter2-sasl",
    "RIGWATCH_KAFKA_SSL_CA_LOCATION": "/etc/rigwatch/ca.pem",
}
SECURITY = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "rigwatch-svc",
    "sasl.password": "hunter2-sasl",
    "ssl.ca.location": "/etc/rigwatch/ca.pem",
}
#: librdkafka properties whose values are secrets (CONFIGURATION.md of librdkafka 2.x).
SECRET_PROPERTIES = [
    "sasl.password",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.keystore.password",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.assertion.private.key.pem",
    "sasl.oauthbearer.assertion.private.key.passphrase",
]
PROTECTED = [
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.offset.store",
    "enable.auto.commit",
    "enable.idempotence",
]


def _env_name(prop: str) -> str:
    return ENV_PREFIX + prop.upper().replace(".", "_")


@pytest.fixture
def security_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process's environment holds exactly the SASL_SSL settings as RIGWATCH_KAFKA_*."""
    for name in os.environ:
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for name, value in SECURITY_ENV.items():
        monkeypatch.setenv(name, value)
    return SECURITY_ENV


# -- parsing -------------------------------------------------------------------------------


def test_environment_variables_become_librdkafka_properties() -> None:
    environ = {
        **SECURITY_ENV,
        "RIGWATCH_BOOTSTRAP": "ignored:1",  # a rigwatch setting, not a client property
        "RIGWATCH_KAFKA_": "no property name",
        "PATH": "/usr/bin",
    }
    assert client_config(BOOTSTRAP, None, environ) == SECURITY | {"bootstrap.servers": BOOTSTRAP}


def test_environment_overrides_role_defaults_and_keeps_the_others() -> None:
    defaults = {"linger.ms": 5, "compression.type": "none"}
    conf = client_config(BOOTSTRAP, defaults, {"RIGWATCH_KAFKA_LINGER_MS": "20"})
    assert conf == {"linger.ms": "20", "compression.type": "none", "bootstrap.servers": BOOTSTRAP}
    assert defaults == {"linger.ms": 5, "compression.type": "none"}, "the defaults were changed"


def test_the_process_environment_is_read_when_none_is_given(security_env: dict[str, str]) -> None:
    assert client_config(BOOTSTRAP).items() >= SECURITY.items()


@pytest.mark.parametrize("prop", PROTECTED)
def test_a_property_the_guarantees_rest_on_is_refused_naming_the_variable(prop: str) -> None:
    name = _env_name(prop)
    with pytest.raises(ConfigError, match=name) as caught:
        client_config(BOOTSTRAP, None, {**SECURITY_ENV, name: "x"})
    assert repr(prop) in str(caught.value)


@pytest.mark.parametrize("prop", ["group.instance.id", "transactional.id"])
def test_a_one_client_identity_is_refused_naming_the_variable(prop: str) -> None:
    name = _env_name(prop)
    with pytest.raises(ConfigError, match=name):
        client_config(BOOTSTRAP, None, {name: "worker-1"})


def test_a_refused_property_stops_the_client_before_it_is_created(
    monkeypatch: pytest.MonkeyPatch, clients: list[tuple[str, dict[str, Any]]]
) -> None:
    monkeypatch.setenv("RIGWATCH_KAFKA_ENABLE_IDEMPOTENCE", "false")
    with pytest.raises(ConfigError, match="RIGWATCH_KAFKA_ENABLE_IDEMPOTENCE"):
        ReliableProducer(BOOTSTRAP)
    assert clients == []


# -- redaction -----------------------------------------------------------------------------


@pytest.mark.parametrize("prop", SECRET_PROPERTIES)
def test_every_secret_property_is_redacted(prop: str) -> None:
    conf = {prop: "s3cret-value", "sasl.username": "rigwatch-svc"}
    assert redacted(conf) == {prop: "***", "sasl.username": "rigwatch-svc"}
    assert conf[prop] == "s3cret-value", "redacted() changed its argument"


def test_a_redacted_client_config_keeps_what_helps_and_hides_the_secrets() -> None:
    environ = SECURITY_ENV | {_env_name(p): f"secret-{i}" for i, p in enumerate(SECRET_PROPERTIES)}
    shown = redacted(client_config(BOOTSTRAP, {"linger.ms": 5}, environ))
    assert "secret-" not in str(shown) and "hunter2" not in str(shown)
    assert shown["bootstrap.servers"] == BOOTSTRAP
    assert shown["security.protocol"] == "SASL_SSL" and shown["sasl.mechanism"] == "SCRAM-SHA-512"
    assert shown["sasl.username"] == "rigwatch-svc" and shown["ssl.ca.location"] == "/etc/rigwatch/ca.pem"
    assert shown["linger.ms"] == 5


# -- every client gets them ----------------------------------------------------------------


class _FakeProducer:
    def __init__(self, conf: dict[str, Any]) -> None:
        self._callbacks: list[Any] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self._callbacks.append(kwargs.get("on_delivery"))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        for callback in self._callbacks:
            if callback is not None:
                callback(None, None)
        self._callbacks.clear()
        return 0


class _FakeConsumer:
    def __init__(self, conf: dict[str, Any]) -> None:
        pass

    def subscribe(self, topics: list[str], **kwargs: Any) -> None:
        pass

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        partitions = {0: SimpleNamespace(id=0)}
        return SimpleNamespace(topics={topic: SimpleNamespace(error=None, partitions=partitions)})

    def assign(self, partitions: list[Any]) -> None:
        pass

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        return []

    def close(self) -> None:
        pass


class _FakeAdmin:
    def __init__(self, conf: dict[str, Any]) -> None:
        pass

    def list_topics(self, timeout: float = -1) -> Any:
        return SimpleNamespace(topics={})

    @staticmethod
    def _done(names: list[str]) -> dict[str, Future[None]]:
        futures: dict[str, Future[None]] = {}
        for name in names:
            futures[name] = Future()
            futures[name].set_result(None)
        return futures

    def create_topics(self, new_topics: list[Any], **kwargs: Any) -> dict[str, Future[None]]:
        return self._done([t.topic for t in new_topics])

    def delete_topics(self, topics: list[str], **kwargs: Any) -> dict[str, Future[None]]:
        return self._done(topics)


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """(kind, configuration) of every confluent-kafka client created, in order."""
    made: list[tuple[str, dict[str, Any]]] = []

    def recording(kind: str, fake: type) -> Any:
        def make(conf: dict[str, Any]) -> Any:
            made.append((kind, dict(conf)))
            return fake(conf)

        return make

    # Replaced where rigwatch looks the names up, not in confluent_kafka.
    monkeypatch.setattr(rigwatch.kafka, "Producer", recording("producer", _FakeProducer))
    monkeypatch.setattr(rigwatch.kafka, "Consumer", recording("consumer", _FakeConsumer))
    monkeypatch.setattr(rigwatch.kafka, "AdminClient", recording("admin", _FakeAdmin))
    monkeypatch.setattr(rigwatch.lag, "AdminClient", recording("admin", _FakeAdmin))
    yield made


def _has_security(conf: dict[str, Any]) -> bool:
    return conf.items() >= SECURITY.items() and conf["bootstrap.servers"] == BOOTSTRAP


def test_reliable_producer_gets_the_security_properties_and_keeps_idempotence(
    security_env: dict[str, str], clients: list[tuple[str, dict[str, Any]]]
) -> None:
    role: dict[str, Any] = {"linger.ms": 1}
    ReliableProducer(BOOTSTRAP, role)
    ((kind, conf),) = clients
    assert kind == "producer" and _has_security(conf)
    assert conf["enable.idempotence"] is True and conf["linger.ms"] == 1


def test_a_control_producer_is_not_idempotent_but_keeps_order_and_waits_for_every_replica(
    security_env: dict[str, str], clients: list[tuple[str, dict[str, Any]]]
) -> None:
    ReliableProducer(BOOTSTRAP, {"linger.ms": 0}, idempotent=False)
    ((kind, conf),) = clients
    assert kind == "producer" and _has_security(conf) and conf["enable.idempotence"] is False
    assert (conf["acks"], conf["max.in.flight.requests.per.connection"]) == ("all", 1)


def test_the_runtime_consumer_gets_the_security_properties_and_keeps_manual_offset_store(
    security_env: dict[str, str],
) -> None:
    runtime = Runtime(
        Service(),
        bootstrap=BOOTSTRAP,
        group="rigwatch-scorer",
        stop=StopFlag(),
        metrics=RuntimeMetrics(CollectorRegistry(), "scorer"),
        roles=LONG_POLL,
    )
    conf = runtime.consumer_config()
    assert _has_security(conf)
    assert conf["group.id"] == "rigwatch-scorer"
    assert conf["enable.auto.offset.store"] is False and conf["enable.auto.commit"] is True
    assert conf["fetch.wait.max.ms"] == LONG_POLL.consumer["fetch.wait.max.ms"]


def test_groupless_consumer_and_topic_reader_get_the_security_properties(
    security_env: dict[str, str], clients: list[tuple[str, dict[str, Any]]]
) -> None:
    groupless_consumer(BOOTSTRAP, "probe")
    with TopicReader(BOOTSTRAP, ["rig.predictions"]):
        pass
    assert [kind for kind, _ in clients] == ["consumer", "consumer"]
    for _, conf in clients:
        assert _has_security(conf)
        assert conf["enable.auto.commit"] is False and conf["enable.auto.offset.store"] is False


def test_the_environment_cannot_turn_off_the_end_of_partition_events_the_lag_probe_needs(
    monkeypatch: pytest.MonkeyPatch, clients: list[tuple[str, dict[str, Any]]]
) -> None:
    monkeypatch.setenv("RIGWATCH_KAFKA_ENABLE_PARTITION_EOF", "false")
    groupless_consumer(BOOTSTRAP, "lag", partition_eof=True)
    ((_, conf),) = clients
    assert conf["enable.partition.eof"] is True


def test_admin_clients_get_the_security_properties(
    security_env: dict[str, str], clients: list[tuple[str, dict[str, Any]]]
) -> None:
    wait_for_broker(BOOTSTRAP, timeout=1)
    assert create_topics(BOOTSTRAP, ["rig.alerts"], partitions=1) == ["rig.alerts"]
    delete_topics(BOOTSTRAP, ["rig.alerts"])
    assert [kind for kind, _ in clients] == ["admin"] * 3
    assert all(_has_security(conf) for _, conf in clients)


def test_group_lag_probe_gets_the_security_properties(
    security_env: dict[str, str], clients: list[tuple[str, dict[str, Any]]]
) -> None:
    GroupLag(BOOTSTRAP, "rigwatch-scorer", "rig.sensor-readings")
    assert sorted(kind for kind, _ in clients) == ["admin", "consumer"]
    assert all(_has_security(conf) for _, conf in clients)


def test_the_pump_producer_gets_the_security_properties(
    security_env: dict[str, str], clients: list[tuple[str, dict[str, Any]]]
) -> None:
    settings = Settings(bootstrap=BOOTSTRAP, redis_url="redis://127.0.0.1:1/0")
    options = PumpOptions(rate=0, count=3, label_delay=0)
    report = run_pump(settings, simulate(30, seed=1), options, StopFlag(), out=io.StringIO())
    assert report.readings + report.bad == 3
    ((kind, conf),) = clients
    assert kind == "producer" and _has_security(conf) and conf["enable.idempotence"] is True


# -- child processes -----------------------------------------------------------------------


def test_to_env_passes_kafka_properties_and_drops_other_rigwatch_variables(
    security_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RIGWATCH_SCORER_GROUP", "not-for-the-child")
    env = Settings(bootstrap=BOOTSTRAP, redis_url="redis://127.0.0.1:1/0", run_dir=tmp_path).to_env()
    assert env.items() >= SECURITY_ENV.items()
    assert "RIGWATCH_SCORER_GROUP" not in env
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, os; from rigwatch.kafka import client_config; "
            "print(json.dumps(client_config(os.environ['RIGWATCH_BOOTSTRAP'])))",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert _has_security(json.loads(child.stdout))
