"""``rigwatch bench pipeline``: what the embedded broker sustains with every service running.

For each offered rate and request pattern, on fresh topics and consumer groups:
scorer, drift, latency, accuracy and alerts run as processes, and the pump (in
this process) sends readings at the rate with each label 1 s later. After a
warm-up, for ``seconds``:

event → prediction
    per prediction, the wall time a reader in this process got it from
    ``rig.predictions`` minus the reading's ``event_time`` (stamped when the pump
    queued it): what a downstream consumer sees. Also ``scored_time - event_time``
    (the scorer's part).
CPU
    of the broker, Redis, each service and this process (pump + reader), as a
    share of one core over the measured interval.

Request patterns: ``tuned`` is the shipped one (the scorer fetches with a 20 ms
wait and lingers 2 ms; monitoring processors long-poll 250 ms / 256 KiB and linger
50 ms; the latency service's lag probe reads only while sampling; the pump lingers
10 ms). ``legacy`` is the pattern before it: every service client fetches with a
10 ms wait and a 1-byte minimum and lingers 1 ms, the pump too. (The lag probe's
pausing is not undone by ``legacy``.) The reader that measures latency fetches with
a 10 ms wait in both.
"""

from __future__ import annotations

import io
import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loadgen.pump import PUMP_LINGER_MS, PumpOptions, run_pump
from rigwatch.config import Settings
from rigwatch.data import Dataset
from rigwatch.harness import ProcessHarness, cpu_seconds, stack_pids
from rigwatch.kafka import StopFlag, TopicReader, create_topics, delete_topics
from rigwatch.schemas import Codecs

__all__ = [
    "PATTERNS",
    "SERVICES",
    "PipelineBenchOptions",
    "latency_summary",
    "markdown",
    "run_pipeline_bench",
]

SERVICES = ("scorer", "drift", "latency", "accuracy", "alerts")

#: Request pattern -> (environment of the services, pump linger ms).
PATTERNS: dict[str, tuple[dict[str, str], int]] = {
    "tuned": ({}, PUMP_LINGER_MS),
    "legacy": (
        {
            "RIGWATCH_KAFKA_FETCH_WAIT_MAX_MS": "10",
            "RIGWATCH_KAFKA_FETCH_MIN_BYTES": "1",
            "RIGWATCH_KAFKA_LINGER_MS": "1",
        },
        1,
    ),
}


@dataclass(frozen=True)
class PipelineBenchOptions:
    """What ``rigwatch bench pipeline`` runs."""

    rates: tuple[int, ...] = (300, 1000, 2000)
    patterns: tuple[str, ...] = ("tuned", "legacy")
    seconds: float = 30.0
    warmup_s: float = 8.0
    window_ms: int = 5_000
    rigs: int = 8
    #: Which services run (the scorer alone shows what monitoring adds on the broker).
    services: tuple[str, ...] = SERVICES


def latency_summary(values_ms: Sequence[float]) -> dict[str, float]:
    """n, p50, p95, p99 and max of latencies in ms (NaN when there are none).

    Examples
    --------
    >>> s = latency_summary([10.0] * 98 + [100.0, 400.0])
    >>> s["n"], s["p50"], s["max"]
    (100.0, 10.0, 400.0)
    """
    if not values_ms:
        return {"n": 0.0, "p50": math.nan, "p95": math.nan, "p99": math.nan, "max": math.nan}
    a = np.asarray(values_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "n": float(a.size),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(a.max()),
    }


class _PredictionClock(threading.Thread):
    """Reads ``rig.predictions``; keeps (arrival ms, event_time, scored_time) of each."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings, self.stop = settings, threading.Event()
        self.seen: list[tuple[int, int, int]] = []
        # A 10 ms fetch wait, as a latency-critical consumer would use: the instrument adds
        # at most 10 ms (and its fetches are part of the broker's load).
        self._reader = TopicReader(settings.bootstrap or "", [settings.topics.predictions], fetch_wait_ms=10)

    def run(self) -> None:
        decode = Codecs.load().prediction.decode
        try:
            while not self.stop.is_set():
                messages = self._reader.poll(0.05)
                now = int(time.time() * 1000)
                for m in messages:
                    p = decode(m.value())
                    self.seen.append((now, p["event_time"], p["scored_time"]))
        finally:
            self._reader.close()


def _cpu(pids: Mapping[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        try:
            out[name] = cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            out[name] = math.nan
    out["bench (pump + reader)"] = time.process_time()
    return out


def _one_run(
    settings: Settings,
    dataset: Dataset,
    rate: int,
    pattern: str,
    options: PipelineBenchOptions,
    logs: Path,
    say: Callable[[str], None],
) -> dict[str, Any]:
    env, pump_linger = PATTERNS[pattern]
    run = settings.model_copy(update={"topic_prefix": f"bp{uuid.uuid4().hex[:8]}."})
    create_topics(run.bootstrap or "", run.topics.all(), partitions=4)
    tag = uuid.uuid4().hex[:6]
    windows = {
        f"RIGWATCH_{s.upper()}_WINDOW_MS": str(options.window_ms) for s in ("drift", "latency", "accuracy")
    }
    children = ProcessHarness(logs / f"{rate}-{pattern}")
    clock = _PredictionClock(run)
    try:
        services = {
            name: children.start(
                [name],
                run.to_env(
                    **{f"RIGWATCH_{name.upper()}_GROUP": f"bench-{name}-{tag}"},
                    **{f"RIGWATCH_{name.upper()}_METRICS_PORT": "-1"},
                    **windows,
                    **env,
                ),
            )
            for name in options.services
        }
        clock.start()
        stop = StopFlag()
        pump = PumpOptions(
            rate=rate,
            duration=options.warmup_s + options.seconds,
            rigs=options.rigs,
            label_delay=1.0,
            seed=rate,
            linger_ms=pump_linger,
        )
        sent: list[Any] = []
        feeder = threading.Thread(
            target=lambda: sent.append(run_pump(run, dataset, pump, stop, out=io.StringIO()))
        )
        feeder.start()
        time.sleep(options.warmup_s)
        pids = {**stack_pids(run), **{name: p.pid for name, p in services.items()}}
        t0, cpu0, since_ms = time.monotonic(), _cpu(pids), int(time.time() * 1000)
        feeder.join()
        elapsed, cpu1 = time.monotonic() - t0, _cpu(pids)
        time.sleep(2.0)  # the last predictions reach the reader
        for proc in services.values():
            proc.check_running()
    finally:
        clock.stop.set()
        children.stop_all()
        delete_topics(run.bootstrap or "", run.topics.all())
    failures = children.failures()
    if failures:
        say("  warning: " + "; ".join(f.splitlines()[0] for f in failures))
    measured = [(a, e, s) for a, e, s in clock.seen if e >= since_ms]
    result: dict[str, Any] = {
        "rate": rate,
        "pattern": pattern,
        "services": list(options.services),
        "seconds": elapsed,
        "readings_per_s": len(measured) / elapsed,
        "event_to_prediction_ms": latency_summary([a - e for a, e, _ in measured]),
        "event_to_scored_ms": latency_summary([s - e for _, e, s in measured]),
        "cpu_share": {name: (cpu1[name] - cpu0[name]) / elapsed for name in cpu0},
        "clean_exits": not failures,
    }
    e2e, broker = result["event_to_prediction_ms"], result["cpu_share"].get("broker", math.nan)
    say(
        f"  {rate}/s {pattern} ({'+'.join(options.services)}): {result['readings_per_s']:,.0f} predictions/s,"
        " event→prediction"
        f" p50 {e2e['p50']:.0f} / p99 {e2e['p99']:.0f} ms, broker CPU {broker:.0%}"
    )
    return result


def run_pipeline_bench(
    settings: Settings,
    dataset: Dataset,
    options: PipelineBenchOptions,
    out_dir: Path,
    say: Callable[[str], None] = print,
) -> tuple[dict[str, Any], Path]:
    """Every rate × pattern once; writes ``bench-pipeline-<time>.json`` and ``.md`` to *out_dir*."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    runs = []
    for rate in options.rates:
        for pattern in options.patterns:
            say(f"pipeline at {rate} readings/s, {pattern} request pattern ...")
            runs.append(
                _one_run(settings, dataset, rate, pattern, options, out_dir / f"pipeline-{stamp}", say)
            )
    result = {"options": asdict(options), "data": dataset.source, "runs": runs}
    json_path = out_dir / f"bench-pipeline-{stamp}.json"
    json_path.write_text(json.dumps(result, indent=2, default=float))
    json_path.with_suffix(".md").write_text(markdown(result))
    return result, json_path


def markdown(result: Mapping[str, Any]) -> str:
    """The runs as one table: rate, pattern, throughput, latency, CPU shares."""
    names = ["broker", "redis", *SERVICES, "bench (pump + reader)"]
    head = "| offered/s | pattern | predictions/s | event→prediction p50 / p99 / max ms | scored p99 ms | "
    head += " | ".join(f"{n} CPU" for n in names) + " |"
    opts = result["options"]
    lines = [
        "# rigwatch bench pipeline",
        "",
        f"{opts['seconds']:.0f} s measured per run after {opts['warmup_s']:.0f} s warm-up;"
        f" CPU as a share of one core. Data: {result['data']}",
        "",
        head,
        "|" + "---|" * (5 + len(names)),
    ]
    for r in result["runs"]:
        e2e, scored, cpu = r["event_to_prediction_ms"], r["event_to_scored_ms"], r["cpu_share"]
        cells = [
            str(r["rate"]),
            r["pattern"],
            f"{r['readings_per_s']:,.0f}",
            f"{e2e['p50']:.0f} / {e2e['p99']:.0f} / {e2e['max']:.0f}",
            f"{scored['p99']:.0f}",
            *(f"{cpu.get(n, math.nan):.0%}" for n in names),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
