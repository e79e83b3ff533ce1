"""``rigwatch bench console``: ``POST /score`` of a running ``rigwatch console``, over HTTP.

A console process is started on fresh topics with deployment ``cooler`` served
by the bench's model and a viewer token; one client then sends, on one
keep-alive connection, one request after the other (each measured from the
request's first byte to the answer's last):

``single``
    one real reading per request: latency p50 / p99 / max, ``publish=false``
    (scoring only) and ``publish=true`` (the reading also produced to the
    readings topic and acknowledged by the broker before the answer);
``batch``
    *batch* readings per request: readings/s, with and without publishing.

Beside each phase, the console's CPU per reading. Results go to
``<out>/console-<timestamp>.json`` and ``.md``: medians with min–max over the repeats.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadgen.bench import summary
from rigwatch.config import Settings
from rigwatch.data import Dataset
from rigwatch.exceptions import ProcessError
from rigwatch.harness import Process, ProcessHarness, free_port
from rigwatch.kafka import create_rig_topics, delete_topics
from rigwatch.lifecycle.operations import create_deployment, register_model
from services.console.roles import Role
from services.console.tokens import TokenStore

__all__ = ["ConsoleBenchOptions", "markdown", "percentiles", "run_console_bench"]

#: (phase, readings per request, publish) in the order they run.
PHASES = ("single", "single+publish", "batch", "batch+publish")


@dataclass(frozen=True)
class ConsoleBenchOptions:
    """What ``rigwatch bench console`` measures; see its ``--help``."""

    requests: int = 1000
    batches: int = 200
    batch: int = 100
    repeats: int = 3
    out: Path = Path("results")


def percentiles(values_ms: list[float]) -> dict[str, float]:
    """p50, p99 and max of latencies (ms), nearest rank.

    Examples
    --------
    >>> percentiles([float(v) for v in range(1, 101)])
    {'p50': 50.0, 'p99': 99.0, 'max': 100.0}
    """
    ordered = sorted(values_ms)

    def rank(q: float) -> float:
        return ordered[max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 100)) - 1))]

    return {"p50": rank(50), "p99": rank(99), "max": ordered[-1]}


class _Client:
    """One keep-alive connection to the console."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.conn.request("POST", path, body, self.headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.conn.close()


def _body(readings: list[dict[str, Any]], publish: bool) -> bytes:
    return json.dumps({"deployment": "cooler", "readings": readings, "publish": publish}).encode()


def _wait_ready(port: int, proc: Process, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check_running()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/v1/health")
            if json.loads(conn.getresponse().read()).get("ready"):
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.2)
    raise ProcessError(f"console not ready after {timeout:.0f} s; see {proc.log}")


def _phase(client: _Client, proc: Process, bodies: list[bytes], readings_each: int) -> dict[str, float]:
    """Send *bodies* one after the other; latency, readings/s and the console's CPU per reading."""
    latencies = []
    cpu, wall = proc.cpu_seconds(), time.perf_counter()
    for body in bodies:
        started = time.perf_counter()
        status, answer = client.post("/api/v1/score", body)
        latencies.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise ProcessError(f"POST /score answered {status}: {answer[:300]!r}")
    wall, cpu = time.perf_counter() - wall, proc.cpu_seconds() - cpu
    readings = len(bodies) * readings_each
    return {
        **percentiles(latencies),
        "mean_ms": statistics.fmean(latencies),
        "readings_per_s": readings / wall,
        "console_cpu_us_per_reading": cpu / readings * 1e6,
    }


def run_console_bench(
    settings: Settings,
    dataset: Dataset,
    model_dir: Path,
    options: ConsoleBenchOptions,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every phase *options.repeats* times against one console; JSON and markdown in *options.out*."""
    options.out.mkdir(parents=True, exist_ok=True)
    bench = settings.model_copy(update={"topic_prefix": f"bench-console-{uuid.uuid4().hex[:6]}."})
    assert bench.bootstrap is not None
    create_rig_topics(bench.bootstrap, bench.topics, partitions=4)
    runs: dict[str, list[dict[str, float]]] = {phase: [] for phase in PHASES}
    n = len(dataset)
    singles = [[{"rig_id": f"rig-{i % 8}", "cycle": i} | dataset.row(i % n)] for i in range(options.requests)]
    batches = [
        [{"rig_id": f"rig-{j % 8}", "cycle": j} | dataset.row(j % n) for j in range(i, i + options.batch)]
        for i in range(0, options.batches * options.batch, options.batch)
    ]
    try:
        with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
            store = bench.model_copy(update={"model_store": Path(tmp) / "store"})
            registration, _ = register_model(store, model_dir, actor="bench")
            create_deployment(store, "cooler", registration.version, actor="bench")
            tokens = TokenStore(Path(tmp) / "tokens.json")
            token = tokens.add("bench", Role.VIEWER)
            port = free_port()
            env = store.to_env(RIGWATCH_CONSOLE_TOKENS_FILE=str(tokens.path), RIGWATCH_CONSOLE_PORT=str(port))
            with ProcessHarness(Path(tmp) / "logs") as children:
                proc = children.start(["console"], env)
                _wait_ready(port, proc)
                say(f"console ready on port {port}: model {registration.version}")
                client = _Client(port, token)
                try:
                    for _ in range(20):  # warm-up: the model load and first-call costs stay out
                        client.post("/api/v1/score", _body(singles[0], False))
                    for repeat in range(1, options.repeats + 1):
                        for phase in PHASES:
                            readings = singles if phase.startswith("single") else batches
                            bodies = [_body(r, phase.endswith("publish")) for r in readings]
                            each = 1 if phase.startswith("single") else options.batch
                            runs[phase].append(_phase(client, proc, bodies, each))
                            r = runs[phase][-1]
                            say(
                                f"[{repeat}/{options.repeats}] {phase}: p50 {r['p50']:.2f} ms,"
                                f" p99 {r['p99']:.2f} ms, {r['readings_per_s']:,.0f} readings/s"
                            )
                finally:
                    client.close()
                outcome = children.stop_all()[0]
                if not outcome.clean:
                    raise ProcessError(f"{outcome.describe()}; see {proc.log}")
    finally:
        delete_topics(bench.bootstrap, bench.topics.all())
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "options": {k: str(v) for k, v in options.__dict__.items()},
        "data": dataset.source,
        **{phase: {k: summary([r[k] for r in rs]) for k in rs[0]} for phase, rs in runs.items()},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = options.out / f"console-{stamp}.json"
    path.write_text(json.dumps(result, indent=2))
    table = markdown(result)
    path.with_suffix(".md").write_text(table)
    say(table)
    return result


def _fmt(s: Mapping[str, float], spec: str) -> str:
    return f"{s['median']:{spec}} ({s['min']:{spec}}–{s['max']:{spec}})"


def markdown(result: Mapping[str, Any]) -> str:
    """The result as markdown: medians with min–max over the repeats."""
    o = result["options"]
    lines = [
        f"rigwatch console benchmark, {result['created_at']}, {result['machine']['cpus']} CPUs, data"
        f" {result['data']}; one client, one keep-alive connection, requests one after the other;"
        f" {o['repeats']} repeats (median (min–max))",
        "",
        "| POST /score | requests | p50 ms | p99 ms | max ms | readings/s | console CPU µs/reading |",
        "|---|---|---|---|---|---|---|",
    ]
    for phase, label, count in (
        ("single", "1 reading, publish=false", o["requests"]),
        ("single+publish", "1 reading, publish=true", o["requests"]),
        ("batch", f"{o['batch']} readings, publish=false", o["batches"]),
        ("batch+publish", f"{o['batch']} readings, publish=true", o["batches"]),
    ):
        r = result[phase]
        lines.append(
            f"| {label} | {int(count):,} | {_fmt(r['p50'], '.2f')} | {_fmt(r['p99'], '.2f')} |"
            f" {_fmt(r['max'], '.1f')} | {_fmt(r['readings_per_s'], ',.0f')} |"
            f" {_fmt(r['console_cpu_us_per_reading'], ',.0f')} |"
        )
    lines.append("")
    return "\n".join(lines)
