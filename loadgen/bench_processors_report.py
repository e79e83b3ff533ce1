"""The pure parts of ``rigwatch bench processors``: figures from samples, statistics, the report.

No I/O: :mod:`loadgen.bench_processors` samples the services and calls these.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rigwatch.exceptions import RigwatchError

__all__ = [
    "Sample",
    "alert_stream",
    "busy_overlap",
    "combined",
    "counter_total",
    "interval_figures",
    "markdown",
    "ratios",
    "report",
    "stats",
]


@dataclass(frozen=True)
class Sample:
    """One look at a running service: seconds since launch, records counted, CPU seconds so far."""

    t: float
    count: float
    cpu: float
    broker_cpu: float = math.nan
    redis_cpu: float = math.nan


def counter_total(text: str, name: str) -> float:
    """The sum over labels of counter *name* in a Prometheus text exposition.

    Examples
    --------
    >>> counter_total('a_total{topic="x"} 2.0\\na_total{topic="y"} 3.0\\nb_total 9.0\\n', "a_total")
    5.0
    """
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if line.split("{", 1)[0].split(" ", 1)[0] == name:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of *y* on *x* (``NaN`` if any *y* is)."""
    mx, my = statistics.fmean(x), statistics.fmean(y)
    return sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sum((a - mx) ** 2 for a in x)


def interval_figures(samples: Sequence[Sample]) -> dict[str, float]:
    """Rates while the service was busy, from its samples (a few per second, in time order).

    Busy: from the first sample that counted a record to the first that saw the last
    count before the final one. The final count is left out: a service that counts at
    its checkpoint may count its last records only after a poll of an input that has
    run dry. events/s is
    the least-squares slope of the count against time over the busy samples, CPU % the
    slope of CPU seconds, CPU µs/event their ratio; with fewer than three busy samples,
    the first counted sample and the first with the final count give them instead.
    ``events_per_s_first_to_last`` is always that simpler two-point figure.

    Examples
    --------
    >>> s = [Sample(1.0, 0, 0.8), Sample(2.0, 1000, 1.0), Sample(3.0, 5000, 1.2),
    ...      Sample(4.0, 9000, 1.4), Sample(5.0, 12000, 1.7), Sample(6.0, 12000, 1.7)]
    >>> f = interval_figures(s)
    >>> f["events_per_s"], round(f["cpu_us_per_event"], 1), f["events_per_s_first_to_last"]
    (4000.0, 50.0, 3666.6666666666665)
    >>> f["startup_s"], f["events"], f["busy_s"]
    (2.0, 12000.0, 3.0)
    """
    start = next((i for i, s in enumerate(samples) if s.count > 0), None)
    if start is None:
        raise RigwatchError("no input record was counted")
    final = samples[-1].count
    end = next(i for i, s in enumerate(samples) if s.count >= final)
    first, last = samples[start], samples[end]
    if final <= first.count or last.t <= first.t:
        raise RigwatchError(
            f"all {final:.0f} records were counted within one sample: too few to time (raise --events)"
        )
    busy = samples[start:end]
    # Up to the first sample with the last count before the final one: a plateau of the
    # count just before the final jump is the idle wait, not work.
    busy = busy[: next(i for i, s in enumerate(busy) if s.count >= busy[-1].count) + 1] if busy else busy
    if len(busy) < 3 or busy[-1].count <= busy[0].count:
        busy = [first, last]
    t = [s.t for s in busy]
    rate = _slope(t, [s.count for s in busy])

    def per_s(values: Sequence[float]) -> float:
        return _slope(t, values) if all(math.isfinite(v) for v in values) else math.nan

    cpu, broker, redis = (per_s([getattr(s, k) for s in busy]) for k in ("cpu", "broker_cpu", "redis_cpu"))
    return {
        "events": float(final),
        "events_per_s": rate,
        "events_per_s_first_to_last": (final - first.count) / (last.t - first.t),
        "busy_s": last.t - first.t,
        "startup_s": first.t,
        "startup_cpu_s": first.cpu,
        "cpu_us_per_event": cpu / rate * 1e6,
        "cpu_pct": cpu * 100,
        "broker_cpu_us_per_event": broker / rate * 1e6,
        "broker_cpu_pct": broker * 100,
        "redis_cpu_us_per_event": redis / rate * 1e6,
        "redis_cpu_pct": redis * 100,
    }


def combined(series: Sequence[Sequence[Sample]]) -> list[Sample]:
    """Processes sampled together (one series each, same times) as one: counts and CPU added up.

    Time, broker and Redis CPU are the first series' (one look at them served every process).

    Examples
    --------
    >>> champion = [Sample(1.0, 100, 2.0, 50.0), Sample(2.0, 300, 2.5, 50.4)]
    >>> shadow = [Sample(1.0, 0, 1.5, 50.0), Sample(2.0, 250, 2.1, 50.4)]
    >>> [(s.t, s.count, s.cpu, s.broker_cpu) for s in combined([champion, shadow])]
    [(1.0, 100, 3.5, 50.0), (2.0, 550, 4.6, 50.4)]
    """
    return [
        Sample(at[0].t, sum(s.count for s in at), sum(s.cpu for s in at), at[0].broker_cpu, at[0].redis_cpu)
        for at in zip(*series, strict=True)
    ]


def busy_overlap(figures: Mapping[str, float], prefix: str) -> float:
    """The share of the busy interval in *figures* during which the ``<prefix>`` process was busy too.

    Both intervals run from ``startup_s`` for ``busy_s`` (:func:`interval_figures`, times
    since the same launch).

    Examples
    --------
    >>> busy_overlap({"startup_s": 2.0, "busy_s": 4.0, "shadow_startup_s": 3.0, "shadow_busy_s": 4.0},
    ...              "shadow_")
    0.75
    """
    start, end = figures["startup_s"], figures["startup_s"] + figures["busy_s"]
    other = figures[f"{prefix}startup_s"]
    other_end = other + figures[f"{prefix}busy_s"]
    return max(0.0, min(end, other_end) - max(start, other)) / (end - start)


def stats(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max of the finite *values*, and all of them.

    Examples
    --------
    >>> stats([3.0, 1.0, 2.0, float("nan")])
    {'median': 2.0, 'min': 1.0, 'max': 3.0, 'values': [3.0, 1.0, 2.0, nan]}
    """
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "values": list(values)}
    return {
        "median": statistics.median(finite),
        "min": min(finite),
        "max": max(finite),
        "values": list(values),
    }


def ratios(
    runs: Sequence[Mapping[str, Mapping[str, float]]], key: str = "events_per_s"
) -> dict[str, list[float]]:
    """``<service>/scorer`` of *key* within each repeat (*runs*: per repeat, service -> figures).

    Examples
    --------
    >>> ratios([{"scorer": {"events_per_s": 100.0}, "drift": {"events_per_s": 50.0}},
    ...         {"scorer": {"events_per_s": 80.0}, "drift": {"events_per_s": 60.0}}])
    {'drift/scorer': [0.5, 0.75]}
    """
    out: dict[str, list[float]] = {}
    for run in runs:
        if "scorer" not in run:
            continue
        for name, figures in run.items():
            if name != "scorer":
                out.setdefault(f"{name}/scorer", []).append(figures[key] / run["scorer"][key])
    return out


def alert_stream(windows: Sequence[Mapping[str, Any]], count: int) -> list[dict[str, Any]]:
    """*count* MetricWindows: *windows* in window-end order, repeated, each repetition shifted later.

    The shift is the span the windows cover, rounded up to a multiple of every window
    length, so a repeated window starts on a boundary of its own length.

    Examples
    --------
    >>> ws = [{"kind": "drift", "subject": "v1", "window_start": 0, "window_end": 30},
    ...       {"kind": "health", "subject": "v1", "window_start": 10, "window_end": 20}]
    >>> [(w["kind"], w["window_start"]) for w in alert_stream(ws, 5)]
    [('health', 10), ('drift', 0), ('health', 40), ('drift', 30), ('health', 70)]
    """
    if not windows:
        raise RigwatchError("no MetricWindows to build the alerts' input from")
    ordered = sorted(windows, key=lambda w: (w["window_end"], w["kind"], w["subject"]))
    lengths = {int(w["window_end"] - w["window_start"]) for w in ordered}
    span = max(w["window_end"] for w in ordered) - min(w["window_start"] for w in ordered)
    step = math.lcm(*lengths)
    shift = -(-span // step) * step
    out = []
    for i in range(count):
        cycle, window = divmod(i, len(ordered))
        w = ordered[window]
        out.append(
            {
                **w,
                "window_start": w["window_start"] + cycle * shift,
                "window_end": w["window_end"] + cycle * shift,
            }
        )
    return out


def report(
    runs: Sequence[Mapping[str, Mapping[str, float]]],
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Per service and figure the :func:`stats` over repeats; the ratios; broker and Redis CPU apart.

    Returns ``(throughput, ratios, broker_and_redis)``: ``throughput[service][figure]``,
    ``ratios["drift/scorer"]`` and ``broker_and_redis[service]["broker_cpu_pct" ...]``.
    """
    names = list(dict.fromkeys(name for run in runs for name in run))
    throughput: dict[str, dict[str, Any]] = {}
    for name in names:
        figures = [run[name] for run in runs if name in run]
        keys = list(dict.fromkeys(k for f in figures for k in f))
        throughput[name] = {k: stats([f.get(k, math.nan) for f in figures]) for k in keys}
    backend = {
        name: {k: v for k, v in figures.items() if k.startswith(("broker_", "redis_"))}
        for name, figures in throughput.items()
    }
    return throughput, {k: stats(v) for k, v in ratios(runs).items()}, backend


def _fmt(s: Mapping[str, Any] | None, spec: str) -> str:
    if not s or not math.isfinite(s["median"]):
        return "–"
    if s["min"] == s["max"]:
        return f"{s['median']:{spec}}"
    return f"{s['median']:{spec}} ({s['min']:{spec}}–{s['max']:{spec}})"


def _load(machine: Mapping[str, Any]) -> str:
    load = machine.get("load_avg_1m")
    return f" (1-min load {load[0]:.1f} before, {load[1]:.1f} after)" if load else ""


def markdown(result: Mapping[str, Any]) -> str:
    """The result as markdown: medians (min–max) over the repeats, the ratios, the live phase."""
    o = result["options"]
    stream = result.get("stream", {})
    lines = [
        f"Processors benchmark, {result['created_at']}, {result['machine']['cpus']} CPUs"
        f"{_load(result['machine'])}, data "
        f"{result['data']}, model {result.get('model_version', '?')}: {int(o['events']):,} readings, "
        f"{o['rigs']} rigs, event times {o['interval_ms']} ms apart, {o['repeats']} repeats, "
        f"{stream.get('metrics', 0):,} MetricWindows for alerts; each service its own process, "
        "fresh consumer group, from the beginning of its input. Median (min–max).",
        "",
        "| service | input records | events/s | CPU µs/event | CPU % | peak RSS MB | broker CPU % "
        "| broker CPU µs/event | Redis CPU µs/event | start-up s | windows out | drain s "
        "| exit 0 after SIGTERM |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, t in result["throughput"].items():
        clean = t.get("exit_clean", {}).get("values", [])
        lines.append(
            f"| {name} | {_fmt(t.get('events'), ',.0f')} | {_fmt(t.get('events_per_s'), ',.0f')} "
            f"| {_fmt(t.get('cpu_us_per_event'), '.1f')} | {_fmt(t.get('cpu_pct'), '.0f')} "
            f"| {_fmt(t.get('peak_rss_mb'), '.0f')} | {_fmt(t.get('broker_cpu_pct'), '.0f')} "
            f"| {_fmt(t.get('broker_cpu_us_per_event'), '.1f')} "
            f"| {_fmt(t.get('redis_cpu_us_per_event'), '.1f')} "
            f"| {_fmt(t.get('startup_s'), '.1f')} | {_fmt(t.get('windows'), ',.0f')} "
            f"| {_fmt(t.get('drain_s'), '.1f')} | {sum(1 for c in clean if c == 1.0)}/{len(clean)} |"
        )
    lines += _kinds(result["throughput"])
    lines += ["", "| ratio of events/s, same repeat | median (min–max) |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v, '.3f')} |" for k, v in result["ratios"].items()]
    lines += _paired(result["throughput"])
    live = result.get("live") or {}
    if live:
        from loadgen.bench_live import markdown as live_markdown

        lines += ["", *live_markdown(live)]
    for error in result.get("errors", []):
        lines.append(f"\n**Not measured:** {error}")
    lines += [
        "",
        "Definitions: input records are what the service consumed, by its own Prometheus counter "
        "(drift: readings + predictions; latency: predictions; accuracy: predictions + actuals; "
        "comparison: predictions + the challenger's shadow predictions of the same readings + actuals; "
        "scorer+shadow: readings, by the champion scorer; "
        f"alerts: MetricWindows), scraped every {float(o['poll_s']):g} s while the child's and the "
        "local stack's CPU time (/proc) are read. Busy: from the first scrape that counted a record to "
        "the first that saw the last count before the final one (the windowed services count at their "
        "checkpoint, and the last one can wait for a poll of an input that ran dry). events/s is the "
        "least-squares slope of the count over the busy scrapes; CPU % the slope of CPU seconds; "
        "CPU µs/event their ratio; the same for the broker (tansu) and Redis. Start-up (process start, "
        "imports, group join) is left out and shown apart. Peak RSS is VmHWM. Then a windowed service "
        f"keeps running until its MetricWindows stop coming ({float(o.get('drain_quiet_s', 3)):g} s "
        "quiet): windows out, and drain s from all input counted to the last window read; windows that "
        "close only once the input is idle may be missing. Peak RSS includes the drain. Scraping costs "
        "the child about 1 ms of CPU per scrape (measured on an idle drift service). scorer+shadow: a "
        "champion scorer and a shadow scorer (its own consumer group, serving the deployment's shadow "
        "challenger) run at once over the same readings; its row is the champion's, with the broker's and "
        "Redis's CPU of both scorers' load; 'both' adds up the two processes' counts (records consumed) "
        "and CPU over the span either was busy; 'busy together' is the share of the champion's busy "
        "interval in which the shadow scorer was busy too.",
    ]
    return "\n".join(lines) + "\n"


def _kinds(throughput: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A line per MetricWindow kind counted apart (``<kind>_windows``), e.g. comparison's."""
    lines = [
        f"- {name}: {_fmt(t[key], ',.0f')} {key.removesuffix('_windows')} windows of "
        f"{_fmt(t.get('windows'), ',.0f')} windows out"
        for name, t in throughput.items()
        for key in t
        if key.endswith("_windows")
    ]
    return ["", *lines] if lines else []


def _paired(throughput: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The champion's, the shadow scorer's and both processes' figures of a run with a shadow scorer."""
    paired = {name: t for name, t in throughput.items() if "shadow_events_per_s" in t}
    if not paired:
        return []
    lines = [
        "",
        "| run | process | events/s | CPU µs/event | CPU % | peak RSS MB | start-up s | busy together |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, t in paired.items():
        for label, prefix in (("champion", ""), ("shadow", "shadow_"), ("both", "combined_")):
            together = _fmt(t.get("shadow_overlap"), ".0%") if prefix == "shadow_" else ""
            own = prefix != "combined_"  # one process: its memory and start-up
            lines.append(
                f"| {name} | {label} | {_fmt(t.get(f'{prefix}events_per_s'), ',.0f')} "
                f"| {_fmt(t.get(f'{prefix}cpu_us_per_event'), '.1f')} "
                f"| {_fmt(t.get(f'{prefix}cpu_pct'), '.0f')} "
                f"| {_fmt(t.get(f'{prefix}peak_rss_mb'), '.0f') if own else '–'} "
                f"| {_fmt(t.get(f'{prefix}startup_s'), '.1f') if own else '–'} | {together} |"
            )
    return lines
