"""The dashboards and alert rules against what running services serve at /metrics.

The unit test (tests/unit/test_deploy.py) checks every query against the metrics classes;
this one starts the five services as processes, as docker-compose does, and checks that
their real endpoints announce exactly what those classes define, and every metric name the
Grafana dashboards and the Prometheus rules use.
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rigwatch.runtime.loop import RuntimeMetrics
from services.accuracy.metrics import AccuracyMetrics
from services.alerts.metrics import AlertsMetrics
from services.drift.metrics import DriftMetrics
from services.latency.metrics import LatencyMetrics
from services.scorer.metrics import ScorerMetrics

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))
RULES = REPO / "deploy" / "prometheus" / "rules.yml"

#: CLI command -> (metrics class, environment prefix of its settings).
SERVICES = {
    "scorer": (ScorerMetrics, "RIGWATCH_SCORER_"),
    "drift": (DriftMetrics, "RIGWATCH_DRIFT_"),
    "latency": (LatencyMetrics, "RIGWATCH_LATENCY_"),
    "accuracy": (AccuracyMetrics, "RIGWATCH_ACCURACY_"),
    "alerts": (AlertsMetrics, "RIGWATCH_ALERTS_"),
}
#: Sample-name suffixes prometheus_client gives each family type (``_created`` left out:
#: it only shows once a labelled metric has a child).
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "info": ("_info",),
    "gauge": ("",),
    "unknown": ("",),
}


def _names(exposition: str) -> set[str]:
    """Sample names an exposition announces, labelled metrics without any sample yet included."""
    return {
        family.name + suffix
        for family in text_string_to_metric_families(exposition)
        if not family.name.endswith("_created")
        for suffix in SUFFIXES[family.type]
    }


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # inside rows


def _used() -> set[str]:
    """rigwatch metric names the dashboards' queries and the alert rules' expressions use."""
    exprs = [
        target["expr"]
        for path in DASHBOARDS
        for panel in _panels(json.loads(path.read_text())["panels"])
        for target in panel.get("targets", [])
    ]
    exprs += re.findall(r"^\s*expr:\s*(.+)$", RULES.read_text(), re.MULTILINE)
    return {name for expr in exprs for name in re.findall(r"\brigwatch_\w+", expr)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def test_running_services_serve_every_metric_the_dashboards_and_rules_use(settings, spawn, tmp_path) -> None:
    run = uuid.uuid4().hex[:8]
    ports = {name: _free_port() for name in SERVICES}
    procs = {
        name: spawn(
            [name],
            settings.to_env(**{f"{prefix}METRICS_PORT": str(ports[name]), f"{prefix}GROUP": f"{name}-{run}"}),
        )
        for name, (_, prefix) in SERVICES.items()
    }
    scraped: dict[str, set[str]] = {}
    deadline = time.monotonic() + 120
    while len(scraped) < len(SERVICES) and time.monotonic() < deadline:
        for name, proc in procs.items():
            if name in scraped:
                continue
            if proc.poll() is not None:
                logs = "\n".join(p.read_text()[-2000:] for p in tmp_path.glob(f"{name}-*.log"))
                pytest.fail(f"rigwatch {name} exited with {proc.returncode}:\n{logs}")
            text = _scrape(ports[name])
            if text is not None:
                scraped[name] = _names(text)
        time.sleep(0.2)
    assert set(scraped) == set(SERVICES), f"no /metrics from {sorted(set(SERVICES) - set(scraped))}"

    for name, (metrics_class, _) in SERVICES.items():
        registry = CollectorRegistry()
        metrics_class(registry)
        RuntimeMetrics(registry, name)  # every service runs on the runtime
        assert scraped[name] == _names(generate_latest(registry).decode()), (
            f"{name} serves other metrics than {metrics_class.__name__} and the runtime define"
        )
    served = set().union(*scraped.values())
    used = _used()
    assert {"rigwatch_scorer_predictions_out_total", "rigwatch_scorer_dlq_total"} <= used
    assert used <= served, f"used but served by no running service: {sorted(used - served)}"
