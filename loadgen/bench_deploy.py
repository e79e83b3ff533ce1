"""``rigwatch bench deploy``: how soon a promotion or a rollback reaches every partition under load.

Two real-data models are trained with different seeds (different trees, so
different versions), registered in a model store of the bench's own, and
deployment ``cooler`` is created on the first (a). For each scorer count, on
fresh topics: that many ``rigwatch scorer`` processes in one consumer group
follow the deployment; once each has been assigned partitions, the pump (in
this process) sends readings at ``rate`` for the whole run, ``rigs`` rigs
round-robin, no labels. After ``warmup_s``, every ``every_s`` seconds, the
deployment changes: promote b, roll back to a, promote b, ... (``changes`` in
all); the run ends ``every_s`` after the last one.

Then ``rig.predictions`` is read from the beginning, and per partition, in
offset order:

change → first prediction
    for each (change, partition) pair: the ``scored_time`` of the partition's
    first prediction of the change's target version minus the wall clock just
    before the lifecycle call (:func:`~rigwatch.lifecycle.operations.promote` /
    ``rollback``). It includes the call itself (the guardrails and the audit
    event), the scorers' follow (a 250 ms fetch wait on ``rig.deployments``),
    loading and checking the model and the next batch. Percentiles are over
    every pair, promotions and rollbacks apart.
correctness
    every reading has exactly one prediction (a duplicate counts as a replay
    when it equals the first but for the scorer's timing fields, as a
    conflict otherwise), and each partition's versions switch exactly once per
    change and never back in between (:func:`partition_switches`).
CPU
    of the broker, Redis, every scorer and this process (pump + lifecycle
    calls) from ``/proc``, as a share of one core from the first change to the
    end of the run.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loadgen.bench_pipeline import _cpu, latency_summary
from loadgen.bench_processors_report import _load
from loadgen.pump import PumpOptions, PumpReport, run_pump
from rigwatch.config import Settings
from rigwatch.data import Dataset
from rigwatch.exceptions import ProcessError, RigwatchError
from rigwatch.harness import Process, ProcessHarness, log_tail, stack_pids
from rigwatch.kafka import StopFlag, TopicReader, create_rig_topics, delete_topics
from rigwatch.lifecycle.operations import create_deployment, promote, registered_version, rollback
from rigwatch.model import ModelPackage, train
from rigwatch.schemas import Codecs

__all__ = [
    "ChangeMade",
    "DeployBenchOptions",
    "PartitionSwitches",
    "Predictions",
    "change_delays",
    "dedupe",
    "markdown",
    "partition_switches",
    "run_deploy_bench",
]

DEPLOYMENT = "cooler"
ACTOR = "bench-deploy"
#: Fields of a prediction that a replay of the same reading by the same version may change.
TIMING_FIELDS = frozenset({"scored_time", "processing_ms"})
#: ``_cpu``'s name for this process; here it runs the pump and the lifecycle calls.
_SELF_CPU, SELF_CPU = "bench (pump + reader)", "bench (pump + changes)"
KINDS = ("promote", "rollback")


@dataclass(frozen=True)
class DeployBenchOptions:
    """What ``rigwatch bench deploy`` runs."""

    scorers: tuple[int, ...] = (1, 2)
    rate: float = 1000.0
    changes: int = 10
    every_s: float = 4.0
    warmup_s: float = 5.0
    rigs: int = 8
    partitions: int = 4
    #: Seed of the second model (the first is the bench's seed-42 model).
    seed_b: int = 7
    #: How long to wait for a scorer's assignment, and for every prediction after a run.
    timeout_s: float = 90.0


@dataclass(frozen=True)
class ChangeMade:
    """One deployment change as the bench made it."""

    index: int
    kind: str
    target: str
    #: Wall clock (epoch ms) just before the lifecycle call.
    at_ms: int
    #: How long the call took (checks, record, audit event), ms.
    call_ms: float
    #: The Deployment record's own time (stamped after the checks, as it is written).
    record_ms: int

    @property
    def done_ms(self) -> float:
        """Wall clock when the call returned: its record and audit event are on the broker."""
        return self.at_ms + self.call_ms


@dataclass(frozen=True)
class Predictions:
    """``rig.predictions`` deduplicated by event id (first seen kept).

    ``rows``: per partition, (model_version, scored_time) in offset order.
    """

    rows: dict[int, list[tuple[str, int]]]
    unique: int
    #: Repeats equal to the first but for the scorer's timing fields (at-least-once replays).
    replays: int
    #: Repeats that differ in anything else (another version, another output).
    conflicts: int


def dedupe(records: Iterable[tuple[int, int, Mapping[str, Any]]]) -> Predictions:
    """Deduplicate (partition, offset, decoded prediction) by event id, in offset order.

    Examples
    --------
    >>> p = {"event_id": "e1", "model_version": "a", "scored_time": 5, "processing_ms": 1.0}
    >>> again = {**p, "scored_time": 9}
    >>> out = dedupe([(0, 0, p), (0, 1, again), (0, 2, {**p, "model_version": "b"})])
    >>> out.rows, out.unique, out.replays, out.conflicts
    ({0: [('a', 5)]}, 1, 1, 1)
    """
    first: dict[str, Mapping[str, Any]] = {}
    rows: dict[int, list[tuple[str, int]]] = {}
    replays = conflicts = 0
    for partition, _, p in sorted(records, key=lambda r: (r[0], r[1])):
        seen = first.get(p["event_id"])
        if seen is None:
            first[p["event_id"]] = p
            rows.setdefault(partition, []).append((p["model_version"], p["scored_time"]))
        elif _untimed(seen) == _untimed(p):
            replays += 1
        else:
            conflicts += 1
    return Predictions(rows, len(first), replays, conflicts)


def _untimed(p: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in p.items() if k not in TIMING_FIELDS}


@dataclass(frozen=True)
class PartitionSwitches:
    """How one partition followed the changes.

    ``first_ms[i]``: ``scored_time`` of the first prediction of change *i*'s target
    (None: the change never reached this partition). ``flips``: stretches of
    predictions whose version no change explains (a flip back, a version served
    before its change was made, or one not expected at all).
    """

    first_ms: tuple[int | None, ...]
    flips: int

    @property
    def missed(self) -> int:
        return sum(1 for t in self.first_ms if t is None)


def partition_switches(
    rows: Sequence[tuple[str, int]], initial: str, changes: Sequence[tuple[int, str]]
) -> PartitionSwitches:
    """Follow one partition's predictions through the expected versions ``initial, target_1, ...``.

    *rows* are (model_version, scored_time) in offset order; *changes* are (wall
    clock ms just before the change, target version). A row moves the partition
    on to change *i* only when it serves change *i*'s target and was scored at
    or after the change was made; any other version than the expected one
    starts a flip (counted once per stretch).

    Examples
    --------
    >>> rows = [("a", 10), ("a", 20), ("b", 35), ("b", 50), ("a", 80)]
    >>> partition_switches(rows, "a", [(30, "b"), (70, "a")])
    PartitionSwitches(first_ms=(35, 80), flips=0)
    >>> partition_switches([("a", 10), ("b", 35), ("a", 40), ("b", 45)], "a", [(30, "b"), (70, "a")])
    PartitionSwitches(first_ms=(35, None), flips=1)
    """
    expected = [initial, *(target for _, target in changes)]
    first: list[int | None] = [None] * len(changes)
    stage, flips, flipped = 0, 0, False
    for version, scored in rows:
        if version == expected[stage]:
            flipped = False
            continue
        nxt = stage + 1
        if nxt < len(expected) and version == expected[nxt] and scored >= changes[nxt - 1][0]:
            stage, flipped = nxt, False
            first[nxt - 1] = scored
        elif not flipped:
            flips, flipped = flips + 1, True
    return PartitionSwitches(tuple(first), flips)


def change_delays(
    switches: Mapping[int, PartitionSwitches], changes: Sequence[ChangeMade], *, since_call: bool = False
) -> dict[int, dict[int, float]]:
    """Change index -> partition -> ms from the change to its first prediction there (reached pairs only).

    ``since_call``: from when the call returned instead (negative where a scorer switched
    before the call was done, e.g. while its audit event was written).
    """
    return {
        c.index: {
            partition: first - (c.done_ms if since_call else c.at_ms)
            for partition, s in sorted(switches.items())
            if (first := s.first_ms[i]) is not None
        }
        for i, c in enumerate(changes)
    }


# ------------------------------------------------------------------------------ the run


def _wait_assigned(proc: Process, timeout_s: float) -> None:
    """Until *proc*'s log says it was given partitions (the runtime logs each assignment)."""
    deadline = time.monotonic() + timeout_s
    while "INFO rigwatch.runtime: assigned " not in proc.log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise ProcessError(
                f"{proc.name} (pid {proc.pid}) was not assigned partitions within {timeout_s:.0f} s;"
                f" last lines of {proc.log}:\n{log_tail(proc.log)}"
            )
        time.sleep(0.1)


def _read_predictions(settings: Settings, sent: int, timeout_s: float) -> list[tuple[int, int, dict]]:
    """Every prediction on the topic: until *sent* distinct events are seen (and 1 s more), or the timeout."""
    decode = Codecs.load().prediction.decode
    records: list[tuple[int, int, dict]] = []
    ids: set[str] = set()
    deadline = time.monotonic() + timeout_s
    settle: float | None = None
    with TopicReader(settings.bootstrap or "", [settings.topics.predictions]) as reader:
        while time.monotonic() < (settle if settle is not None else deadline):
            for m in reader.poll(0.2):
                p = decode(m.value())
                ids.add(p["event_id"])
                # A consumed record always has both; None is only for a message built by hand.
                records.append((m.partition() or 0, m.offset() or 0, p))
            if settle is None and len(ids) >= sent:
                settle = time.monotonic() + 1.0
    return records


def _change(settings: Settings, index: int, a: str, b: str) -> ChangeMade:
    """Change *index* (1-based): odd ones promote b, even ones roll back to a."""
    kind = "promote" if index % 2 else "rollback"
    at_ms, began = int(time.time() * 1000), time.perf_counter()
    if kind == "promote":
        change = promote(settings, DEPLOYMENT, b, reason="other", comment="bench deploy", actor=ACTOR)
    else:
        change = rollback(settings, DEPLOYMENT, reason="other", comment="bench deploy", actor=ACTOR)
    call_ms = (time.perf_counter() - began) * 1000
    return ChangeMade(index, kind, b if kind == "promote" else a, at_ms, call_ms, int(change.record["time"]))


class _Feeder(threading.Thread):
    """The pump on a thread of its own, until its stop flag is set; keeps its report or error."""

    def __init__(self, settings: Settings, dataset: Dataset, options: PumpOptions) -> None:
        super().__init__(daemon=True)
        self.settings, self.dataset, self.options = settings, dataset, options
        self.stop = StopFlag()
        self.report: PumpReport | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.report = run_pump(self.settings, self.dataset, self.options, self.stop, out=io.StringIO())
        except BaseException as exc:  # reported by the bench, which is waiting on this thread
            self.error = exc

    def finish(self) -> PumpReport:
        self.stop.set()
        self.join()
        if self.report is None:
            raise RigwatchError(f"the pump failed: {self.error}") from self.error
        return self.report


def _one_run(
    settings: Settings,
    dataset: Dataset,
    models: tuple[Path, Path],
    n: int,
    options: DeployBenchOptions,
    logs: Path,
    say: Callable[[str], None],
) -> dict[str, Any]:
    run = settings.model_copy(update={"topic_prefix": f"bd{uuid.uuid4().hex[:8]}."})
    create_rig_topics(run.bootstrap or "", run.topics, partitions=options.partitions)
    children = ProcessHarness(logs / f"scorers-{n}")
    # No labels: nothing reads rig.actuals here, and they would only load the broker.
    feeder = _Feeder(run, dataset, PumpOptions(rate=options.rate, rigs=options.rigs, label_coverage=0.0))
    changes: list[ChangeMade] = []
    try:
        a, b = (registered_version(run, m, actor=ACTOR) for m in models)
        create_deployment(run, DEPLOYMENT, a, actor=ACTOR, comment="bench deploy")
        env = run.to_env(
            RIGWATCH_SCORER_GROUP=f"bench-deploy-{uuid.uuid4().hex[:6]}",
            RIGWATCH_SCORER_DEPLOYMENT=DEPLOYMENT,
            RIGWATCH_SCORER_METRICS_PORT="-1",
        )
        scorers = [children.start(["scorer"], env, name=f"scorer-{i + 1}") for i in range(n)]
        for proc in scorers:
            _wait_assigned(proc, options.timeout_s)
        feeder.start()
        began = time.time()
        time.sleep(options.warmup_s)
        pids = {**stack_pids(run), **{p.name: p.pid for p in scorers}}
        t0, cpu0 = time.monotonic(), _cpu(pids)
        for index in range(1, options.changes + 1):
            time.sleep(max(0.0, t0 + (index - 1) * options.every_s - time.monotonic()))
            if not feeder.is_alive():
                raise RigwatchError(f"the pump stopped early: {feeder.error}")
            made = _change(run, index, a, b)
            changes.append(made)
            say(
                f"  {n} scorer(s), change {index}/{options.changes} at {made.at_ms / 1000 - began:5.1f} s:"
                f" {made.kind} -> {made.target} (call {made.call_ms:.0f} ms)"
            )
        time.sleep(options.every_s)
        elapsed, cpu1 = time.monotonic() - t0, _cpu(pids)
        report = feeder.finish()
        for proc in scorers:
            proc.check_running()
        records = _read_predictions(run, report.readings, options.timeout_s)
    finally:
        if feeder.is_alive():  # a change or a scorer failed mid-run
            feeder.stop.set()
            feeder.join()
        children.stop_all()
        delete_topics(run.bootstrap or "", run.topics.all())
    failures = children.failures()
    if failures:
        say("  warning: " + "; ".join(f.splitlines()[0] for f in failures))
    return _figures(n, (a, b), changes, report, dedupe(records), elapsed, cpu0, cpu1, not failures)


def _figures(
    n: int,
    versions: tuple[str, str],
    changes: Sequence[ChangeMade],
    report: PumpReport,
    predictions: Predictions,
    elapsed: float,
    cpu0: Mapping[str, float],
    cpu1: Mapping[str, float],
    clean: bool,
) -> dict[str, Any]:
    targets = [(c.at_ms, c.target) for c in changes]
    switches = {p: partition_switches(rows, versions[0], targets) for p, rows in predictions.rows.items()}
    delays = change_delays(switches, changes)
    after = change_delays(switches, changes, since_call=True)
    by_kind = {k: [d for c in changes if c.kind == k for d in delays[c.index].values()] for k in KINDS}
    after_by_kind = {k: [d for c in changes if c.kind == k for d in after[c.index].values()] for k in KINDS}
    cpu = {(SELF_CPU if k == _SELF_CPU else k): (cpu1[k] - cpu0[k]) / elapsed for k in cpu0}
    correctness = {
        "readings_sent": report.readings,
        "predicted": predictions.unique,
        "missing": report.readings - predictions.unique,
        "replays": predictions.replays,
        "conflicts": predictions.conflicts,
        "partitions": len(switches),
        "flips": sum(s.flips for s in switches.values()),
        "missed_switches": sum(s.missed for s in switches.values()),
    }
    correctness["ok"] = not any(correctness[k] for k in ("missing", "conflicts", "flips", "missed_switches"))
    return {
        "scorers": n,
        "versions": {"a": versions[0], "b": versions[1]},
        "readings_per_s": report.readings / report.seconds if report.seconds else math.nan,
        "seconds": elapsed,
        "changes": [
            asdict(c) | {"delays_ms": {str(p): d for p, d in delays[c.index].items()}} for c in changes
        ],
        "change_to_first_ms": {k: latency_summary(v) for k, v in by_kind.items()}
        | {"all": latency_summary([d for v in by_kind.values() for d in v])},
        "call_ms": {k: latency_summary([c.call_ms for c in changes if c.kind == k]) for k in KINDS},
        "call_returned_to_first_ms": {k: latency_summary(v) for k, v in after_by_kind.items()},
        "correctness": correctness,
        "cpu_share": cpu,
        "clean_exits": clean,
    }


def _summary_line(r: Mapping[str, Any]) -> str:
    s, ok = r["change_to_first_ms"], r["correctness"]
    lat = "; ".join(
        f"{k} -> first p50 {s[k]['p50']:.0f} / p99 {s[k]['p99']:.0f} / max {s[k]['max']:.0f} ms"
        for k in KINDS
    )
    scorers = sum(v for k, v in r["cpu_share"].items() if k.startswith("scorer"))
    return (
        f"  {r['scorers']} scorer(s): {lat}; missing {ok['missing']}, conflicts {ok['conflicts']},"
        f" flips {ok['flips']}, missed switches {ok['missed_switches']};"
        f" broker CPU {r['cpu_share'].get('broker', math.nan):.0%}, scorers CPU {scorers:.0%}"
    )


def run_deploy_bench(
    settings: Settings,
    dataset: Dataset,
    model_dir: Path,
    options: DeployBenchOptions,
    out_dir: Path,
    say: Callable[[str], None] = print,
) -> tuple[dict[str, Any], Path]:
    """Every scorer count once; writes ``bench-deploy-<time>.json`` and ``.md`` to *out_dir*.

    *settings* must be bound to a broker; *model_dir* is model a. Model b is trained here
    with ``options.seed_b``; both go to a model store under ``<out_dir>/deploy-<time>/``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logs = out_dir / f"deploy-{stamp}"
    began, load_before = time.monotonic(), os.getloadavg()[0]
    second = train(dataset, seed=options.seed_b, num_threads=1).write(logs / "model-b")
    bound = settings.model_copy(update={"model_store": logs / "store"})
    versions = (ModelPackage.load(model_dir).version, ModelPackage.load(second).version)
    if versions[0] == versions[1]:
        raise RigwatchError(f"seed {options.seed_b} gave the same model version {versions[0]}: pick another")
    say(f"models: a {versions[0]}, b {versions[1]} (seed {options.seed_b})")
    runs = []
    for n in options.scorers:
        say(
            f"deploy changes with {n} scorer(s): {options.changes} every {options.every_s:g} s"
            f" after {options.warmup_s:g} s, pump {options.rate:,.0f} readings/s, {options.rigs} rigs ..."
        )
        runs.append(_one_run(bound, dataset, (model_dir, second), n, options, logs, say))
        say(_summary_line(runs[-1]))
    result = {
        # Other processes on the machine share its CPUs: the 1-minute load before and after says how much.
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_avg_1m": [load_before, os.getloadavg()[0]],
        },
        "options": asdict(options),
        "data": dataset.source,
        "runs": runs,
        "runtime_s": time.monotonic() - began,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    json_path = out_dir / f"bench-deploy-{stamp}.json"
    json_path.write_text(json.dumps(result, indent=2, default=float))
    table = markdown(result)
    json_path.with_suffix(".md").write_text(table)
    say(table)
    return result, json_path


def _ms(s: Mapping[str, float], key: str) -> str:
    return "–" if not s["n"] or not math.isfinite(s[key]) else f"{s[key]:.0f}"


def markdown(result: Mapping[str, Any]) -> str:
    """Latency per scorer count and kind of change; then correctness and CPU per run."""
    o = result["options"]
    lines = [
        "# rigwatch bench deploy",
        "",
        f"{result['created_at']}, {result['machine']['cpus']} CPUs{_load(result['machine'])}, data"
        f" {result['data']}. Pump {o['rate']:,.0f} readings/s, {o['rigs']} rigs, {o['partitions']}"
        f" partitions; {o['changes']} changes (promote b / roll back to a) every {o['every_s']:g} s"
        f" after {o['warmup_s']:g} s. Change → first prediction of the target version: wall clock"
        " just before the lifecycle call to that prediction's scored_time, per (change, partition).",
        "",
        "| scorers | change | pairs | p50 ms | p99 ms | max ms | call p50 / max ms"
        " | call returned → first p50 / max ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        for kind in KINDS:
            s, call = r["change_to_first_ms"][kind], r["call_ms"][kind]
            after = r["call_returned_to_first_ms"][kind]
            lines.append(
                f"| {r['scorers']} | {kind} | {s['n']:.0f} | {_ms(s, 'p50')} | {_ms(s, 'p99')}"
                f" | {_ms(s, 'max')} | {_ms(call, 'p50')} / {_ms(call, 'max')}"
                f" | {_ms(after, 'p50')} / {_ms(after, 'max')} |"
            )
    lines += [
        "",
        "| scorers | readings | readings/s | missing | replays | conflicts | flips | missed switches"
        " | broker CPU | scorers CPU | bench CPU | exit 0 after SIGTERM |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        ok, cpu = r["correctness"], r["cpu_share"]
        scorers = " + ".join(f"{v:.0%}" for k, v in sorted(cpu.items()) if k.startswith("scorer"))
        lines.append(
            f"| {r['scorers']} | {ok['readings_sent']:,} | {r['readings_per_s']:,.0f} | {ok['missing']}"
            f" | {ok['replays']} | {ok['conflicts']} | {ok['flips']} | {ok['missed_switches']}"
            f" | {cpu.get('broker', math.nan):.0%} | {scorers} | {cpu.get(SELF_CPU, math.nan):.0%}"
            f" | {'yes' if r['clean_exits'] else 'no'} |"
        )
    lines += [
        "",
        "call: the promote / rollback call itself (checks, Deployment record, audit event);"
        " call returned → first: the rest, the scorers' part (negative where a scorer switched"
        " before the call returned).",
        "",
        "CPU as a share of one core from the first change to the end of the run. missing: readings"
        " without a prediction; replays: repeated predictions equal but for scored_time /"
        " processing_ms; conflicts: repeats that differ otherwise; flips: stretches of a partition's"
        " predictions whose version no change explains; missed switches: (change, partition) pairs"
        " whose target version never came.",
    ]
    return "\n".join(lines) + "\n"
