"""``make demo``: the whole system on one machine, with a live view of predictions, windows and alerts.

Scorer, drift, latency, accuracy and alerts run as processes beside the pump;
after a minute of clean data the pump adds +2 degC to ``tsb_temp`` (a sensor
drift) so an alert fires and, when the scenario ends, resolves.
"""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from rigwatch.config import Settings
from rigwatch.kafka import StopFlag, TopicReader
from rigwatch.schemas import Codecs
from rigwatch.stack import running_stack

__all__ = ["run_demo"]


def _service(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "rigwatch", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )


def _stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


#: Demo windows: shorter than the services' defaults so something happens within a minute.
_DEMO_ENV = {
    "RIGWATCH_DRIFT_WINDOW_MS": "10000",
    "RIGWATCH_DRIFT_LATENESS_MS": "2000",
    "RIGWATCH_ACCURACY_WINDOW_MS": "10000",
    "RIGWATCH_ACCURACY_LATENESS_MS": "2000",
    "RIGWATCH_LATENCY_WINDOW_MS": "5000",
}
#: The scenario: seconds of clean data, then seconds of drift on one sensor.
_CLEAN_S, _DRIFT_S = 60, 60


def run_demo(
    settings: Settings, *, data: Path | None, rate: float, duration: float | None, scenario: bool = True
) -> None:
    """Train when no model exists, start what is missing, stream, and clean up on exit."""
    from rigwatch.model import train_and_write

    console = Console()
    if not (settings.model_dir / "model.txt").exists():
        console.rule("training the model (first run only)")
        train_and_write(data, settings.model_dir, console=console)
    with running_stack(settings) as ends:
        console.print(f"broker {ends.bootstrap}  redis {ends.redis_url}  logs in {settings.run_dir}/")
        bound = settings.model_copy(update={"bootstrap": ends.bootstrap, "redis_url": ends.redis_url})
        env = bound.to_env(**_DEMO_ENV)
        data_args = ["--data", str(data)] if data else []
        start, end = int(rate * _CLEAN_S), int(rate * (_CLEAN_S + _DRIFT_S))
        shift = ["--shift", f"tsb_temp=+2@{start}-{end}"] if scenario else []
        if scenario:
            console.print(
                f"scenario: +2 degC on tsb_temp from reading {start} to {end} "
                f"(~{_CLEAN_S} s to {_CLEAN_S + _DRIFT_S} s): watch the alerts"
            )
        since_ms = int(time.time() * 1000)
        services = [
            _service([name, "--metrics-port", "0"], settings.run_dir / f"{name}.log", env)
            for name in ("scorer", "drift", "latency", "accuracy", "alerts")
        ]
        services.append(
            _service(["pump", "--rate", str(rate), *data_args, *shift], settings.run_dir / "pump.log", env)
        )
        stop = StopFlag().install()
        try:
            _watch(console, settings, ends.bootstrap, since_ms, stop, duration, services)
        finally:
            console.print("stopping the pump and the services ...")
            for proc in reversed(services):
                _stop(proc)
    console.print("demo: everything stopped")


class _View:
    """Counts, the last predictions (with their true label once it arrives), windows and alerts."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.sent = self.predicted = self.dead = self.right = self.labelled = 0
        self.labels: dict[str, str] = {}
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=8)
        self.windows: dict[str, dict[str, Any]] = {}  # the last window of each kind (model subjects)
        self.alerts: collections.deque[dict[str, Any]] = collections.deque(maxlen=6)

    def remember(self, event_id: str, label: str) -> None:
        self.labels[event_id] = label
        if len(self.labels) > 10_000:  # only the last few rows are shown
            del self.labels[next(iter(self.labels))]

    def render(self) -> Group:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        summary = Text(
            f"sent {self.sent}  predictions {self.predicted} ({self.predicted / elapsed:.0f}/s)"
            f"  dlq {self.dead}  labelled {self.labelled}"
            f"  accuracy {self.right / self.labelled if self.labelled else float('nan'):.3f}"
            f"  elapsed {elapsed:.0f} s   (Ctrl-C stops)"
        )
        table = Table("rig", "cycle", "event → scored", "predicted", "confidence", "true", "model")
        for p in reversed(self.recent):
            true = self.labels.get(p["event_id"], "…")
            mark = "" if true == "…" else (" ✓" if true == p["predicted_label"] else " ✗")
            table.add_row(
                p["rig_id"],
                str(p["cycle"]),
                f"{p['scored_time'] - p['event_time']} ms",
                f"{p['predicted_label']} %",
                f"{p['confidence']:.4f}",
                true + mark,
                p["model_version"],
            )
        return Group(summary, table, self._windows_line(), self._alerts_table())

    def _windows_line(self) -> Text:
        def pick(kind: str, *names: str) -> str:
            m = self.windows.get(kind, {}).get("metrics", {})
            return "  ".join(f"{n} {m[n]:.3g}" for n in names if n in m) or "…"

        return Text(
            f"health: {pick('health', 'rate_per_s', 'latency_ms.p99', 'staleness_s', 'data_error_rate')}\n"
            f"drift: {pick('drift', 'drift_score', 'max_psi_ratio', 'drifted_features')}\n"
            f"accuracy: {pick('accuracy', 'accuracy', 'estimated_accuracy', 'coverage')}"
        )

    def _alerts_table(self) -> Table:
        table = Table("alert", "state", "severity", "message", title="rig.alerts (latest last)")
        for a in self.alerts:
            colour = {"critical": "red", "warning": "dark_orange"}.get(a["severity"], "green")
            table.add_row(a["alert_id"], a["state"], f"[{colour}]{a['severity']}[/]", a["message"])
        return table


def _watch(
    console: Console,
    settings: Settings,
    bootstrap: str,
    since_ms: int,
    stop: StopFlag,
    duration: float | None,
    services: list[subprocess.Popen[bytes]],
) -> None:
    topics, codecs, view = settings.topics, Codecs.load(), _View()
    predicted: dict[str, str] = {}
    watched = [
        topics.sensor_readings,
        topics.predictions,
        topics.actuals,
        topics.dlq,
        topics.metrics,
        topics.alerts,
    ]
    # Only this run's records: the stack may hold older ones.
    with (
        TopicReader(bootstrap, watched, since_ms=since_ms) as reader,
        Live(console=console, refresh_per_second=4) as live,
    ):
        while not stop:
            for msg in reader.poll(0.2):
                topic, value = msg.topic(), msg.value()
                if topic == topics.dlq:
                    view.dead += 1
                elif topic == topics.metrics:
                    w = codecs.metric_window.decode(value)
                    if not w["subject"].startswith("rig:"):
                        view.windows[w["kind"]] = w
                elif topic == topics.alerts:
                    view.alerts.append(codecs.alert.decode(value))
                elif topic == topics.sensor_readings:
                    view.sent += 1
                elif topic == topics.predictions:
                    p = codecs.prediction.decode(value)
                    view.predicted += 1
                    view.recent.append(p)
                    predicted[p["event_id"]] = p["predicted_label"]
                else:
                    a = codecs.actual.decode(value)
                    if a["event_id"] in predicted:
                        view.remember(a["event_id"], a["label"])
                        view.labelled += 1
                        view.right += predicted.pop(a["event_id"]) == a["label"]
            live.update(view.render())
            if duration is not None and time.monotonic() - view.started > duration:
                return
            if any(proc.poll() is not None for proc in services):
                console.print(f"[red]a service stopped on its own; see {settings.run_dir}/*.log")
                return
