"""Alerts on real windows: pump -> scorer -> drift (+ accuracy) -> alerts -> rig.alerts.

Event time is simulated (readings 100 ms apart, 300 per 30 s drift window).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
from streams import assigned, collect

from loadgen.pump import PumpOptions, run_pump
from loadgen.readings import Shift
from rigwatch.kafka import StopFlag
from rigwatch.model import ModelPackage
from rigwatch.schemas import Codecs
from services.alerts.rules import DEFAULT_RULES

pytestmark = pytest.mark.e2e

START_MS = 1_700_000_010_000  # a multiple of 30 s: drift window k starts at START_MS + k * 30 s
INTERVAL_MS = 100


def _services(spawn, settings, name: str, env: dict[str, str] | None = None, accuracy: bool = False):
    assigned(
        spawn(
            ["scorer"],
            settings.to_env(RIGWATCH_SCORER_GROUP=f"scorer-{name}", RIGWATCH_SCORER_METRICS_PORT="-1"),
        )
    )
    spawn(
        ["drift"],
        settings.to_env(
            RIGWATCH_DRIFT_GROUP=f"drift-{name}",
            RIGWATCH_DRIFT_METRICS_PORT="-1",
            RIGWATCH_DRIFT_IDLE_MS="2000",
        ),
    )
    if accuracy:
        spawn(
            ["accuracy"],
            settings.to_env(
                RIGWATCH_ACCURACY_GROUP=f"accuracy-{name}",
                RIGWATCH_ACCURACY_METRICS_PORT="-1",
                RIGWATCH_ACCURACY_IDLE_MS="2000",
            ),
        )
    return _alerts(spawn, settings, name, env)


def _alerts(spawn, settings, name: str, env: dict[str, str] | None = None):
    return spawn(
        ["alerts"],
        settings.to_env(
            RIGWATCH_ALERTS_GROUP=f"alerts-{name}", RIGWATCH_ALERTS_METRICS_PORT="0", **(env or {})
        ),
    )


def _pump(settings, dataset, *, count: int, first: int = 0, rate: float = 0, **options):
    """Readings *first* .. *first + count* of one simulated timeline."""
    opts = PumpOptions(
        rate=rate,
        count=count,
        rigs=2,
        seed=first,
        event_interval_ms=INTERVAL_MS,
        event_start_ms=START_MS + first * INTERVAL_MS,
        **options,
    )
    run_pump(settings, dataset, opts, StopFlag())


def _decoded(seen, codec) -> list[dict]:
    return [codec.decode(m.value()) for m in seen]


def _windows_done(settings, kind: str, subject: str, n: int, timeout: float = 180) -> None:
    codec = Codecs.load().metric_window

    def done(seen) -> bool:
        ends = {
            w["window_end"] for w in _decoded(seen, codec) if w["kind"] == kind and w["subject"] == subject
        }
        return len(ends) >= n

    collect(settings.bootstrap, [settings.topics.metrics], done, timeout=timeout)


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_feature_offset_fires_once_survives_a_restart_and_resolves_once(
    settings, spawn, real_dataset, tmp_path
):
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rules = tmp_path / "rules.toml"
    rules.write_text(
        DEFAULT_RULES.read_text() + f'\n[webhook]\nurl = "http://127.0.0.1:{server.server_port}/hook"\n'
    )
    alerts = _services(spawn, settings, "a", {"RIGWATCH_ALERTS_RULES_FILE": str(rules)})
    version = ModelPackage.load(settings.model_dir).version
    alert_id = f"feature_drift/{version}/tsb_temp"
    codec = Codecs.load().alert

    def mine(seen) -> list[dict]:
        return [a for a in _decoded(seen, codec) if a["alert_id"] == alert_id]

    # Windows 0-9 clean, 10-19 with +2 degC on tsb_temp (paced: the incident lasts a while),
    # then 20-29 clean again.
    _pump(settings, real_dataset, count=3000)
    _windows_done(settings, "drift", version, 10)
    incident = threading.Thread(
        target=_pump,
        args=(settings, real_dataset),
        kwargs={"count": 3000, "first": 3000, "rate": 100, "shifts": (Shift("tsb_temp", 2.0, 0),)},
    )
    incident.start()
    firing = mine(collect(settings.bootstrap, [settings.topics.alerts], lambda s: mine(s) != [], timeout=180))
    assert [a["state"] for a in firing] == ["firing"]

    # Mid-incident: the alerts service dies hard and comes back.
    alerts.kill()  # on purpose: the spawn fixture allows it
    alerts.wait()
    assert incident.is_alive(), "the incident should still be going on when the service dies"
    listed = subprocess.run(
        [sys.executable, "-m", "rigwatch", "alerts", "list"],
        env=settings.to_env(RIGWATCH_ALERTS_GROUP="alerts-a"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert alert_id in listed.stdout
    _alerts(spawn, settings, "a", {"RIGWATCH_ALERTS_RULES_FILE": str(rules)})
    incident.join()
    _pump(settings, real_dataset, count=3000, first=6000)

    seen = mine(
        collect(
            settings.bootstrap, [settings.topics.alerts], lambda s: len(mine(s)) >= 2, timeout=180, settle=3
        )
    )
    assert [(a["state"], a["severity"]) for a in seen] == [("firing", "critical"), ("resolved", "ok")]
    fired, resolved = seen
    # Critical in the first shifted window: fires at once (for_critical = 1); resolves after
    # two clean windows (clear_for = 2).
    assert fired["first_seen"] == fired["window_end"] == START_MS + 11 * 30_000
    assert resolved["window_end"] == START_MS + 22 * 30_000
    assert fired["message"].startswith("tsb_temp drifted: PSI ") and f"(model {version})" in fired["message"]
    assert fired["value"] > fired["threshold"] == 2.0
    # The input the model ignores (importance 0) raised no drift-score or prediction alert.
    _windows_done(settings, "drift", version, 30)
    everything = _decoded(
        collect(settings.bootstrap, [settings.topics.alerts], lambda s: True, settle=3), codec
    )
    assert not [a for a in everything if a["rule"] in ("drift_score", "prediction_drift")]
    assert {a["alert_id"] for a in _Hook.received} >= {alert_id}


def test_a_stationary_replay_over_30_windows_raises_no_alert(settings, spawn, real_dataset):
    _services(spawn, settings, "b", accuracy=True)
    _pump(settings, real_dataset, count=9000, label_delay=5.0, label_coverage=1.0)
    version = ModelPackage.load(settings.model_dir).version
    _windows_done(settings, "drift", version, 30)
    _windows_done(settings, "accuracy", version, 30)
    alerts = collect(settings.bootstrap, [settings.topics.alerts], lambda s: True, settle=5)
    assert [Codecs.load().alert.decode(m.value()) for m in alerts] == []
