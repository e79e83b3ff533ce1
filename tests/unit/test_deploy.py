"""docker-compose.yml, the Prometheus files and the Grafana dashboards, checked by reading them.

There is no Docker engine here: the compose file is parsed and held against the code it
runs (the CLI commands, the settings classes, the metrics the services register), the
Prometheus rules against the default rigwatch rules, the dashboard queries against the
metric names the services export. ``promtool`` validates the Prometheus files when it is
on PATH.

PyYAML is not a rigwatch dependency: the YAML files are parsed with it when this
interpreter has it, else by a ``python3`` on PATH that has it, else those tests skip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families
from pydantic_settings import BaseSettings
from typer.testing import CliRunner

from rigwatch.cli import app as cli_app
from rigwatch.config import Settings
from services.accuracy.config import AccuracySettings
from services.accuracy.metrics import AccuracyMetrics
from services.alerts.config import AlertsSettings
from services.alerts.metrics import AlertsMetrics
from services.alerts.rules import DEFAULT_RULES, Rule, load_rules
from services.console.config import ConsoleSettings
from services.drift.config import DriftSettings
from services.drift.metrics import DriftMetrics
from services.gate.config import GateSettings
from services.gate.metrics import GateMetrics
from services.latency.config import LatencySettings
from services.latency.metrics import LatencyMetrics
from services.scorer.config import ScorerSettings
from services.scorer.metrics import ScorerMetrics

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
PROMETHEUS_RULES = PROMETHEUS_DIR / "rules.yml"
PROMETHEUS_RULE_TESTS = PROMETHEUS_DIR / "rules_test.yml"
GRAFANA_DIR = REPO / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))

#: The services that serve /metrics: compose service name -> (metrics class, settings class).
SERVING: dict[str, tuple[type, type[BaseSettings]]] = {
    "scorer": (ScorerMetrics, ScorerSettings),
    "scorer-shadow": (ScorerMetrics, ScorerSettings),
    "drift": (DriftMetrics, DriftSettings),
    "latency": (LatencyMetrics, LatencySettings),
    "accuracy": (AccuracyMetrics, AccuracySettings),
    "alerts": (AlertsMetrics, AlertsSettings),
    "gate": (GateMetrics, GateSettings),
}
#: Services that run another's command with other options (same metrics, same settings).
VARIANTS = {"scorer-shadow": "scorer"}
#: Everything built from the Dockerfile: the serving services, topic/model setup and the pump.
RIGWATCH_SERVICES = {*SERVING, "setup", "pump", "console"}
#: Services that serve something other than /metrics: compose service name -> settings class.
OTHER_SETTINGS: dict[str, type[BaseSettings]] = {"console": ConsoleSettings}
#: rigwatch settings read from the environment besides the settings classes' fields.
EXTRA_ENV = {"RIGWATCH_DATA", "RIGWATCH_CACHE_DIR"}
#: Series Prometheus itself makes: name -> label names (None: any).
BUILTIN_SERIES: dict[str, frozenset[str] | None] = {"up": frozenset({"job", "instance"}), "ALERTS": None}
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})
DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
SEVERITIES = {"warning", "critical"}
#: Window kind -> the processor's window length, the unit of a rule's for / clear_for.
WINDOW_MS = {
    "drift": DriftSettings.model_fields["window_ms"].default,
    "health": LatencySettings.model_fields["window_ms"].default,
    "accuracy": AccuracySettings.model_fields["window_ms"].default,
    "comparison": AccuracySettings.model_fields["window_ms"].default,
}
#: Default rigwatch rules with no Prometheus equivalent, and why.
NOT_EXPORTED = {"humility": "flag_rate"}


# -- loading ------------------------------------------------------------------------------


@cache
def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _compose() -> dict[str, Any]:
    return _load_yaml(COMPOSE)


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _env(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _default(text: str) -> str:
    """Resolve compose's ``${VAR:-default}`` / ``${VAR-default}`` to the default."""
    return re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", text)


def _duration_s(text: str | int | None) -> float:
    """A Prometheus / compose duration (``1m30s``, ``500ms``, ``0s``) in seconds."""
    if text is None:
        return 0.0
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", str(text))
    assert parts and "".join(n + u for n, u in parts) == str(text), f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


# -- the metrics the services export -------------------------------------------------------


def _collectors(obj: Any) -> Iterator[MetricWrapperBase]:
    """Every prometheus_client metric an object of the services holds (attributes, dicts)."""
    if isinstance(obj, MetricWrapperBase):
        yield obj
    elif isinstance(obj, Mapping):
        for value in obj.values():
            yield from _collectors(value)
    elif isinstance(obj, list | tuple):
        for value in obj:
            yield from _collectors(value)
    elif type(obj).__module__.startswith(("services.", "rigwatch.")) and hasattr(obj, "__dict__"):
        for value in vars(obj).values():
            yield from _collectors(value)


@cache
def exported(service: str) -> dict[str, frozenset[str]]:
    """Sample name -> label names, as the service's /metrics shows them once every label set is used.

    The metrics class is instantiated on a fresh registry; each labelled metric gets one
    child (a labelled metric shows no sample before that), then the registry is rendered
    in the exposition format and parsed back, so the names carry prometheus_client's own
    suffixes (``_total``, ``_bucket``/``_sum``/``_count``, ``_info``, ``_created``).
    """
    registry = CollectorRegistry()
    instance = SERVING[service][0](registry)
    for metric in _collectors(instance):
        labelnames = metric._labelnames  # the only place prometheus_client keeps them
        if labelnames:
            metric.labels(*("x" for _ in labelnames))
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    silent = [f.name for f in families if not f.samples]
    assert not silent, f"{service}: metrics not reachable from {SERVING[service][0].__name__}: {silent}"
    names: dict[str, set[str]] = {}
    for family in families:
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in names.items()}


def all_exported() -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    for service in SERVING.keys() - VARIANTS.keys():
        for name, labels in exported(service).items():
            assert name not in out, f"{name} is exported by two services"
            out[name] = labels
    return out


# -- PromQL: the series an expression selects ------------------------------------------------

_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
_AGGREGATIONS |= {"bottomk", "topk", "quantile", "limitk", "limit_ratio"}
#: Words that are never a metric here (an aggregation may put `by (...)` before its parentheses).
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", *_GROUPING, *_AGGREGATIONS}
_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")


def _closing(text: str, start: int, open_: str, close: str) -> int:
    """Index after the bracket closing the one at *start*, skipping strings."""
    depth, i = 0, start
    while i < len(text):
        string = _STRING.match(text, i)
        if string:
            i = string.end()
            continue
        depth += {open_: 1, close: -1}.get(text[i], 0)
        i += 1
        if depth == 0:
            return i
    raise AssertionError(f"unbalanced {open_}{close} in {text!r}")


def selectors(expr: str) -> list[tuple[str, frozenset[str]]]:
    """(metric name, label names matched) of every vector selector in a PromQL expression.

    Enough of PromQL for dashboards and rules: functions and aggregations, ``by (...)``,
    range/subquery brackets, numbers, strings and Grafana ``$variables`` are skipped.

    >>> [(name, sorted(labels)) for name, labels in selectors('sum by (le) (rate(a{x="}", y!~"1"}[1m])) / b')]
    [('a', ['x', 'y']), ('b', [])]
    """
    found: list[tuple[str, frozenset[str]]] = []
    text, i = expr, 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == "$":
            i = re.compile(r"\$(\{[^}]*\}|\w+)").match(text, i).end()  # type: ignore[union-attr]
        elif ch == "[":
            i = _closing(text, i, "[", "]")
        elif ch.isdigit() or (ch == "." and text[i + 1 : i + 2].isdigit()):
            i = re.compile(r"[\d.]+(?:[eE][+-]?\d+)?\w*").match(text, i).end()  # type: ignore[union-attr]
        elif _STRING.match(text, i):
            i = _STRING.match(text, i).end()  # type: ignore[union-attr]
        elif ch == "{":
            raise AssertionError(f"a selector without a metric name in {expr!r}")
        elif ch.isalpha() or ch in "_:":
            name = re.compile(r"[A-Za-z_:][\w:]*").match(text, i).group()  # type: ignore[union-attr]
            i += len(name)
            while i < len(text) and text[i].isspace():
                i += 1
            nxt = text[i : i + 1]
            if name in _GROUPING and nxt == "(":
                i = _closing(text, i, "(", ")")
            elif name in _KEYWORDS or nxt == "(":
                continue  # an operator, or a function / aggregation: its arguments follow
            elif nxt == "{":
                end = _closing(text, i, "{", "}")
                matchers = _STRING.sub('""', text[i + 1 : end - 1])
                labels = re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers)
                found.append((name, frozenset(labels)))
                i = end
            else:
                found.append((name, frozenset()))
        else:
            i += 1
    return found


def _check_expr(expr: str, where: str) -> list[str]:
    """What is wrong with the series *expr* selects (unknown metric, label it does not have)."""
    known = all_exported()
    problems = []
    chosen = selectors(expr)
    if not chosen:
        problems.append(f"{where}: {expr!r} selects no metric")
    for name, labels in chosen:
        if name in BUILTIN_SERIES:
            allowed = BUILTIN_SERIES[name]
            if allowed is not None and not labels <= allowed:
                problems.append(f"{where}: {name} has no label {sorted(labels - allowed)}")
        elif name not in known:
            problems.append(f"{where}: {name} is not exported by any rigwatch service")
        elif not labels <= known[name] | TARGET_LABELS:
            problems.append(f"{where}: {name} has no label {sorted(labels - known[name])}")
    return problems


def test_selectors_find_names_and_labels_and_skip_the_rest() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le) (rate(rigwatch_scorer_batch_seconds_bucket[$__rate_interval])))"
        ' / ignoring(job) up{job=~"rigwatch-.*", instance!="a{b}"} > bool 1e3'
    )
    assert selectors(expr) == [
        ("rigwatch_scorer_batch_seconds_bucket", frozenset()),
        ("up", frozenset({"job", "instance"})),
    ]


def test_exported_names_carry_prometheus_client_suffixes() -> None:
    names = exported("scorer")
    assert {
        "rigwatch_scorer_events_in_total",
        "rigwatch_scorer_dlq_total",
        "rigwatch_scorer_batch_seconds_bucket",
        "rigwatch_scorer_batch_seconds_count",
        "rigwatch_scorer_model_info",
    } <= set(names)
    assert names["rigwatch_scorer_dlq_total"] == {"reason"}
    assert "rigwatch_scorer_events_in" not in names
    assert exported("drift")["rigwatch_drift_feature_psi_ratio"] == {"subject", "feature"}
    assert exported("alerts")["rigwatch_alerts_active"] == {"rule", "severity"}
    assert exported("latency")["rigwatch_health_latency_p99_ms"] == {"subject"}


# -- docker-compose.yml ---------------------------------------------------------------------


def _built() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in _services().items() if "build" in svc}


def test_every_service_has_an_image_or_a_build() -> None:
    for name, service in _services().items():
        assert "image" in service or "build" in service, name
    for name, service in _services().items():
        if "build" not in service:
            assert ":" in service["image"] and not service["image"].endswith(":latest"), (
                f"{name}: pin the image version"
            )


def test_every_rigwatch_process_runs_from_the_one_dockerfile() -> None:
    built = _built()
    assert set(built) == RIGWATCH_SERVICES
    for name, service in built.items():
        build = service["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        assert (REPO / context).resolve() == REPO, name
        assert isinstance(build, str) or build.get("dockerfile", "Dockerfile") == "Dockerfile", name
    assert len({service["image"] for service in built.values()}) == 1
    assert re.search(r'^ENTRYPOINT \["rigwatch"\]$', DOCKERFILE.read_text(), re.MULTILINE)


def _cli_calls() -> Iterator[tuple[str, list[str]]]:
    """Every rigwatch command line the compose file runs: (service, arguments after `rigwatch`)."""
    for name, service in _built().items():
        entrypoint = service.get("entrypoint")
        if entrypoint is None:
            yield name, [str(arg) for arg in service["command"]]
            continue
        assert entrypoint[:2] == ["sh", "-c"], f"{name}: unexpected entrypoint {entrypoint}"
        calls = re.findall(r"\brigwatch\s+([^&|;()]+)", _default(entrypoint[2]))
        assert calls, f"{name}: its entrypoint runs no rigwatch command"
        for call in calls:
            yield name, call.split()


def test_every_command_line_is_one_the_cli_accepts() -> None:
    runner = CliRunner()
    for name, args in _cli_calls():
        result = runner.invoke(cli_app, [*args, "--help"])
        assert result.exit_code == 0, f"{name}: `rigwatch {' '.join(args)}`: {result.output}"


def test_every_rigwatch_env_variable_is_a_real_setting() -> None:
    known = set(EXTRA_ENV)
    classes: list[type[BaseSettings]] = [
        Settings,
        *(settings for _, settings in SERVING.values()),
        *OTHER_SETTINGS.values(),
    ]
    for cls in classes:
        prefix = cls.model_config["env_prefix"]
        known |= {f"{prefix}{field}".upper() for field in cls.model_fields}
    for name, service in _built().items():
        unknown = {k for k in _env(service) if k.startswith("RIGWATCH_")} - known
        assert not unknown, (
            f"{name}: {sorted(unknown)} are not rigwatch settings (typos are ignored silently)"
        )


def test_every_rigwatch_service_finds_kafka_and_redis_by_environment() -> None:
    services = _services()
    kafka_env = _env(services["kafka"])
    advertised = kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    for name, service in _built().items():
        env = _env(service)
        bootstrap, redis_url = env.get("RIGWATCH_BOOTSTRAP"), env.get("RIGWATCH_REDIS_URL")
        assert bootstrap and redis_url, f"{name}: RIGWATCH_BOOTSTRAP and RIGWATCH_REDIS_URL must be set"
        host, _, port = bootstrap.partition(":")
        assert host == "kafka" and any(a.endswith(f"://{host}:{port}") for a in advertised), (
            f"{name}: {bootstrap} is not a listener Kafka advertises ({advertised})"
        )
        url = urlsplit(redis_url)
        assert url.scheme == "redis" and url.hostname == "redis" and (url.port or 6379) == 6379, name
        assert env.get("RIGWATCH_MODEL_DIR", "").startswith("/models/"), name
        assert any(str(v).split(":")[1] == "/models" for v in service.get("volumes", [])), (
            f"{name}: the model package volume is not mounted"
        )


def test_the_model_store_is_on_the_models_volume_and_setup_creates_the_deployment() -> None:
    for name, service in _built().items():
        assert _env(service).get("RIGWATCH_MODEL_STORE", "").startswith("/models/"), name
    setup = [args for name, args in _cli_calls() if name == "setup"]
    assert ["deploy", "create", "cooler", "/models/cooler", "--exist-ok", "--as", "setup"] in setup
    # The package exists before it is registered: training comes first.
    assert [args[0] for args in setup] == ["stack", "train", "deploy"]


def test_serving_services_expose_metrics_on_the_port_their_settings_and_healthcheck_name() -> None:
    services = _services()
    for name, (_, settings_cls) in SERVING.items():
        service = services[name]
        prefix = settings_cls.model_config["env_prefix"]
        env = _env(service)
        assert service["command"][0] == VARIANTS.get(name, name)
        port = env[f"{prefix}METRICS_PORT"]
        assert int(port) == settings_cls.model_fields["metrics_port"].default, (
            f"{name}: port differs from the documented default"
        )
        assert env[f"{prefix}METRICS_HOST"] == "0.0.0.0", f"{name}: Prometheus could not reach loopback"
        test = service["healthcheck"]["test"]
        assert test[0] in {"CMD", "CMD-SHELL"}
        assert f"http://127.0.0.1:{port}/metrics" in " ".join(test), f"{name}: healthcheck on another port"
        assert "ports" not in service, f"{name}: no host port needed (Prometheus is on the compose network)"


def test_everything_that_serves_has_a_healthcheck() -> None:
    for name, service in _services().items():
        serves = name in SERVING or "ports" in service
        if not serves:
            continue
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name} serves but has no healthcheck"
        assert check["test"][0] in {"CMD", "CMD-SHELL"} and len(check["test"]) > 1, name
        for key in ("interval", "timeout", "start_period"):
            assert _duration_s(check[key]) > 0, f"{name}: healthcheck {key}"
        assert int(check["retries"]) >= 3, name
    kafka = " ".join(_services()["kafka"]["healthcheck"]["test"])
    assert "localhost:9092" in kafka, "the Kafka healthcheck asks the listener the services use"


def test_depends_on_targets_exist_with_valid_conditions_and_no_cycle() -> None:
    services = _services()
    graph: dict[str, set[str]] = {}
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        graph[name] = set(depends)
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = spec.get("condition", "service_started")
            assert condition in DEPENDS_CONDITIONS, f"{name} -> {target}: {condition}"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy"
            if condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{target} must run once"
    done: set[str] = set()
    while len(done) < len(graph):
        ready = {n for n, deps in graph.items() if n not in done and deps <= done}
        assert ready, f"depends_on cycle among {sorted(set(graph) - done)}"
        done |= ready
    for name in RIGWATCH_SERVICES - {"setup"}:
        depends = services[name]["depends_on"]
        assert depends["setup"]["condition"] == "service_completed_successfully", name
        assert depends["kafka"]["condition"] == depends["redis"]["condition"] == "service_healthy", name
    for target in ("kafka", "redis"):
        assert services["setup"]["depends_on"][target]["condition"] == "service_healthy"


def test_scorers_scale_against_enough_partitions() -> None:
    services = _services()
    scorer = services["scorer"]
    assert "ports" not in scorer and "container_name" not in scorer, "`--scale scorer=N` would collide"
    replicas = int(scorer.get("deploy", {}).get("replicas", 1))
    partitions = [
        int(args[args.index("--partitions") + 1])
        for name, args in _cli_calls()
        if name == "setup" and args[:2] == ["stack", "up"]
    ]
    assert partitions, "setup does not create the topics"
    assert partitions[0] >= max(replicas, 4), "too few partitions for the scorers to share"
    assert _env(services["kafka"]).get("KAFKA_AUTO_CREATE_TOPICS_ENABLE") == "false"


def test_bind_mounts_exist() -> None:
    for name, service in _services().items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: {source} is missing"


def _mount_target(service: str, source: Path) -> str:
    for volume in _services()[service].get("volumes", []):
        src, target, *_ = str(volume).split(":")
        if src.startswith(".") and (REPO / src).resolve() == source.resolve():
            return target
    raise AssertionError(f"{service} does not mount {source.relative_to(REPO)}")


# -- Prometheus -----------------------------------------------------------------------------


def _scrape_jobs() -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in _load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]}


def test_prometheus_scrapes_every_serving_service_on_its_metrics_port() -> None:
    services = _services()
    jobs = _scrape_jobs()
    for name, (_, settings_cls) in SERVING.items():
        job = jobs.get(f"rigwatch-{name}")
        assert job, f"no scrape job for {name}"
        port = int(_env(services[name])[f"{settings_cls.model_config['env_prefix']}METRICS_PORT"])
        # DNS service discovery: every replica of a scaled service is a target of its own.
        (sd,) = job["dns_sd_configs"]
        assert sd["names"] == [name] and sd["type"] == "A" and int(sd["port"]) == port, name
    for job in jobs.values():
        for sd in job.get("dns_sd_configs", []):
            assert set(sd["names"]) <= set(services), job["job_name"]


def test_prometheus_loads_the_rules_file_mounted_beside_its_config() -> None:
    config = _load_yaml(PROMETHEUS_CONFIG)
    assert config["rule_files"] == ["rules.yml"]
    assert (PROMETHEUS_DIR / "rules.yml").exists()
    config_target = _mount_target("prometheus", PROMETHEUS_CONFIG)
    rules_target = _mount_target("prometheus", PROMETHEUS_RULES)
    assert Path(rules_target) == Path(config_target).parent / "rules.yml"


def _alert_rules() -> list[dict[str, Any]]:
    groups = _load_yaml(PROMETHEUS_RULES)["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_alert_has_expr_for_and_a_severity_and_names_exported_metrics() -> None:
    rules = _alert_rules()
    assert rules
    problems = []
    for rule in rules:
        assert "alert" in rule, f"recording rules are not expected here: {rule}"
        where = f"rule {rule['alert']}"
        assert rule.get("expr") and "for" in rule, where
        _duration_s(rule["for"])
        _duration_s(rule.get("keep_firing_for", "0s"))
        assert rule["labels"]["severity"] in SEVERITIES, where
        assert rule.get("annotations", {}).get("summary"), where
        problems += _check_expr(rule["expr"], where)
    assert not problems, "\n".join(problems)


def _window_gauge(kind: str, metric: str) -> str:
    """The gauge a window metric lands in: feed the service's metrics one window, see which moved."""
    value = 0.123456
    item = metric.removesuffix(".*")
    wildcard = metric.endswith(".*")
    values = {f"{item}.psa_bar" if wildcard else metric: value}
    if kind == "drift" and item in {"psi", "psi_ratio"}:
        # The drift gauges take a feature's PSI and ratio together.
        values[f"{'psi' if item == 'psi_ratio' else 'psi_ratio'}.psa_bar"] = 0.0
    record = {"subject": "v1", "window_end": 30_000, "metrics": values}
    registry = CollectorRegistry()
    if kind == "drift":
        DriftMetrics(registry).observe_window(record, ("psa_bar",))
    elif kind == "health":
        LatencyMetrics(registry).windows.observe(record)
    elif kind == "comparison":
        AccuracyMetrics(registry).comparisons.observe(record)
    else:
        AccuracyMetrics(registry).windows.observe(record)
    moved = {
        sample.name
        for family in registry.collect()
        for sample in family.samples
        if sample.value == value and family.type == "gauge"
    }
    assert len(moved) <= 1, moved
    return moved.pop() if moved else ""


_RULE_EXPR = re.compile(
    r"^(?P<gauge>\w+)(?:\{(?P<matchers>[^}]*)\})?\s*(?P<op>[<>])\s*(?P<threshold>-?[\d.]+)$"
)


def _prometheus_alerts_of(rule: Rule) -> dict[str, dict[str, Any]]:
    found = [r for r in _alert_rules() if r["labels"].get("rule") == rule.name]
    by_severity = {r["labels"]["severity"]: r for r in found}
    assert len(by_severity) == len(found), f"{rule.name}: two Prometheus alerts of one severity"
    return by_severity


def test_alert_rules_are_equivalent_to_the_default_rigwatch_rules() -> None:
    rigwatch_rules = load_rules(DEFAULT_RULES).rules
    for rule in rigwatch_rules:
        if rule.name in NOT_EXPORTED:
            assert not _prometheus_alerts_of(rule)
            continue
        gauge = _window_gauge(rule.kind, rule.metric)
        assert gauge, f"{rule.name}: {rule.kind} metric {rule.metric} is exported by no gauge"
        alerts = _prometheus_alerts_of(rule)
        expected = {"warning": rule.warning} | ({"critical": rule.critical} if rule.critical else {})
        assert set(alerts) == set(expected), f"{rule.name}: severities {sorted(alerts)}"
        window_s = WINDOW_MS[rule.kind] / 1000
        for severity, threshold in expected.items():
            alert = alerts[severity]
            where = f"{alert['alert']} ({severity})"
            match = _RULE_EXPR.match(alert["expr"].strip())
            assert match, f"{where}: expected `gauge{{...}} > threshold`, got {alert['expr']!r}"
            assert match["gauge"] == gauge, where
            assert match["op"] == {"above": ">", "below": "<"}[rule.direction], where
            assert float(match["threshold"]) == threshold, where
            matchers = (match["matchers"] or "").replace(" ", "")
            assert matchers == {"model": 'subject!~"rig:.*"', "any": ""}[rule.subjects], where
            windows = (rule.for_critical or rule.for_windows) if severity == "critical" else rule.for_windows
            assert _duration_s(alert["for"]) == (windows - 1) * window_s, f"{where}: for"
            assert _duration_s(alert.get("keep_firing_for")) == (rule.clear_for - 1) * window_s, (
                f"{where}: keep_firing_for"
            )
    names = {rule.name for rule in rigwatch_rules}
    for alert in _alert_rules():
        if "rule" in alert["labels"]:
            assert alert["labels"]["rule"] in names, f"{alert['alert']}: no rigwatch rule of that name"


def test_rules_left_out_still_have_no_gauge() -> None:
    for rule, fragment in NOT_EXPORTED.items():
        names = [name for name in all_exported() if fragment in name]
        assert not names, f"{names} are exported now: add the {rule} rule to {PROMETHEUS_RULES.name}"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.skip(
            "promtool is not on PATH (it ships with Prometheus): the Prometheus files are not validated"
        )
    return subprocess.run([exe, *args], capture_output=True, text=True, check=False, timeout=60)


@pytest.mark.parametrize(
    "args",
    [
        ("check", "config", str(PROMETHEUS_CONFIG)),
        ("check", "rules", str(PROMETHEUS_RULES)),
        ("test", "rules", str(PROMETHEUS_RULE_TESTS)),
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool_accepts_the_prometheus_files(args: tuple[str, ...]) -> None:
    done = _promtool(*args)
    assert done.returncode == 0, done.stdout + done.stderr


# -- Grafana --------------------------------------------------------------------------------


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target."""
    variables = [v for v in dashboard.get("templating", {}).get("list", []) if v.get("type") == "query"]
    assert not variables, f"{dashboard['uid']}: query variables are not checked here yet"
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"{dashboard['uid']} / {panel['title']} / {target['refId']}", target["expr"]


def _dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_dashboards_parse_with_unique_uids_and_panel_ids() -> None:
    assert DASHBOARDS
    uids = [_dashboard(path)["uid"] for path in DASHBOARDS]
    assert len(set(uids)) == len(uids)
    for path in DASHBOARDS:
        dashboard = _dashboard(path)
        ids = [panel["id"] for panel in _panels(dashboard["panels"])]
        assert len(set(ids)) == len(ids), f"{path.name}: duplicate panel ids"
        for panel in _panels(dashboard["panels"]):
            if panel["type"] != "row":
                assert panel.get("targets") and all(t.get("expr") for t in panel["targets"]), panel["title"]


def test_every_dashboard_query_names_metrics_the_services_export() -> None:
    problems = []
    for path in DASHBOARDS:
        for where, expr in _queries(_dashboard(path)):
            problems += _check_expr(expr, where)
    assert not problems, "\n".join(problems)


def test_the_overview_dashboard_shows_what_operators_watch() -> None:
    used = {
        name for path in DASHBOARDS for _, expr in _queries(_dashboard(path)) for name, _ in selectors(expr)
    }
    wanted = {
        "rigwatch_scorer_events_in_total",  # throughput
        "rigwatch_scorer_predictions_out_total",
        "rigwatch_health_latency_p50_ms",  # latency percentiles
        "rigwatch_health_latency_p95_ms",
        "rigwatch_health_latency_p99_ms",
        "rigwatch_scorer_batch_seconds_bucket",
        "rigwatch_drift_feature_psi_ratio",  # drift per feature
        "rigwatch_drift_score",
        "rigwatch_drift_prediction_drift",
        "rigwatch_accuracy",  # accuracy and estimate
        "rigwatch_accuracy_estimated",
        "rigwatch_accuracy_label_coverage",
        "rigwatch_alerts_active",  # active alerts
        "rigwatch_scorer_dlq_total",  # DLQ rate
    }
    assert wanted <= used, sorted(wanted - used)


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboards() -> None:
    (datasource,) = _load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["type"] == "prometheus"
    url = urlsplit(datasource["url"])
    assert url.hostname == "prometheus" and url.port == 9090
    assert any(str(p).endswith(":9090") for p in _services()["prometheus"]["ports"])
    for path in DASHBOARDS:
        for panel in _panels(_dashboard(path)["panels"]):
            for source in [panel.get("datasource"), *(t.get("datasource") for t in panel.get("targets", []))]:
                if source is not None:
                    assert source == {"type": "prometheus", "uid": datasource["uid"]}, panel["title"]
    (provider,) = _load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "rigwatch.yml")["providers"]
    assert provider["options"]["path"] == _mount_target("grafana", GRAFANA_DIR / "dashboards")
    assert _mount_target("grafana", GRAFANA_DIR / "provisioning") == "/etc/grafana/provisioning"
    home = _env(_services()["grafana"]).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert Path(home).parent == Path(provider["options"]["path"])
        assert (GRAFANA_DIR / "dashboards" / Path(home).name).exists()


def _named_volumes(service: Mapping[str, Any]) -> dict[str, str]:
    """Named volumes a service mounts: target -> volume (bind mounts left out)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        if not source.startswith((".", "/", "~")):
            mounts[target] = source
    return mounts


def test_every_named_volume_is_declared() -> None:
    declared = set(_compose().get("volumes") or {})
    for name, service in _services().items():
        undeclared = set(_named_volumes(service).values()) - declared
        assert not undeclared, f"{name}: volumes {sorted(undeclared)} are not declared at the top level"


def test_redis_keeps_its_state_in_an_append_only_file_on_a_named_volume() -> None:
    redis = _services()["redis"]
    command = [str(arg) for arg in redis["command"]]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options.get("--appendfsync", "everysec") in {"everysec", "always"}
    # The official image's working folder, where the append-only file is written.
    assert options.get("--dir", "/data") == "/data"
    assert "/data" in _named_volumes(redis), "the append-only file would die with the container"
    assert redis.get("restart") in {"always", "unless-stopped", "on-failure"}


def test_kafka_keeps_its_log_on_a_named_volume_like_redis_keeps_the_offsets_into_it() -> None:
    kafka = _services()["kafka"]
    log_dirs = _env(kafka)["KAFKA_LOG_DIRS"].split(",")
    mounted = _named_volumes(kafka)
    assert all(folder in mounted for folder in log_dirs), f"{log_dirs} not all on named volumes {mounted}"
