"""The ``rigwatch`` command line. Heavy imports happen inside commands so ``--help`` is quick."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from rigwatch.config import Settings
from rigwatch.exceptions import RigwatchError
from rigwatch.lifecycle.cli import audit_command, deploy_app, models_app

__all__ = ["app"]

app = typer.Typer(
    help="Streaming scoring and monitoring of a hydraulic test rig on Kafka.\n\n"
    "Connections come from RIGWATCH_BOOTSTRAP / RIGWATCH_REDIS_URL, or from the local "
    "stack that `rigwatch stack up` starts. Topic names use RIGWATCH_TOPIC_PREFIX (default 'rig.').",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(help="The local broker (tansu) and Redis on loopback.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
bench_app = typer.Typer(help="Benchmarks on the local stack (or RIGWATCH_BOOTSTRAP).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
alerts_app = typer.Typer(
    help="Alerts on rig.alerts from the metric windows: run the service, list active alerts."
)
app.add_typer(alerts_app, name="alerts")

DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Per-cycle CSV, UCI folder of *.txt or data.zip. Default: RIGWATCH_DATA, "
        "else the cached UCI download, else the calibrated simulator.",
    ),
]


def _say(message: str) -> None:
    """Progress for people, on stderr so stdout stays data (tail's JSON lines)."""
    typer.echo(message, err=True)


def _fail(exc: RigwatchError | ValidationError) -> typer.Exit:
    typer.secho(f"error: {exc}", err=True, fg="red")
    return typer.Exit(code=2)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@stack_app.command("up")
def stack_up_cmd(
    partitions: Annotated[int, typer.Option(min=1, help="Partitions per topic.")] = 4,
) -> None:
    """Start broker and Redis on free loopback ports (unless running or configured); create the topics."""
    from rigwatch.stack import stack_up

    settings = Settings()
    try:
        found = stack_up(settings, partitions=partitions)
    except RigwatchError as exc:
        raise _fail(exc) from exc
    typer.echo(f"broker  {found.bootstrap}\nredis   {found.redis_url}\nstate   {settings.run_dir}")
    data = [t for t in settings.topics.all() if t not in settings.topics.control()]
    typer.echo(f"topics  {', '.join(data)} ({partitions} partitions)")
    typer.echo(f"control {', '.join(settings.topics.control())} (1 partition each)")


@stack_app.command("status")
def stack_status_cmd() -> None:
    """Show whether the local stack runs, its ports and PIDs (exit 1 when it does not)."""
    from rigwatch.stack import stack_status

    state = stack_status(Settings())
    if state is None:
        typer.echo("local stack: not running")
        raise typer.Exit(code=1)
    typer.echo(f"broker  {state.bootstrap} (pid {state.pids['broker']})")
    typer.echo(f"redis   {state.redis_url} (pid {state.pids['redis']})")


@stack_app.command("down")
def stack_down_cmd() -> None:
    """Stop exactly the processes `stack up` started (by PID)."""
    from rigwatch.stack import stack_down

    stopped = stack_down(Settings())
    typer.echo("stopped " + ", ".join(stopped) if stopped else "local stack: nothing to stop")


@app.command()
def train(
    data: DataOption = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Model package folder. Default: RIGWATCH_MODEL_DIR (.rigwatch/models/cooler)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split and of LightGBM.")] = 42,
) -> None:
    """Train the LightGBM cooler-condition model; write its package (model, metadata, reference)."""
    from rigwatch.model import train_and_write

    try:
        train_and_write(data, out or Settings().model_dir, seed=seed)
    except RigwatchError as exc:
        raise _fail(exc) from exc


@app.command()
def scorer(
    deployment: Annotated[
        str | None,
        typer.Option(
            help="The deployment to serve and follow (rig.deployments). Default: RIGWATCH_SCORER_DEPLOYMENT,"
            " else the only one there is, else 'cooler'."
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            help="Package a missing deployment is created with (registered in the model store)."
            " Default: RIGWATCH_SCORER_MODEL_DIR or RIGWATCH_MODEL_DIR."
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Prometheus port on 127.0.0.1 (0: any free port). Default 9464."),
    ] = None,
    shadow: Annotated[
        bool,
        typer.Option(
            "--shadow",
            help="Serve the deployment's shadow challenger to rig.predictions.shadow (group <group>-shadow);"
            " idle while there is none.",
        ),
    ] = False,
) -> None:
    """Score sensor readings into predictions until SIGTERM/SIGINT (then finish the batch, flush, commit).

    Serves its deployment's champion and follows it: a promotion or rollback is loaded
    beside the running model and swapped in between two batches; every prediction names
    the version that made it. A canary challenger is served by these scorers too, on its
    share of rigs; a shadow challenger needs scorers started with --shadow. Other settings
    (RIGWATCH_SCORER_GROUP, _BATCH_MAX, _BATCH_TIMEOUT_MS, ...) come from the environment.
    """
    from rigwatch.kafka import StopFlag
    from services.scorer.app import run
    from services.scorer.config import ScorerSettings

    overrides: dict[str, Any] = {
        k: v
        for k, v in {"deployment": deployment, "model_dir": model, "metrics_port": metrics_port}.items()
        if v is not None
    }
    if shadow:
        overrides["shadow"] = True
    try:
        code = run(Settings(), ScorerSettings(**overrides), StopFlag().install())
    except (RigwatchError, ValidationError) as exc:
        raise _fail(exc) from exc
    raise typer.Exit(code=code)


@app.command()
def drift(
    model: Annotated[
        Path | None,
        typer.Option(help="Model package whose reference profile is compared. Default: RIGWATCH_MODEL_DIR."),
    ] = None,
    window_ms: Annotated[
        int | None, typer.Option(min=100, help="Tumbling window length, event time. Default 30000.")
    ] = None,
    lateness_ms: Annotated[
        int | None, typer.Option(min=0, help="How late a record may be and still count. Default 5000.")
    ] = None,
    min_count: Annotated[
        int | None,
        typer.Option(min=1, help="Fewer records in a window: counts only, no verdict. Default 30."),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Prometheus port on 127.0.0.1 (0: any free port). Default 9465.")
    ] = None,
) -> None:
    """Window readings and predictions in event time and publish drift MetricWindows to rig.metrics.

    Start more with the same RIGWATCH_DRIFT_GROUP to share partitions; windows live in Redis with
    the offsets they cover, so they survive restarts and Redis outages. Other settings
    (RIGWATCH_DRIFT_IDLE_MS, _BATCH_MAX, _CHECKPOINT_MS, ...) come from the environment.
    """
    from rigwatch.kafka import StopFlag
    from services.drift.app import run
    from services.drift.config import DriftSettings

    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "model_dir": model,
            "window_ms": window_ms,
            "lateness_ms": lateness_ms,
            "min_count": min_count,
            "metrics_port": metrics_port,
        }.items()
        if v is not None
    }
    try:
        code = run(Settings(), DriftSettings(**overrides), StopFlag().install())
    except (RigwatchError, ValidationError) as exc:
        raise _fail(exc) from exc
    raise typer.Exit(code=code)


@app.command()
def latency(
    window_ms: Annotated[
        int | None, typer.Option(min=100, help="Window length, in the scorer's time. Default 10000.")
    ] = None,
    scorer_group: Annotated[
        str | None, typer.Option(help="Consumer group whose lag is reported. Default rigwatch-scorer.")
    ] = None,
    lag_mode: Annotated[
        str | None,
        typer.Option(
            help="fetch: read the newest offsets (any broker); watermarks: ask the broker (Apache Kafka)."
            " Default fetch."
        ),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Prometheus port on 127.0.0.1 (0: any free port). Default 9466.")
    ] = None,
) -> None:
    """Publish service health MetricWindows (kind=health) per model version to rig.metrics.

    Reads rig.predictions and the DLQ: predictions per second, event-to-prediction and processing
    latency p50/p95/p99/max, data and system errors by reason, staleness (seconds since the last
    prediction: a stopped scorer shows as growing staleness in empty windows) and the scorer
    group's lag. Windows live in Redis with the offsets they cover. Other settings come from
    RIGWATCH_LATENCY_*.
    """
    from rigwatch.kafka import StopFlag
    from services.latency.app import run
    from services.latency.config import LatencySettings

    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "window_ms": window_ms,
            "scorer_group": scorer_group,
            "lag_mode": lag_mode,
            "metrics_port": metrics_port,
        }.items()
        if v is not None
    }
    try:
        code = run(Settings(), LatencySettings(**overrides), StopFlag().install())
    except (RigwatchError, ValidationError) as exc:
        raise _fail(exc) from exc
    raise typer.Exit(code=code)


@app.command()
def accuracy(
    model: Annotated[
        Path | None,
        typer.Option(help="Model package whose calibration estimates accuracy. Default: RIGWATCH_MODEL_DIR."),
    ] = None,
    window_ms: Annotated[
        int | None, typer.Option(min=100, help="Window length, label time. Default 30000.")
    ] = None,
    horizon_ms: Annotated[
        int | None,
        typer.Option(min=1000, help="How long a prediction waits for its label, event time. Default 1 h."),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Prometheus port on 127.0.0.1 (0: any free port). Default 9467.")
    ] = None,
) -> None:
    """Join predictions with delayed actuals by event_id and publish accuracy MetricWindows to rig.metrics.

    Either side may come first; both wait in Redis up to the horizon, then a prediction without a
    label counts as unlabelled. Per window (label time) and per model version and rig: accuracy,
    log loss, macro F1, MCC, per-class recall and precision, confusion matrix, label coverage and
    latency, and the accuracy estimated from confidence before labels come. Other settings come
    from RIGWATCH_ACCURACY_*.
    """
    from rigwatch.kafka import StopFlag
    from services.accuracy.app import run
    from services.accuracy.config import AccuracySettings

    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "model_dir": model,
            "window_ms": window_ms,
            "horizon_ms": horizon_ms,
            "metrics_port": metrics_port,
        }.items()
        if v is not None
    }
    try:
        code = run(Settings(), AccuracySettings(**overrides), StopFlag().install())
    except (RigwatchError, ValidationError) as exc:
        raise _fail(exc) from exc
    raise typer.Exit(code=code)


@alerts_app.callback(invoke_without_command=True)
def alerts(
    ctx: typer.Context,
    rules: Annotated[
        Path | None,
        typer.Option(help="TOML rules file. Default: RIGWATCH_ALERTS_RULES_FILE, else the shipped defaults."),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Prometheus port on 127.0.0.1 (0: any free port). Default 9468.")
    ] = None,
) -> None:
    """Evaluate alert rules on rig.metrics and publish firing / resolved Alerts to rig.alerts.

    Only transitions are published, with a stable alert_id (rule/subject[/item]); state lives in
    Redis, so a restart neither re-fires nor forgets an alert. The shipped rules, with every field
    explained: services/alerts/default_rules.toml. `rigwatch alerts list` shows what is firing.
    """
    if ctx.invoked_subcommand is not None:
        return
    from rigwatch.kafka import StopFlag
    from services.alerts.app import run
    from services.alerts.config import AlertsSettings

    overrides: dict[str, Any] = {
        k: v for k, v in {"rules_file": rules, "metrics_port": metrics_port}.items() if v is not None
    }
    try:
        code = run(Settings(), AlertsSettings(**overrides), StopFlag().install())
    except (RigwatchError, ValidationError) as exc:
        raise _fail(exc) from exc
    raise typer.Exit(code=code)


@app.command()
def gate(
    metrics_port: Annotated[
        int | None, typer.Option(help="Prometheus port on 127.0.0.1 (0: any free port). Default 9469.")
    ] = None,
) -> None:
    """Promotion gate: act on champion/challenger verdicts (kind=comparison on rig.metrics).

    Only deployments whose challenge was started with --auto-promote are touched: a
    `better` verdict on at least their --min-pairs labelled pairs promotes the challenger
    (guardrails first; actor rigwatch-auto, the test's figures in the audit comment),
    `worse` ends the challenge. Stateless: a restart finds the changes it made.
    """
    from rigwatch.kafka import StopFlag
    from services.gate.app import run
    from services.gate.config import GateSettings

    overrides: dict[str, Any] = {"metrics_port": metrics_port} if metrics_port is not None else {}
    try:
        code = run(Settings(), GateSettings(**overrides), StopFlag().install())
    except (RigwatchError, ValidationError) as exc:
        raise _fail(exc) from exc
    raise typer.Exit(code=code)


@alerts_app.command("list")
def alerts_list() -> None:
    """Print the alerts firing now (red: critical, orange: warning), most severe first.

    Piped, each alert is one tab-separated line: severity, alert id, value, threshold, since, message.
    """
    from rich.console import Console
    from rich.table import Table

    from services.alerts.app import active_alerts
    from services.alerts.config import AlertsSettings

    try:
        active = active_alerts(Settings(), AlertsSettings())
    except RigwatchError as exc:
        raise _fail(exc) from exc
    if not active:
        typer.echo("no active alerts")
        return
    rows = [
        (
            a["severity"],
            a["alert_id"],
            f"{a['value']:.4g}",
            f"{a['threshold']:g}",
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(a["first_seen"] / 1000)),
            a["message"],
        )
        for a in active
    ]
    if not sys.stdout.isatty():  # for scripts: one tab-separated line per alert
        for row in rows:
            typer.echo("\t".join(row))
        return
    table = Table("severity", "alert", "value", "threshold", "since (UTC)", "message")
    for severity, *rest in rows:
        colour = "red" if severity == "critical" else "dark_orange"
        table.add_row(f"[{colour}]{severity}[/]", *rest)
    Console().print(table)


@app.command()
def pump(
    data: DataOption = None,
    rate: Annotated[float, typer.Option(min=0, help="Readings per second (0: as fast as possible).")] = 100.0,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many records.")] = None,
    duration: Annotated[float | None, typer.Option(min=0, help="Stop after this many seconds.")] = None,
    order: Annotated[str, typer.Option(help="iid: seeded sampling; run: original cycle order.")] = "iid",
    rigs: Annotated[int, typer.Option(min=1, help="Number of rigs (own rig_id and cycle counter).")] = 1,
    label_delay: Annotated[float, typer.Option(min=0, help="Seconds until each Actual is sent.")] = 5.0,
    label_coverage: Annotated[float, typer.Option(min=0, max=1, help="Fraction of readings labelled.")] = 1.0,
    bad_rate: Annotated[float, typer.Option(min=0, max=1, help="Fraction of malformed records.")] = 0.0,
    wrong_labels: Annotated[
        str | None,
        typer.Option(
            help="Accuracy scenario RATE@START: from reading START on, send this fraction of Actuals"
            " with a wrong label (e.g. 0.3@2000)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of sampling, labels and malformed records.")] = 0,
    event_interval_ms: Annotated[
        int | None,
        typer.Option(min=1, help="Simulated event time: stamp readings this many ms apart (default: now)."),
    ] = None,
    event_start_ms: Annotated[
        int | None, typer.Option(help="First simulated event time, epoch ms (default: now).")
    ] = None,
    shift: Annotated[
        list[str] | None,
        typer.Option(
            help="Drift scenario SENSOR=DELTA@START[-END]: add DELTA to SENSOR from reading START on "
            "(up to END; e.g. tsb_temp=+2@1000-2000); repeatable."
        ),
    ] = None,
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            help="Named scenario NAME[@START[-END]] over reading numbers: iid, run-order, sensor-offset, "
            "sensor-stuck, sensor-noise, cooler-degradation, bad-records, wrong-labels; repeatable. "
            "--list-scenarios says what each should trigger."
        ),
    ] = None,
    list_scenarios: Annotated[
        bool, typer.Option("--list-scenarios", help="Print the scenarios and what each triggers, then exit.")
    ] = False,
) -> None:
    """Publish real hydraulic cycles as SensorReadings, and their Actuals after a delay.

    Without --count or --duration it runs until Ctrl-C. With --event-interval-ms the readings
    carry simulated event times, so hours of windows pass in seconds.
    """
    from loadgen.pump import PumpOptions, run_pump
    from loadgen.readings import Shift, WrongLabels
    from loadgen.scenarios import SCENARIOS, parse_scenario
    from rigwatch.data import resolve_data
    from rigwatch.kafka import StopFlag

    if list_scenarios:
        for name, known in SCENARIOS.items():
            typer.echo(f"{name:20s} {known.triggers}")
        return
    try:
        chosen = [parse_scenario(text) for text in scenario or ()]
        if any(s.order == "run" for s, _ in chosen):
            order = "run"
        dataset = resolve_data(data, progress=_say)
        _say(f"data: {dataset.source} ({len(dataset)} cycles)")
        options = PumpOptions(
            rate=rate,
            count=count,
            duration=duration,
            order=order,
            rigs=rigs,
            label_delay=label_delay,
            label_coverage=label_coverage,
            bad_rate=bad_rate,
            seed=seed,
            event_interval_ms=event_interval_ms,
            event_start_ms=event_start_ms,
            shifts=tuple(Shift.parse(s) for s in shift or ()),
            wrong_labels=WrongLabels.parse(wrong_labels) if wrong_labels else None,
            effects=tuple(e for _, effects in chosen for e in effects),
        )
        run_pump(Settings(), dataset, options, StopFlag().install())
    except RigwatchError as exc:
        raise _fail(exc) from exc


@app.command()
def tail(
    topic: Annotated[
        str,
        typer.Argument(help="Topic name, or its short name (predictions, sensor-readings.dlq, ...)."),
    ],
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest record.")
    ] = False,
    n: Annotated[int | None, typer.Option("--n", min=1, help="Stop after N records.")] = None,
    timeout: Annotated[
        float | None,
        typer.Option(help="Stop after this many seconds without a record."),
    ] = None,
) -> None:
    """Decode a rig topic and print one JSON object per record (DLQ records with their error headers)."""
    from rigwatch.kafka import StopFlag, read_topics
    from rigwatch.schemas import Codecs
    from rigwatch.stack import endpoints
    from rigwatch.tail import json_lines

    settings = Settings()
    if topic not in settings.topics.all() and settings.topic_prefix + topic in settings.topics.all():
        topic = settings.topic_prefix + topic
    try:
        messages = read_topics(
            endpoints(settings).bootstrap,
            [topic],
            from_beginning=from_beginning,
            idle_timeout=timeout,
            stop=StopFlag().install(),
        )
        for line in json_lines(Codecs.load(), messages, n):
            typer.echo(line)
    except RigwatchError as exc:
        raise _fail(exc) from exc


@app.command()
def demo(
    data: DataOption = None,
    rate: Annotated[float, typer.Option(min=1, help="Readings per second the pump sends.")] = 50.0,
    duration: Annotated[float | None, typer.Option(min=1, help="Stop after this many seconds.")] = None,
    scenario: Annotated[
        str,
        typer.Option(
            help="timeline: normal, sensor offset, recovery, bad records, cooler degradation, then a "
            "retrained model version promoted and rolled back; model-update: those two deployment steps "
            "alone; or one pump scenario name (20 s normal, 20 s of it, then recovery); none: clean data."
        ),
    ] = "timeline",
    event_interval_ms: Annotated[
        int | None,
        typer.Option(min=1, help="Simulated event time, ms between readings: windows pass faster."),
    ] = None,
) -> None:
    """Train if needed, start the stack, every service and the pump; watch predictions, windows and alerts.

    Ctrl-C stops everything it started. Logs of each service are in RIGWATCH_RUN_DIR.
    """
    from rigwatch.demo import run_demo

    try:
        run_demo(
            Settings(),
            data=data,
            rate=rate,
            duration=duration,
            scenario=None if scenario == "none" else scenario,
            event_interval_ms=event_interval_ms,
        )
    except RigwatchError as exc:
        raise _fail(exc) from exc


@app.command()
def report(
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("report.html"),
    max_readings: Annotated[
        int,
        typer.Option(min=0, help="Newest readings of rig.sensor-readings for the input histograms; 0: none."),
    ] = 5000,
    rigs: Annotated[
        bool, typer.Option("--rigs", help="Also chart each rig's drift and accuracy (rig:<id> subjects).")
    ] = False,
) -> None:
    """Write one self-contained HTML page (inline SVG charts, nothing fetched) of what monitoring saw.

    Per model version, over time: drift per feature (PSI ÷ noise of the ~6 features that drifted
    most) and the drift score, the predicted-class mix, realised and estimated accuracy, latency
    p50/p95/p99; alerts drawn on each chart's time axis (orange warning, red critical, green resolved)
    and listed in a table; histograms of every model input, the model's reference against the newest
    readings. Reads rig.metrics and rig.alerts from the beginning to their current end; commits nothing.
    """
    from rigwatch.report import write_report

    try:
        path = write_report(Settings(), out, max_readings=max_readings, rigs=rigs, progress=_say)
    except RigwatchError as exc:
        raise _fail(exc) from exc
    typer.echo(str(path))


class OnError(StrEnum):
    """What ``rigwatch score`` does with a row it cannot score."""

    skip = "skip"
    fail = "fail"


@app.command()
def score(
    file: Annotated[
        Path,
        typer.Argument(help="CSV with a header row: the model's features in any order, other columns kept."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The scored CSV to write (replaced at the end).")],
    model: Annotated[
        str | None,
        typer.Option(
            help="Model package folder, or a registered version (or unique prefix) in the model store "
            "(RIGWATCH_MODEL_STORE). Default: RIGWATCH_SCORER_MODEL_DIR or RIGWATCH_MODEL_DIR."
        ),
    ] = None,
    deployment: Annotated[
        str | None,
        typer.Option(help="Score with this deployment's current champion (read from rig.deployments)."),
    ] = None,
    on_error: Annotated[
        OnError,
        typer.Option(
            help="skip: leave a bad row out, report it on stderr, count it at the end; "
            "fail: stop at the first one (exit 2), writing nothing."
        ),
    ] = OnError.skip,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="No progress bar and no summary; bad rows are still reported."),
    ] = False,
) -> None:
    """Score a CSV file with the streaming scorer: same model code, same humility rules, same outputs.

    Each row is built into a SensorReading and scored by the scorer's own batch code, so a row
    gets what the same reading gets on rig.predictions. An empty cell is a sensor without a value
    (scored, flagged missing:<sensor>). The output is the input's columns, then model_version,
    predicted_label, confidence, p_<class> per class (the model's class order), flags (humility
    flags joined by ';'), outcome (scored, or rejected: a reading the streaming scorer would send
    to the DLQ) and error / error_detail (that DLQ record's headers). Humility rules come from
    RIGWATCH_SCORER_UNCERTAIN_BELOW, _OUTLYING_MARGIN, _*_ACTION and _FALLBACK_LABEL, as for
    `rigwatch scorer`.

    A row with a value that is not a number, or with fewer or more values than the header, is
    bad: reported with its row and line number, column and value. A model feature missing from
    the header stops the run before any row is read.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    from rigwatch.schemas import Codecs
    from services.scorer.app import humility_rules
    from services.scorer.config import ScorerSettings
    from services.scorer.csvrows import BadRow
    from services.scorer.handler import Scorer
    from services.scorer.scorefile import load_model, score_file

    settings = Settings()
    try:
        config = ScorerSettings()
        package = load_model(
            settings, config.model_dir or settings.model_dir, model=model, deployment=deployment
        )
        codecs = Codecs.load()
        scorer = Scorer(package, codecs.sensor_reading, codecs.prediction, rules=humility_rules(config))
    except (RigwatchError, ValidationError) as exc:
        raise _fail(exc) from exc
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=console,
        # Piped or redirected stderr gets no bar: it would be one frame of escape codes per refresh.
        disable=quiet or not console.is_terminal,
        transient=True,
    )
    task = progress.add_task(f"scoring {file.name}", total=file.stat().st_size if file.is_file() else None)

    def bad_row(bad: BadRow) -> None:
        # Not markup: a cell value may hold square brackets.
        progress.console.print(f"bad row: {bad}", markup=False, highlight=False, soft_wrap=True)

    try:
        with progress:
            report = score_file(
                scorer,
                codecs.sensor_reading,
                codecs.prediction,
                file,
                out,
                on_error="fail" if on_error is OnError.fail else "skip",
                batch=config.batch_max,
                on_bad=bad_row,
                on_progress=lambda done, rows: progress.update(
                    task, completed=done, description=f"scoring {file.name}: {rows:,} rows"
                ),
            )
    except RigwatchError as exc:
        raise _fail(exc) from exc
    if not quiet:
        _say(report.summary())
    elif report.bad:
        _say(f"{len(report.bad):,} bad rows skipped")


def _bench_model(data: Path | None, out: Path) -> tuple[Any, Path]:
    """The bench's data and a model trained afresh on it (0.2 s), so the figures do not
    depend on whichever package happens to be in RIGWATCH_MODEL_DIR."""
    from rigwatch.data import resolve_data
    from rigwatch.model import train

    dataset = resolve_data(data, progress=_say)
    model_dir = train(dataset, num_threads=1).write(out / "model")
    _say(f"model: {model_dir} trained on {dataset.source}")
    return dataset, model_dir


@contextmanager
def _bench_stack(model_dir: Path) -> Iterator[Settings]:
    """Settings bound to a running stack (started if needed, stopped after) and *model_dir*."""
    from rigwatch.stack import running_stack

    settings = Settings()
    with running_stack(settings) as ends:
        yield settings.model_copy(
            update={"bootstrap": ends.bootstrap, "redis_url": ends.redis_url, "model_dir": model_dir}
        )


@bench_app.command("scorer")
def bench_scorer(
    data: DataOption = None,
    events: Annotated[int, typer.Option(min=1000, help="Readings pre-loaded per throughput run.")] = 200_000,
    repeats: Annotated[int, typer.Option(min=1, help="Repeats of every measurement.")] = 3,
    rate: Annotated[float, typer.Option(min=1, help="Offered load of the latency run, events/s.")] = 1000.0,
    duration: Annotated[float, typer.Option(min=0, help="Seconds of the latency run (0: skip it).")] = 60.0,
    workers: Annotated[
        str, typer.Option(help="Comma-separated: scorer, naive, passthrough, 'scorer x2'.")
    ] = "scorer,naive,passthrough,scorer x2",
    out: Annotated[Path, typer.Option(help="Folder for the JSON and markdown results.")] = Path("results"),
) -> None:
    """Scorer events/s against a naive per-event scorer and the codec-only floor; latency; CPU; RSS.

    Every worker runs as its own process on fresh topics with the same real readings; medians
    with min–max over the repeats, ratios taken within each repeat.
    """
    from loadgen.bench import WORKERS, BenchOptions, run_scorer_bench

    chosen = tuple(w.strip() for w in workers.split(","))
    unknown = [w for w in chosen if w not in WORKERS]
    if unknown:
        raise typer.BadParameter(f"unknown worker(s) {unknown}; expected some of {list(WORKERS)}")
    try:
        dataset, model_dir = _bench_model(data, out)
        options = BenchOptions(
            events=events, repeats=repeats, rate=rate, duration=duration, out=out, workers=chosen
        )
        with _bench_stack(model_dir) as bound:
            run_scorer_bench(bound, dataset, options, say=_say)
    except RigwatchError as exc:
        raise _fail(exc) from exc


@bench_app.command("score")
def bench_score(
    data: DataOption = None,
    rows: Annotated[
        int, typer.Option(min=2000, help="Rows in the CSV (the data's cycles, repeated).")
    ] = 100_000,
    repeats: Annotated[int, typer.Option(min=1, help="Repeats of every measurement.")] = 3,
    out: Annotated[Path, typer.Option(help="Folder for the JSON and markdown results.")] = Path("results"),
) -> None:
    """Rows/s of `rigwatch score` on a per-cycle CSV, beside the scorer's handler and the model alone.

    In one process, no broker: the file end to end (read, check, encode, Scorer.score, decode,
    write), Scorer.score on the same readings pre-encoded, predict_proba on the same rows.
    Medians with min–max over the repeats; start-up excluded.
    """
    from loadgen.bench_score import ScoreBenchOptions, run_score_bench

    try:
        dataset, model_dir = _bench_model(data, out)
        run_score_bench(dataset, model_dir, ScoreBenchOptions(rows=rows, repeats=repeats, out=out), say=_say)
    except RigwatchError as exc:
        raise _fail(exc) from exc


@bench_app.command("pipeline")
def bench_pipeline(
    data: DataOption = None,
    rates: Annotated[str, typer.Option(help="Comma-separated offered loads, readings/s.")] = "300,1000,2000",
    patterns: Annotated[
        str,
        typer.Option(
            help="Comma-separated request patterns: tuned (shipped), legacy (10 ms polls, 1 ms linger)."
        ),
    ] = "tuned,legacy",
    seconds: Annotated[
        float, typer.Option(min=5, help="Seconds measured per run, after the warm-up.")
    ] = 30.0,
    services: Annotated[
        str, typer.Option(help="Comma-separated services to run (default all; the scorer alone: 'scorer').")
    ] = "scorer,drift,latency,accuracy,alerts",
    out: Annotated[Path, typer.Option(help="Folder for the JSON and markdown results.")] = Path("results"),
) -> None:
    """What the embedded broker sustains: every service running, the pump at each rate.

    Per rate and request pattern: event → prediction latency at a consumer of rig.predictions
    (p50/p95/p99/max), and the CPU of the broker, Redis and every service.
    """
    from loadgen.bench_pipeline import PATTERNS, SERVICES, PipelineBenchOptions, run_pipeline_bench

    running = tuple(s.strip() for s in services.split(","))
    if "scorer" not in running or not set(running) <= set(SERVICES):
        raise typer.BadParameter(
            f"--services must include scorer and be some of {list(SERVICES)}, got {services!r}"
        )
    chosen = tuple(p.strip() for p in patterns.split(","))
    unknown = [p for p in chosen if p not in PATTERNS]
    if unknown:
        raise typer.BadParameter(f"unknown pattern(s) {unknown}; expected some of {list(PATTERNS)}")
    try:
        offered = tuple(int(r) for r in rates.split(","))
    except ValueError as exc:
        raise typer.BadParameter(f"--rates must be integers separated by commas, got {rates!r}") from exc
    try:
        dataset, model_dir = _bench_model(data, out)
        options = PipelineBenchOptions(rates=offered, patterns=chosen, seconds=seconds, services=running)
        with _bench_stack(model_dir) as bound:
            _, path = run_pipeline_bench(bound, dataset, options, out, say=_say)
        _say(f"results: {path} and {path.with_suffix('.md')}")
    except RigwatchError as exc:
        raise _fail(exc) from exc


@bench_app.command("deploy")
def bench_deploy(
    data: DataOption = None,
    scorers: Annotated[
        str, typer.Option(help="Comma-separated scorer counts, one run each (one consumer group per run).")
    ] = "1,2",
    rate: Annotated[
        float, typer.Option(min=1, help="Readings per second, 8 rigs, for the whole run.")
    ] = 1000.0,
    changes: Annotated[
        int, typer.Option(min=1, help="Deployment changes per run: promote b, roll back to a, promote b, ...")
    ] = 10,
    every_s: Annotated[float, typer.Option(min=1, help="Seconds between two changes.")] = 4.0,
    warmup_s: Annotated[
        float, typer.Option(min=0, help="Seconds of readings before the first change.")
    ] = 5.0,
    out: Annotated[Path, typer.Option(help="Folder for the JSON and markdown results.")] = Path("results"),
) -> None:
    """Zero-downtime deploys under load: promote / roll back -> first prediction of the new version.

    Two models are trained (seeds 42 and 7: versions a and b); deployment
    'cooler' starts on a. Per scorer count, on fresh topics: the scorers
    follow the deployment in one consumer group, the pump sends --rate
    readings/s, and after --warmup-s the deployment changes every
    --every-s seconds (promote b, roll back to a, ...).

    Then rig.predictions is read back. Per (change, partition): wall clock
    just before the promote/rollback call -> scored_time of the
    partition's first prediction of the target version; p50/p99/max for
    promotions and rollbacks apart, with the call's own share. Checked per
    run (counted, not fatal): every reading has exactly one prediction,
    and every partition switches exactly once per change, never back. CPU
    of the broker and the scorers.

    About warm-up + changes x every-s + 20 s per scorer count.
    """
    from loadgen.bench_deploy import DeployBenchOptions, run_deploy_bench

    try:
        counts = tuple(int(n) for n in scorers.split(","))
    except ValueError as exc:
        raise typer.BadParameter(f"--scorers must be integers separated by commas, got {scorers!r}") from exc
    if not counts or min(counts) < 1:
        raise typer.BadParameter(f"--scorers must be at least 1 each, got {scorers!r}")
    try:
        dataset, model_dir = _bench_model(data, out)
        options = DeployBenchOptions(
            scorers=counts, rate=rate, changes=changes, every_s=every_s, warmup_s=warmup_s
        )
        with _bench_stack(model_dir) as bound:
            _, path = run_deploy_bench(bound, dataset, model_dir, options, out, say=_say)
        _say(f"results: {path} and {path.with_suffix('.md')}")
    except RigwatchError as exc:
        raise _fail(exc) from exc


@bench_app.command("drift")
def bench_drift(
    data: DataOption = None,
    events: Annotated[int, typer.Option(min=2000, help="Readings per run (4 rigs).")] = 100_000,
    interval_ms: Annotated[
        int,
        typer.Option(
            min=1,
            help="Simulated event time between readings: 100 gives 300 readings per 30 s window "
            "(window emission dominates), 1 gives 30,000 (a 1,000/s stream).",
        ),
    ] = 10,
    repeats: Annotated[int, typer.Option(min=1, help="Repeats of every measurement.")] = 3,
    end_to_end: Annotated[
        bool,
        typer.Option(
            "--end-to-end/--no-end-to-end",
            help="Also run Redis apply and `rigwatch drift` through the broker (needs the local stack).",
        ),
    ] = True,
    profile: Annotated[
        bool, typer.Option("--profile", help="One extra end-to-end run with the child under cProfile.")
    ] = False,
    out: Annotated[Path, typer.Option(help="Folder for the JSON and markdown results.")] = Path("results"),
) -> None:
    """Drift processor events/s: statistics update path, window close, a scipy baseline, end to end.

    The update path (DriftHandler.readings, one thread) is compared with recomputing the same
    statistics per window from the raw events with scipy, on the same real readings; end to end
    runs `rigwatch drift` as a child process on fresh topics. Medians with min–max over the repeats.
    """
    from loadgen.bench_drift import DriftBenchOptions, run_drift_bench

    try:
        dataset, model_dir = _bench_model(data, out)
        options = DriftBenchOptions(
            events=events,
            repeats=repeats,
            interval_ms=interval_ms,
            end_to_end=end_to_end,
            profile=profile,
            out=out,
        )
        if not end_to_end:
            run_drift_bench(None, dataset, model_dir, options, say=_say)
            return
        with _bench_stack(model_dir) as bound:
            run_drift_bench(bound, dataset, model_dir, options, say=_say)
    except RigwatchError as exc:
        raise _fail(exc) from exc


@bench_app.command("alerts")
def bench_alerts(
    data: DataOption = None,
    injections: Annotated[
        int, typer.Option(min=1, help="Drift injections, one after another (each fires and resolves).")
    ] = 5,
    window_ms: Annotated[
        int, typer.Option(min=1000, help="Drift window length; event time is the wall clock.")
    ] = 5000,
    rate: Annotated[
        float, typer.Option(min=20, help="Readings per second (2 rigs), stamped with the wall clock.")
    ] = 200.0,
    out: Annotated[Path, typer.Option(help="Folder for the JSON and markdown results.")] = Path("results"),
) -> None:
    """Alert freshness: first drifted event → firing alert readable on rig.alerts, p50 / p99 over injections.

    Real time: scorer, drift and alerts run as child processes on fresh topics; readings are stamped with
    the wall clock. Each injection adds +2 degC to tsb_temp for 3 windows from a random point of a window,
    then waits until the alert resolves. Reported beside the target (window + 2 s) and the published
    aggregation intervals of H2O MLOps, MLRun and DataRobot. Takes about 40 s per injection.
    """
    from loadgen.bench_alerts import AlertsBenchOptions, run_alerts_bench

    try:
        dataset, model_dir = _bench_model(data, out)
        options = AlertsBenchOptions(injections=injections, window_ms=window_ms, rate=rate, out=out)
        with _bench_stack(model_dir) as bound:
            run_alerts_bench(bound, dataset, model_dir, options, say=_say)
    except RigwatchError as exc:
        raise _fail(exc) from exc


@bench_app.command("processors")
def bench_processors(
    data: DataOption = None,
    events: Annotated[
        int, typer.Option(min=2000, help="Readings in the stream (with their predictions and actuals).")
    ] = 100_000,
    repeats: Annotated[int, typer.Option(min=1, help="Repeats of every service's run.")] = 3,
    services: Annotated[
        str,
        typer.Option(
            help="Comma-separated: scorer, drift, latency, accuracy, alerts; also scorer+shadow (a champion"
            " and a shadow scorer at once) and comparison (accuracy with a challenger's predictions too)."
        ),
    ] = "scorer,drift,latency,accuracy,alerts",
    alert_windows: Annotated[
        int, typer.Option(min=100, help="MetricWindows the alerts service reads (real ones, repeated).")
    ] = 10_000,
    live_s: Annotated[
        float, typer.Option(min=0, help="Seconds of the live phase, all services together (0: skip it).")
    ] = 60.0,
    live_rate: Annotated[float, typer.Option(min=20, help="Readings per second in the live phase.")] = 200.0,
    out: Annotated[Path, typer.Option(help="Folder for the JSON and markdown results.")] = Path("results"),
) -> None:
    """Events/s, CPU µs/event, peak RSS and broker CPU of every service, each as its own process.

    One real stream (readings, their predictions and actuals; MetricWindows for alerts) is loaded
    once on fresh topics; each service reads its input from the beginning with a fresh consumer
    group. Medians with min–max over the repeats, ratios to the scorer within each repeat. Then a
    live phase: window close → MetricWindow arrival and alert freshness with every service running.
    """
    from loadgen.bench_processors import SERVICES, ProcessorsBenchOptions, run_processors_bench

    chosen = tuple(s.strip() for s in services.split(","))
    known = [s.name for s in SERVICES]
    if unknown := [s for s in chosen if s not in known]:
        raise typer.BadParameter(f"unknown service(s) {unknown}; expected some of {known}")
    try:
        dataset, model_dir = _bench_model(data, out)
        options = ProcessorsBenchOptions(
            events=events,
            repeats=repeats,
            services=chosen,
            alert_windows=alert_windows,
            live_s=live_s,
            live_rate=live_rate,
            out=out,
        )
        with _bench_stack(model_dir) as bound:
            run_processors_bench(bound, dataset, model_dir, options, say=_say)
    except RigwatchError as exc:
        raise _fail(exc) from exc


# The model lifecycle (rigwatch/lifecycle/cli.py), listed after the services.
app.add_typer(models_app, name="models")
app.add_typer(deploy_app, name="deploy")
app.command("audit")(audit_command)


# The operations API (services/console/): `rigwatch console` serves it, `console token` keeps its tokens.
# No help= here: the callback's docstring is the group's help.
console_app = typer.Typer()
app.add_typer(console_app, name="console")
console_token_app = typer.Typer(
    help="API tokens of the console: each a principal (the audit trail's actor) and a role.",
    no_args_is_help=True,
)
console_app.add_typer(console_token_app, name="token")

TokensFileOption = Annotated[
    Path | None,
    typer.Option(
        "--tokens-file", help="Default: RIGWATCH_CONSOLE_TOKENS_FILE, else .rigwatch/console-tokens.json."
    ),
]


@console_app.callback(invoke_without_command=True)
def console(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on. Default 127.0.0.1 (RIGWATCH_CONSOLE_HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port. Default 8080 (RIGWATCH_CONSOLE_PORT).")
    ] = None,
    allow_anonymous: Annotated[
        str | None,
        typer.Option(
            help="Role of requests without a token (viewer, operator, approver, admin); loopback only."
            " Default: a token is required."
        ),
    ] = None,
    tokens_file: TokensFileOption = None,
) -> None:
    """Serve the operations API (JSON under /api/v1, OpenAPI at /api/v1/openapi.json) until SIGTERM/SIGINT.

    A faust-streaming app: follows rig.alerts, rig.metrics, rig.deployments, rig.audit and
    rig.scorer-status into in-memory tables. POST /score scores with a deployment's champion by
    the streaming scorer's code and humility rules (RIGWATCH_SCORER_*) and publishes the readings;
    promote / rollback / challenger / approve / reject / comment are the lifecycle's own operations,
    audited with the token's principal. Every request but /api/v1/health and the OpenAPI document
    needs `Authorization: Bearer <token>` (`rigwatch console token add`).
    """
    if ctx.invoked_subcommand is not None:
        return
    from services.console.app import run
    from services.console.config import ConsoleSettings

    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "host": host,
            "port": port,
            "allow_anonymous": allow_anonymous,
            "tokens_file": tokens_file,
        }.items()
        if v is not None
    }
    try:
        code = run(Settings(), ConsoleSettings(**overrides))
    except (RigwatchError, ValidationError) as exc:
        raise _fail(exc) from exc
    raise typer.Exit(code=code)


def _token_store(tokens_file: Path | None) -> Any:
    from services.console.config import ConsoleSettings
    from services.console.tokens import TokenStore

    return TokenStore(tokens_file or ConsoleSettings().tokens_file)


@console_token_app.command("add")
def console_token_add(
    name: Annotated[str, typer.Argument(help="The principal: who the audit trail says acted.")],
    role: Annotated[str, typer.Option(help="viewer, operator, approver or admin.")],
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace the principal's token (the old one stops working).")
    ] = False,
    tokens_file: TokensFileOption = None,
) -> None:
    """Make a new random token for NAME with ROLE and print it, once: only its SHA-256 is stored.

    A running console takes it at the next request.
    """
    from services.console.roles import Role

    store = _token_store(tokens_file)
    try:
        token = store.add(name, Role.parse(role), replace=replace)
    except RigwatchError as exc:
        raise _fail(exc) from exc
    _say(f"token of {name} ({role.lower()}), stored hashed in {store.path}; shown this once:")
    typer.echo(token)


@console_token_app.command("list")
def console_token_list(tokens_file: TokensFileOption = None) -> None:
    """The principals with a token and their roles (never a token)."""
    store = _token_store(tokens_file)
    try:
        principals = store.principals()
    except RigwatchError as exc:
        raise _fail(exc) from exc
    if not principals:
        typer.echo(f"no tokens in {store.path}")
        return
    for p in principals:
        added = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(p.created / 1000))
        typer.echo(f"{p.name}\t{p.role}\tadded {added} UTC")


@console_token_app.command("remove")
def console_token_remove(
    name: Annotated[str, typer.Argument(help="The principal whose token stops working.")],
    tokens_file: TokensFileOption = None,
) -> None:
    """Revoke NAME's token; a running console refuses it from the next request on."""
    store = _token_store(tokens_file)
    try:
        removed = store.remove(name)
    except RigwatchError as exc:
        raise _fail(exc) from exc
    if not removed:
        raise _fail(RigwatchError(f"{name!r} has no token in {store.path}"))
    typer.echo(f"token of {name} removed")


@bench_app.command("console")
def bench_console(
    data: DataOption = None,
    requests: Annotated[int, typer.Option(min=10, help="Requests of one reading per phase.")] = 1000,
    batches: Annotated[int, typer.Option(min=1, help="Requests of --batch readings per phase.")] = 200,
    batch: Annotated[int, typer.Option(min=1, help="Readings per batch request.")] = 100,
    repeats: Annotated[int, typer.Option(min=1, help="Repeats of every phase.")] = 3,
    out: Annotated[Path, typer.Option(help="Folder for the JSON and markdown results.")] = Path("results"),
) -> None:
    """POST /score of a running `rigwatch console`: latency of one reading, readings/s of batches.

    One console on fresh topics serves deployment 'cooler' (a model trained afresh); one client
    on one keep-alive connection sends requests one after the other, each with publish=false
    (scoring only) and publish=true (also produced and acknowledged). p50/p99/max latency,
    readings/s and the console's CPU per reading; medians with min–max over the repeats.
    """
    from loadgen.bench_console import ConsoleBenchOptions, run_console_bench

    try:
        dataset, model_dir = _bench_model(data, out)
        options = ConsoleBenchOptions(
            requests=requests, batches=batches, batch=batch, repeats=repeats, out=out
        )
        with _bench_stack(model_dir) as bound:
            run_console_bench(bound, dataset, model_dir, options, say=_say)
    except RigwatchError as exc:
        raise _fail(exc) from exc
