"""``make demo``: the whole system on one machine, with a live view of predictions, windows and alerts.

Scorer, drift, latency, accuracy and alerts run as processes beside the pump,
which plays the scenario timeline of :data:`loadgen.scenarios.DEMO_TIMELINE`
(normal, a temperature sensor offset, recovery, bad records, a cooler
degrading toward failure), so alerts fire and resolve within minutes. Then
the demo acts as an operator would: a retrained model version (another seed)
is registered, promoted while readings flow and rolled back; the view shows
the version of every prediction and the audit trail as it grows. Last, a
sensor is recalibrated under the champion (confidently wrong: the accuracy
alert fires), a challenger retrained on recalibrated data runs in shadow, and
the promotion gate promotes it once the paired comparison says it is better.
"""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from loadgen.scenarios import Phase, demo_timeline
from rigwatch.config import Settings
from rigwatch.exceptions import RigwatchError
from rigwatch.harness import free_port
from rigwatch.kafka import StopFlag, TopicReader
from rigwatch.lifecycle.audit import actor
from rigwatch.lifecycle.operations import (
    DEFAULT_DEPLOYMENT,
    ensure_deployment,
    promote,
    registered_version,
    rollback,
    start_challenge,
)
from rigwatch.schemas import Codecs
from rigwatch.stack import running_stack
from rigwatch.windowing import is_segment

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


def run_demo(
    settings: Settings,
    *,
    data: Path | None,
    rate: float,
    duration: float | None,
    scenario: str | None = "timeline",
    event_interval_ms: int | None = None,
) -> None:
    """Train when no model exists, start what is missing, stream, and clean up on exit."""
    from rigwatch.model import train_and_write

    console = Console()
    if not (settings.model_dir / "model.txt").exists():
        console.rule("training the model (first run only)")
        train_and_write(data, settings.model_dir, console=console)
    with running_stack(settings) as ends:
        # With an external broker (RIGWATCH_BOOTSTRAP) no stack created the folder for the logs.
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        console.print(f"broker {ends.bootstrap}  redis {ends.redis_url}  logs in {settings.run_dir}/")
        bound = settings.model_copy(update={"bootstrap": ends.bootstrap, "redis_url": ends.redis_url})
        # Scorers serve what the deployment names: the trained package, registered in the model
        # store, unless the deployment exists already (a restarted demo keeps a promotion).
        change = ensure_deployment(bound, DEFAULT_DEPLOYMENT, settings.model_dir, actor=actor())
        console.print(f"deployment {DEFAULT_DEPLOYMENT}: champion {change.record['champion']}")
        env = bound.to_env(**_DEMO_ENV)
        data_args = ["--data", str(data)] if data else []
        # Simulated event time: windows pass faster than the wall clock (health windows do not).
        if event_interval_ms is not None:
            data_args += ["--event-interval-ms", str(event_interval_ms)]
        phases, specs = demo_timeline(rate, scenario) if scenario else ([], [])
        scenario_args = [arg for spec in specs for arg in ("--scenario", spec)]
        for phase in phases:
            until = f"{phase.end_s:.0f} s" if phase.end_s is not None else "the end"
            console.print(f"  {phase.start_s:>4.0f} s .. {until}: {phase.name}")
        operator = _Operator(bound, data, console) if any(p.action for p in phases) else None
        since_ms = int(time.time() * 1000)
        services = [
            _service(
                [*name.split(), "--metrics-port", "0"],
                settings.run_dir / f"{name.replace(' --', '-')}.log",
                env,
            )
            for name in ("scorer", "scorer --shadow", "drift", "latency", "accuracy", "alerts", "gate")
        ]
        # The console without tokens: explicitly allowed for a demo on loopback only.
        port = free_port()
        console_args = ["console", "--port", str(port), "--allow-anonymous", "admin"]
        services.append(_service(console_args, settings.run_dir / "console.log", env))
        console.print(f"console: http://127.0.0.1:{port}/ (no token needed: a loopback demo)")
        services.append(
            _service(
                ["pump", "--rate", str(rate), *data_args, *scenario_args], settings.run_dir / "pump.log", env
            )
        )
        stop = StopFlag().install()
        try:
            _watch(console, settings, ends.bootstrap, since_ms, stop, duration, services, phases, operator)
        finally:
            console.print("stopping the pump and the services ...")
            for proc in reversed(services):
                _stop(proc)
    console.print("demo: everything stopped")
    if operator is not None:
        console.print(f"what was done to the deployment: rigwatch audit --deployment {DEFAULT_DEPLOYMENT}")


class _Operator:
    """The demo's deployment steps, with their models trained and registered up front.

    A version retrained with another seed is promoted, then rolled back; a version
    retrained on recalibrated data challenges the champion in shadow, with
    auto-promotion. Each step runs on a thread of its own (the guardrails load and
    score the models) and says how it went in :attr:`said`.
    """

    #: Action -> (reason, comment) in the audit trail.
    WHY: ClassVar[dict[str, tuple[str, str]]] = {
        "promote": ("accuracy", "demo: a version retrained (another seed) after the cooler degradation"),
        "rollback": ("other", "demo: back to the previous champion"),
        "challenge": ("accuracy", "demo: retrained on data after the cool_pwr_pct recalibration"),
    }
    #: Labelled pairs the gate waits for before it acts on a verdict.
    MIN_PAIRS = 200

    def __init__(self, settings: Settings, data: Path | None, console: Console) -> None:
        from rigwatch.data import resolve_data
        from rigwatch.model import train

        self.settings, self.actor = settings, actor()
        self.said: collections.deque[str] = collections.deque(maxlen=4)
        from loadgen.scenarios import recalibrated

        self.dataset = resolve_data(data)
        models = {
            "retrained-model": ("another seed", lambda: train(self.dataset, seed=7)),
            "recalibrated-model": ("on recalibrated data", lambda: train(recalibrated(self.dataset), seed=7)),
        }
        versions = {}
        for folder_name, (what, make) in models.items():
            folder = settings.run_dir / folder_name
            if not (folder / "model.txt").exists():
                console.print(f"training a version retrained {what} for the demo's deployment steps ...")
                make().write(folder)
            versions[folder_name] = registered_version(settings, folder, actor=self.actor)
        self.version, self.challenger = versions["retrained-model"], versions["recalibrated-model"]
        console.print(
            f"registered {self.version} (retrained, another seed: promoted and rolled back later) and"
            f" {self.challenger} (retrained on recalibrated data: the challenger at the end)"
        )

    def start(self, action: str) -> threading.Thread:
        thread = threading.Thread(target=self._run, args=(action,), name=f"demo-{action}", daemon=True)
        thread.start()
        return thread

    def _run(self, action: str) -> None:
        name, (reason, comment) = DEFAULT_DEPLOYMENT, self.WHY[action]
        try:
            if action == "promote":
                change = promote(
                    self.settings, name, self.version, reason=reason, comment=comment, actor=self.actor,
                    eval_data=self.dataset,
                )  # fmt: skip
                checks = ", ".join(f"{r.name} {'ok' if r.passed else 'FAILED'}" for r in change.guardrails)
                self.said.append(f"promoted {change.record['champion']} ({checks})")
            elif action == "challenge":
                change = start_challenge(
                    self.settings, name, self.challenger, mode="shadow", auto_promote=True,
                    min_pairs=self.MIN_PAIRS, reason=reason, comment=comment, actor=self.actor,
                )  # fmt: skip
                self.said.append(
                    f"challenger {self.challenger} in shadow; the gate promotes it once judged better"
                    f" on >= {self.MIN_PAIRS} labelled pairs"
                )
            else:
                change = rollback(self.settings, name, reason=reason, comment=comment, actor=self.actor)
                self.said.append(f"rolled back to {change.record['champion']}")
        except RigwatchError as exc:  # refused: shown, and the demo goes on
            self.said.append(f"{action} refused: {exc}")


class _View:
    """Counts, the last predictions (with their true label once it arrives), windows and alerts."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.sent = self.predicted = self.dead = self.right = self.labelled = 0
        self.labels: dict[str, str] = {}
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=8)
        self.windows: dict[str, dict[str, Any]] = {}  # the last window of each kind (model subjects)
        self.alerts: collections.deque[dict[str, Any]] = collections.deque(maxlen=20)
        self.active: dict[str, dict[str, Any]] = {}  # alert_id -> its firing record
        self.phases: list[Phase] = []
        self.deployment: dict[str, Any] | None = None
        self.audit: collections.deque[dict[str, Any]] = collections.deque(maxlen=4)
        self.operator: _Operator | None = None

    def remember(self, event_id: str, label: str) -> None:
        self.labels[event_id] = label
        if len(self.labels) > 10_000:  # only the last few rows are shown
            del self.labels[next(iter(self.labels))]

    def render(self) -> Group:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        phase = next(
            (p.name for p in self.phases if p.start_s <= elapsed and (p.end_s is None or elapsed < p.end_s)),
            "",
        )
        summary = Text(
            f"sent {self.sent} ({self.sent / elapsed:.0f}/s)  predictions {self.predicted}"
            f" ({self.predicted / elapsed:.0f}/s)"
            f"  dlq {self.dead}  labelled {self.labelled}"
            f"  accuracy {self.right / self.labelled if self.labelled else float('nan'):.3f}"
            f"  elapsed {elapsed:.0f} s   (Ctrl-C stops)" + (f"\nscenario phase: {phase}" if phase else "")
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
        return Group(summary, table, self._windows_line(), self._deployment_lines(), self._alerts_table())

    def _deployment_lines(self) -> Text:
        d = self.deployment
        lines = ["deployment: …"]
        if d:
            lines = [
                f"deployment {d['deployment']}: champion {d['champion']}, previous {d['previous_champion']}"
            ]
        for e in self.audit:
            when = time.strftime("%H:%M:%S", time.localtime(e["time"] / 1000))
            lines.append(
                f"  audit {when} {e['action']} {e['model_version'] or ''} by {e['actor']}"
                + (f" ({e['reason']})" if e["reason"] else "")
            )
        if self.operator is not None:
            lines += [f"  demo: {line}" for line in self.operator.said]
        return Text("\n".join(lines))

    def _windows_line(self) -> Text:
        def pick(kind: str, *names: str) -> str:
            m = self.windows.get(kind, {}).get("metrics", {})
            return "  ".join(f"{n} {m[n]:.3g}" for n in names if n in m) or "…"

        lines = [
            f"health: {pick('health', 'rate_per_s', 'latency_ms.p99', 'staleness_s', 'data_error_rate')}",
            f"accuracy: {pick('accuracy', 'accuracy', 'estimated_accuracy', 'coverage')}",
            f"drift: {pick('drift', 'drift_score', 'prediction_drift', 'drifted_features')}",
        ]
        if "comparison" in self.windows:
            verdict = json.loads(self.windows["comparison"].get("detail") or "{}").get("verdict", "…")
            figures = pick("comparison", "n", "challenger_accuracy", "champion_accuracy", "sequential_p")
            lines.append(f"challenger vs champion: {verdict}  {figures}")
        # The top drifting features of the last window as bars: PSI over its noise threshold.
        detail = json.loads(self.windows.get("drift", {}).get("detail") or "{}")
        for feature, ratio in detail.get("top_features", [])[:4]:
            bar = "█" * min(40, round(ratio * 4))
            lines.append(f"  {feature:>14s} {ratio:6.1f}x {bar}{' ▶ drift' if ratio > 1 else ''}")
        return Text("\n".join(lines))

    def _alerts_table(self) -> Table:
        """The active alerts, critical first; below them the latest resolutions, up to 6 rows."""
        active = sorted(self.active.values(), key=lambda a: (a["severity"] != "critical", a["alert_id"]))
        resolved = [a for a in reversed(self.alerts) if a["state"] == "resolved"]
        table = Table("alert", "state", "severity", "message", title=f"alerts: {len(active)} active")
        for a in [*active[:6], *resolved[: max(0, 6 - len(active))]]:
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
    phases: list[Phase],
    operator: _Operator | None,
) -> None:
    topics, codecs, view = settings.topics, Codecs.load(), _View()
    view.phases, view.operator = phases, operator
    due = [p for p in phases if p.action]
    predicted: dict[str, str] = {}
    watched = [
        topics.sensor_readings,
        topics.predictions,
        topics.actuals,
        topics.dlq,
        topics.metrics,
        topics.alerts,
        topics.audit,
    ]
    # Only this run's records: the stack may hold older ones (the deployment's state: all of it).
    with (
        TopicReader(bootstrap, watched, since_ms=since_ms) as reader,
        TopicReader(bootstrap, [topics.deployments]) as deployments,
        Live(console=console, refresh_per_second=4) as live,
    ):
        while not stop:
            if due and operator is not None and time.monotonic() - view.started >= due[0].start_s:
                operator.start(due.pop(0).action or "")
            for msg in deployments.poll(0):
                if msg.value() is not None and msg.key() == DEFAULT_DEPLOYMENT.encode():
                    view.deployment = codecs.deployment.decode(msg.value())
            for msg in reader.poll(0.2):
                topic, value = msg.topic(), msg.value()
                if topic == topics.audit:
                    view.audit.append(codecs.audit_event.decode(value))
                elif topic == topics.dlq:
                    view.dead += 1
                elif topic == topics.metrics:
                    w = codecs.metric_window.decode(value)
                    if not is_segment(w["subject"]):
                        view.windows[w["kind"]] = w
                elif topic == topics.alerts:
                    alert = codecs.alert.decode(value)
                    view.alerts.append(alert)
                    if alert["state"] == "firing":
                        view.active[alert["alert_id"]] = alert
                    else:
                        view.active.pop(alert["alert_id"], None)
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
