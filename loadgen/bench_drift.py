"""``rigwatch bench drift``: events/s of the drift processor, its parts, and a scipy baseline.

One run measures, each ``repeats`` times, on the same pre-encoded real readings
(simulated event times ``interval_ms`` apart, ``rigs`` rigs round-robin):

``update_path``
    :meth:`DriftHandler.readings <services.drift.handler.DriftHandler.readings>`
    in this process, one thread, on batches of ``batch`` readings: what every
    record costs before Redis. Split into decode, window grouping, counting
    (:meth:`DriftLayout.readings <rigwatch.drift.counts.DriftLayout.readings>`)
    and packing each window's counts (:func:`~rigwatch.windowing.pack_counts`, what a
    checkpoint sends to Redis) in a second, separately timed pass.
``window_close``
    ``evaluate()`` and ``DriftHandler.window()`` per closed window of a few
    sizes, warm (null thresholds cached) and cold (first window of a fresh profile).
``baseline_scipy``
    The naive alternative: keep every raw event, decode it with the codec, and
    at each window compute the same statistics from the raw values with
    scipy / numpy (:func:`baseline_statistics`), for the same windows.
``redis_apply`` and ``end_to_end``
    The batches' updates applied to Redis by :class:`~rigwatch.windowstore.WindowStore`,
    and ``rigwatch drift`` as a child process through the real broker and Redis,
    from preloaded fresh topics to the last MetricWindow on ``rig.metrics``.

Results go to ``<out>/drift-<timestamp>.json`` and ``.md``: medians with min–max.
"""

from __future__ import annotations

import io
import json
import math
import os
import pstats
import re
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from scipy import stats as sps
from scipy.spatial import distance

from loadgen.bench import summary
from loadgen.readings import ReadingStream, stepping_clock
from rigwatch.codec import Codec
from rigwatch.config import Settings
from rigwatch.data import FEATURES, Dataset
from rigwatch.drift.counts import DriftLayout
from rigwatch.drift.evaluate import PER_FEATURE, evaluate
from rigwatch.drift.profile import DriftProfile
from rigwatch.fastcodec import BatchDecoder
from rigwatch.harness import Process, cpu_seconds, stack_pids
from rigwatch.model import ModelPackage
from rigwatch.runtime.checkpoint import SourceSpan
from rigwatch.schemas import Codecs
from rigwatch.windowing import Updates, pack_counts
from services.drift.handler import DriftHandler, window_groups

__all__ = [
    "BASELINE_STATISTICS",
    "DriftBenchOptions",
    "baseline_statistics",
    "markdown",
    "run_drift_bench",
    "summarize",
]

#: Per-feature statistics the baseline recomputes: evaluate()'s, less the ratio to the null threshold.
BASELINE_STATISTICS = tuple(name for name in PER_FEATURE if name != "psi_ratio")
#: Least wall time of one timed in-process measurement (passes over the batches repeat).
MIN_TIMED_S = 1.0
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class DriftBenchOptions:
    """What ``rigwatch bench drift`` measures; see its ``--help``."""

    events: int = 100_000
    repeats: int = 3
    batch: int = 2000
    rigs: int = 4
    interval_ms: int = 10
    window_ms: int = 30_000
    lateness_ms: int = 5_000
    idle_ms: int = 10_000
    min_count: int = 30
    partitions: int = 4
    #: Readings per closed window timed by ``window_close`` (a segment, a model-version window, a big one).
    close_sizes: tuple[int, ...] = (75, 300, 30_000)
    #: Warm windows timed per size and repeat.
    close_windows: int = 30
    end_to_end: bool = True
    profile: bool = False
    out: Path = Path("results")


@dataclass(frozen=True)
class Encoded:
    """The pre-encoded readings every measurement uses."""

    values: list[bytes]
    keys: list[str]
    times: npt.NDArray[np.int64]
    rigs: list[str]

    def batches(self, size: int) -> list[list[bytes]]:
        return [self.values[i : i + size] for i in range(0, len(self.values), size)]


def encode_readings(dataset: Dataset, codec: Codec, options: DriftBenchOptions) -> Encoded:
    """``options.events`` real readings, event times ``interval_ms`` apart from a window boundary."""
    now = int(time.time() * 1000)
    start = now - now % options.window_ms
    stream = ReadingStream(
        dataset, codec, run_id="benchdrift", rigs=options.rigs, count=options.events, seed=7
    )
    values, keys, times, rigs = [], [], [], []
    for event in stream.events(stepping_clock(start, options.interval_ms)):
        assert event.reading is not None
        values.append(event.value)
        keys.append(event.key)
        times.append(event.reading["event_time"])
        rigs.append(event.reading["rig_id"])
    return Encoded(values, keys, np.asarray(times, dtype=np.int64), rigs)


def _handler(profile: DriftProfile, codecs: Codecs, options: DriftBenchOptions) -> DriftHandler:
    return DriftHandler(
        profile,
        codecs.sensor_reading,
        codecs.prediction,
        size_ms=options.window_ms,
        min_count=options.min_count,
    )


# ---------------------------------------------------------------- 1. the statistics update path


def _window_groups(
    times: npt.NDArray[np.int64], rigs: Sequence[str], size_ms: int, version: str
) -> tuple[list[tuple[str, int]], npt.NDArray[np.int64]]:
    """(subject, window start) keys and the group of every row twice (version, then segment)."""
    keys, version_group, segment_group = window_groups(times, rigs, size_ms, version)
    return keys, np.concatenate([version_group, segment_group]).astype(np.int64)


def measure_update_path(
    profile: DriftProfile, codecs: Codecs, encoded: Encoded, options: DriftBenchOptions
) -> tuple[dict[str, float], list[Updates]]:
    """Events/s of ``DriftHandler.readings`` (wall and CPU), then its parts timed separately."""
    handler = _handler(profile, codecs, options)
    batches = encoded.batches(options.batch)
    sources = ["bench/0"] * options.batch
    handler.readings(batches[0], sources[: len(batches[0])])  # warm-up: column lookup, imports
    # Each batch's updates are dropped, as the processor drops them after Redis: keeping them
    # all would add garbage-collector passes over a growing heap (10-20 % measured). Passes
    # over all batches repeat until MIN_TIMED_S, so a small --events still times enough work.
    passes, wall, cpu = 0, time.perf_counter(), time.process_time()
    while not passes or time.perf_counter() - wall < MIN_TIMED_S:
        for values in batches:
            handler.readings(values, sources[: len(values)])
        passes += 1
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    out = [handler.readings(b, sources[: len(b)]) for b in batches]  # for Redis and the comparison
    n = len(encoded.values) * passes
    packed = sum(len(pack_counts(*u.counts)) for batch in out for u in batch.updates if u.counts is not None)

    # The parts, in a second pass: a timer around every step would disturb the total above.
    decoder = BatchDecoder(codecs.sensor_reading)
    layout = DriftLayout(profile)
    parts = dict.fromkeys(("decode", "group", "count", "fields"), 0.0)
    columns: np.ndarray | None = None
    for values in batches * passes:
        t0 = time.perf_counter()
        batch = decoder.decode(values)
        if columns is None:
            columns = np.array([batch.double_names.index(f) for f in profile.features], dtype=np.intp)
        x = batch.doubles[:, columns]
        x = np.where(np.isfinite(x), x, np.nan)
        t1 = time.perf_counter()
        keys, groups = _window_groups(
            batch.longs["event_time"], batch.strings["rig_id"], options.window_ms, profile.model_version
        )
        t2 = time.perf_counter()
        ints, floats = layout.readings(x, np.split(groups, 2), len(keys))
        records = np.bincount(groups, minlength=len(keys))
        t3 = time.perf_counter()
        for g in np.flatnonzero(records).tolist():
            pack_counts(ints[g], floats[g])
        t4 = time.perf_counter()
        for name, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            parts[name] += seconds
    result = {
        "events_per_s": n / wall,
        "events_per_cpu_s": n / cpu,
        "us_per_event": wall / n * 1e6,
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_per_wall": cpu / wall,
        "updates_per_batch": sum(len(b.updates) for b in out) / len(out),
        "packed_bytes_per_event": packed / len(encoded.values),
    }
    for name, seconds in parts.items():
        result[f"{name}_us_per_event"] = seconds / n * 1e6
    # Whatever the handler does beyond the parts (max event time per source, Update objects);
    # two passes apart, so it carries both passes' timing noise and can come out below 0.
    result["other_us_per_event"] = result["us_per_event"] - sum(parts.values()) / n * 1e6
    return result, out


# ---------------------------------------------------------------- 2. closing a window


def redis_fields(layout: DriftLayout, x: npt.ArrayLike) -> dict[bytes, bytes]:
    """A window's Redis hash after counting the rows of *x* (as ``HGETALL`` returns it)."""
    rows = np.asarray(x, dtype=np.float64)
    ints, floats = layout.readings(rows, [np.zeros(len(rows), dtype=np.int64)], 1)
    i, f = layout.fields(ints[0], floats[0])
    return {k.encode(): str(v).encode() for k, v in i.items()} | {
        k.encode(): repr(v).encode() for k, v in f.items()
    }


def _feature_rows(dataset: Dataset, features: Sequence[str]) -> FloatArray:
    cols = [FEATURES.index(f) for f in features]
    return np.asarray(dataset.features()[:, cols], dtype=np.float64)


def measure_window_close(
    model: ModelPackage, dataset: Dataset, codecs: Codecs, options: DriftBenchOptions, seed: int
) -> dict[str, dict[str, float]]:
    """Per window size: cold first window, then warm ``evaluate()``, ``totals()`` and ``window()`` (ms)."""
    rows = _feature_rows(dataset, model.features)
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, float]] = {}
    for size in options.close_sizes:
        # A fresh profile: its null thresholds are not cached yet, as in a fresh worker.
        profile = DriftProfile.from_reference(model.reference, model.version, model.features, model.classes)
        handler = _handler(profile, codecs, options)
        windows = [
            redis_fields(handler.layout, rows[rng.integers(len(rows), size=size)])
            for _ in range(options.close_windows + 1)
        ]
        detectors = handler.new_detectors()
        t = time.perf_counter()
        handler.window(profile.model_version, 0, windows[0], 0, detectors)
        cold = time.perf_counter() - t
        totals_s, evaluate_s, window_s = [], [], []
        for k, fields in enumerate(windows[1:], start=1):
            t0 = time.perf_counter()
            totals = handler.layout.totals(cast(Mapping[bytes | str, bytes | str], fields))
            t1 = time.perf_counter()
            evaluate(profile, totals, options.min_count)
            t2 = time.perf_counter()
            handler.window(profile.model_version, k * options.window_ms, fields, 0, detectors)
            t3 = time.perf_counter()
            totals_s.append(t1 - t0)
            evaluate_s.append(t2 - t1)
            window_s.append(t3 - t2)
        out[str(size)] = {
            "cold_first_window_ms": cold * 1e3,
            "totals_ms": float(np.median(totals_s)) * 1e3,
            "evaluate_ms": float(np.median(evaluate_s)) * 1e3,
            "window_ms": float(np.median(window_s)) * 1e3,
            "hash_fields": float(len(windows[1])),
        }
    return out


# ---------------------------------------------------------------- 3. the scipy baseline


def _psi(expected: FloatArray, actual: FloatArray, eps: float = 0.5) -> float:
    """PSI with the production conventions: an empty bin counts ``eps``; empty on both sides adds 0."""
    e_total, a_total = expected.sum(), actual.sum()
    if e_total <= 0 or a_total <= 0:
        return math.nan
    pe = np.where(expected > 0, expected, eps) / e_total
    pa = np.where(actual > 0, actual, eps) / a_total
    both_empty = (expected == 0) & (actual == 0)
    return float(np.sum(np.where(both_empty, 0.0, (pa - pe) * np.log(pa / pe))))


def baseline_statistics(profile: DriftProfile, x: npt.ArrayLike) -> dict[str, FloatArray]:
    """The per-feature window statistics from the raw values, with scipy (what the processor avoids).

    PSI on the reference coarse bins, ``scipy.spatial.distance.jensenshannon``
    (base 2) of the same bins, ``scipy.stats.ks_2samp`` against the reference
    sample (asymptotic p-value, as the processor's), ``scipy.stats.wasserstein_distance``
    to the reference sample over the reference scale, missing and out-of-range
    rates, and the mean's shift in training standard deviations.

    Parameters
    ----------
    profile
        The reference.
    x
        ``(n, F)`` raw values in model feature order, ``NaN`` (or non-finite) where missing.

    Returns
    -------
    dict
        Statistic name (:data:`BASELINE_STATISTICS`) -> ``(F,)`` values; ``NaN`` where undefined.
    """
    values = np.asarray(x, dtype=np.float64)
    values = np.where(np.isfinite(values), values, np.nan)
    n_feat = values.shape[1]
    out = {name: np.full(n_feat, np.nan) for name in BASELINE_STATISTICS}
    n = values.shape[0]
    for j in range(n_feat):
        column = values[:, j]
        col = column[~np.isnan(column)]
        out["missing_rate"][j] = (n - col.size) / n if n else math.nan
        if col.size == 0:
            continue
        edges = profile.coarse_edges[j][np.isfinite(profile.coarse_edges[j])]
        k = edges.size + 1
        actual = np.bincount(np.searchsorted(edges, col, side="left"), minlength=k).astype(np.float64)
        expected = profile.coarse_expected[j, :k]
        out["psi"][j] = _psi(expected, actual)
        out["js"][j] = distance.jensenshannon(expected, actual, base=2)
        ref = profile.sample[:, j][~np.isnan(profile.sample[:, j])]
        ks = sps.ks_2samp(ref, col, method="asymp")
        out["ks"][j], out["ks_p"][j] = ks.statistic, ks.pvalue
        out["wasserstein"][j] = sps.wasserstein_distance(ref, col) / profile.scale[j]
        out["out_of_range_rate"][j] = (
            np.count_nonzero((col < profile.low[j]) | (col > profile.high[j])) / col.size
        )
        std = profile.std[j] if profile.std[j] > 0 else 1.0
        out["mean_shift"][j] = (col.mean() - profile.mean[j]) / std
    return out


def _decode_raw(
    codec: Codec, values: Sequence[bytes], features: Sequence[str]
) -> tuple[FloatArray, Any, Any]:
    """Raw records decoded one by one with the codec: features, event times, rigs."""
    records = [codec.decode(v) for v in values]
    nan = math.nan
    x = np.array([[nan if r[f] is None else r[f] for f in features] for r in records], dtype=np.float64)
    times = np.array([r["event_time"] for r in records], dtype=np.int64)
    return x, times, [r["rig_id"] for r in records]


def _raw_windows(
    times: npt.NDArray[np.int64], rigs: Sequence[str], size_ms: int, version: str
) -> Iterator[tuple[tuple[str, int], npt.NDArray[np.intp]]]:
    """Each (subject, window start) and the rows in it: model-version windows, then rig segments."""
    keys, groups = _window_groups(times, rigs, size_ms, version)
    n = len(times)
    rows = np.concatenate([np.arange(n), np.arange(n)])
    order = np.argsort(groups, kind="stable")
    bounds = np.searchsorted(groups[order], np.arange(len(keys) + 1))
    for g, key in enumerate(keys):
        if bounds[g + 1] > bounds[g]:
            yield key, rows[order[bounds[g] : bounds[g + 1]]]


def measure_baseline(
    profile: DriftProfile, codecs: Codecs, encoded: Encoded, options: DriftBenchOptions
) -> tuple[dict[str, float], dict[tuple[str, int], dict[str, FloatArray]]]:
    """Events/s of decoding every raw record and computing every window's statistics with scipy."""
    t0 = time.perf_counter()
    cpu = time.process_time()
    x, times, rigs = _decode_raw(codecs.sensor_reading, encoded.values, profile.features)
    t1 = time.perf_counter()
    windows = {
        key: baseline_statistics(profile, x[rows])
        for key, rows in _raw_windows(times, rigs, options.window_ms, profile.model_version)
    }
    t2 = time.perf_counter()
    cpu = time.process_time() - cpu
    n = len(encoded.values)
    return {
        "events_per_s": n / (t2 - t0),
        "events_per_cpu_s": n / cpu,
        "decode_us_per_event": (t1 - t0) / n * 1e6,
        "statistics_us_per_event": (t2 - t1) / n * 1e6,
        "statistics_ms_per_window": (t2 - t1) / len(windows) * 1e3,
        "windows": float(len(windows)),
    }, windows


def _accumulate(layout: DriftLayout, batches: Sequence[Updates]) -> dict[tuple[str, int], list[bytes]]:
    """The packed counts items every window would hold after all batches (one per batch)."""
    out: dict[tuple[str, int], list[bytes]] = {}
    for batch in batches:
        for u in batch.updates:
            if u.counts is not None:
                out.setdefault((u.subject, u.start_ms), []).append(pack_counts(*u.counts))
    return out


def agreement(
    profile: DriftProfile,
    layout: DriftLayout,
    batches: Sequence[Updates],
    baseline: Mapping[tuple[str, int], Mapping[str, FloatArray]],
    min_count: int,
) -> dict[str, float]:
    """Largest |processor - baseline| per statistic over every window and feature, and bin mismatches.

    The processor's numbers are ``evaluate()`` on the counts the update path produced.
    """
    worst = dict.fromkeys(BASELINE_STATISTICS, 0.0)
    coarse_mismatch = windows = 0
    for key, items in _accumulate(layout, batches).items():
        totals = layout.totals({}, items)
        if totals.readings < min_count or key not in baseline:
            continue
        windows += 1
        metrics, _ = evaluate(profile, totals, min_count)
        for name in BASELINE_STATISTICS:
            ours = np.array([metrics.get(f"{name}.{f}", np.nan) for f in profile.features])
            diff = np.abs(ours - baseline[key][name])
            if np.isfinite(diff).any():
                worst[name] = max(worst[name], float(np.nanmax(diff)))
        psi_diff = np.abs(
            np.array([metrics.get(f"psi.{f}", np.nan) for f in profile.features]) - baseline[key]["psi"]
        )
        coarse_mismatch += int(np.nanmax(psi_diff) > 1e-9)
    return {
        **{f"max_abs_diff.{k}": v for k, v in worst.items()},
        "windows_compared": float(windows),
        "windows_with_psi_diff": float(coarse_mismatch),
    }


# ---------------------------------------------------------------- 4. Redis and the real processor


def measure_redis_apply(
    redis_url: str,
    batches: Sequence[Updates],
    encoded: Encoded,
    options: DriftBenchOptions,
    redis_pid: int | None = None,
) -> dict[str, float]:
    """``WindowStore.apply`` of the update path's batches (a Lua script each), then ``read`` of each window.

    Client CPU is this process's; server CPU is read from ``/proc`` when *redis_pid* is given.
    """
    from redis import Redis

    from rigwatch.windowstore import WindowStore

    namespace = f"rigwatch:bench-{uuid.uuid4().hex[:8]}"
    windows = sorted({(u.subject, u.start_ms) for b in batches for u in b.updates})
    server = (lambda: cpu_seconds(redis_pid)) if redis_pid else (lambda: math.nan)
    out: dict[str, float] = {}
    redis = Redis.from_url(redis_url)
    store = WindowStore(
        redis,
        namespace,
        size_ms=options.window_ms,
        lateness_ms=options.lateness_ms,
        idle_ms=options.idle_ms,
    )
    try:
        wall, cpu, srv = time.perf_counter(), time.process_time(), server()
        for i, batch in enumerate(batches):
            first, last = i * options.batch, min((i + 1) * options.batch, len(encoded.values)) - 1
            source = SourceSpan("bench/0", first, last, batch.max_event_ms.get("bench/0", -1))
            store.apply([source], batch.updates, int(time.time() * 1000), ["bench/0"])
        out["apply_s"] = time.perf_counter() - wall
        out["apply_client_cpu_s"] = time.process_time() - cpu
        out["apply_server_cpu_s"] = server() - srv
        wall, cpu = time.perf_counter(), time.process_time()
        for subject, start in windows:
            store.read(subject, start)
        out["read_s"] = time.perf_counter() - wall
        out["read_client_cpu_s"] = time.process_time() - cpu
    finally:
        keys = list(redis.scan_iter(match=f"{namespace}:*", count=1000))
        for i in range(0, len(keys), 500):
            redis.delete(*keys[i : i + 500])
        redis.close()
    n = len(encoded.values)
    return {
        "events_per_s": n / out["apply_s"],
        "us_per_event": out["apply_s"] / n * 1e6,
        "client_cpu_us_per_event": out["apply_client_cpu_s"] / n * 1e6,
        "server_cpu_us_per_event": out["apply_server_cpu_s"] / n * 1e6,
        "read_ms_per_window": out["read_s"] / len(windows) * 1e3,
        "read_client_cpu_ms_per_window": out["read_client_cpu_s"] / len(windows) * 1e3,
        "updates": float(sum(len(b.updates) for b in batches)),
    }


def _scrape(port: int) -> dict[str, float]:
    """The child's Prometheus metrics this bench reads (summed over labels)."""
    wanted = (
        "rigwatch_drift_events_in_total",
        "rigwatch_drift_batch_seconds_sum",
        "rigwatch_drift_windows_total",
    )
    out = dict.fromkeys(wanted, 0.0)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        for line in response.read().decode().splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in out:
                out[name] += float(line.rsplit(" ", 1)[1])
    return out


def expected_windows(encoded: Encoded, options: DriftBenchOptions, version: str) -> tuple[int, int]:
    """Windows the processor must emit at least, and at most, once every source is idle.

    At least: with the watermark at the largest event time, every window starting
    before the window holding ``max(event time) - lateness``. At most: every window,
    when idle sources also close the window of the last event (the processor may do either).
    """
    last = int(encoded.times.max()) - options.lateness_ms
    boundary = last - last % options.window_ms
    keys, groups = _window_groups(encoded.times, encoded.rigs, options.window_ms, version)
    starts = np.array([s for _, s in keys])
    present = np.bincount(groups, minlength=len(keys)) > 0
    return int(np.count_nonzero((starts < boundary) & present)), int(np.count_nonzero(present))


@dataclass
class _Sample:
    """What the bench saw while the child ran (monotonic seconds)."""

    launched: float
    first_consumed: float = math.nan
    all_consumed: float = math.nan
    first_window: float = math.nan
    last_window: float = math.nan
    windows: int = 0
    readings_in_windows: int = 0
    readings_after_first: int = 0
    late: float = 0.0
    cpu_at_first: float = math.nan
    cpu_busy: list[float] = field(default_factory=list)


class _EndToEnd:
    """``rigwatch drift`` as a child process on fresh topics: preload, start, watch, stop."""

    def __init__(self, settings: Settings, options: DriftBenchOptions, say: Callable[[str], None]) -> None:
        self.settings, self.options, self.say = settings, options, say
        self.bootstrap = settings.bootstrap or ""
        self.logs = options.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.run_dir = (options.out / "drift-run").resolve()

    @contextmanager
    def fresh_topics(self) -> Iterator[Settings]:
        from rigwatch.kafka import create_topics, delete_topics

        prefix = f"benchdrift{uuid.uuid4().hex[:8]}."
        settings = self.settings.model_copy(update={"topic_prefix": prefix, "run_dir": self.run_dir})
        create_topics(self.bootstrap, settings.topics.all(), self.options.partitions)
        try:
            yield settings
        finally:
            delete_topics(self.bootstrap, settings.topics.all())

    def run(self, encoded: Encoded, version: str, profile_to: Path | None = None) -> dict[str, float]:
        with self.fresh_topics() as settings:
            group = f"benchdrift-{uuid.uuid4().hex[:8]}"
            try:
                return self._run(settings, group, encoded, version, profile_to)
            finally:
                self._cleanup(settings, group)

    def _cleanup(self, settings: Settings, group: str) -> None:
        """Delete this run's Redis keys (nothing else)."""
        from redis import Redis

        namespace = f"rigwatch:{group}:{settings.topic_prefix}"
        client = Redis.from_url(settings.redis_url or "")
        try:
            keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i : i + 500])
        finally:
            client.close()

    def _preload(self, settings: Settings, encoded: Encoded) -> None:
        from rigwatch.kafka import ReliableProducer

        producer = ReliableProducer(self.bootstrap, {"linger.ms": 20, "batch.size": 1_000_000})
        for key, value in zip(encoded.keys, encoded.values, strict=True):
            producer.produce(settings.topics.sensor_readings, value, key=key)
        producer.flush(120)

    def _run(
        self, settings: Settings, group: str, encoded: Encoded, version: str, profile_to: Path | None
    ) -> dict[str, float]:
        from rigwatch.kafka import TopicReader

        o = self.options
        self._preload(settings, encoded)
        at_least, at_most = expected_windows(encoded, o, version)
        env = settings.to_env(
            RIGWATCH_DRIFT_GROUP=group,
            RIGWATCH_DRIFT_IDLE_MS=str(o.idle_ms),
            RIGWATCH_DRIFT_WINDOW_MS=str(o.window_ms),
            RIGWATCH_DRIFT_LATENESS_MS=str(o.lateness_ms),
            RIGWATCH_DRIFT_MIN_COUNT=str(o.min_count),
            RIGWATCH_DRIFT_BATCH_MAX=str(o.batch),
        )
        profiler = ["-m", "cProfile", "-o", str(profile_to)] if profile_to else []
        log_path = self.logs / f"drift-{group}.log"
        codec = Codecs.load().metric_window
        stack = stack_pids(self.settings)
        before = {name: cpu_seconds(pid) for name, pid in stack.items()}
        with TopicReader(self.bootstrap, [settings.topics.metrics]) as reader:
            sample = _Sample(launched=time.monotonic())
            child = Process.start(["drift", "--metrics-port", "0"], env, log_path, python_args=profiler)
            try:
                port = self._watch(
                    child, reader, codec, log_path, sample, (at_least, at_most, len(encoded.values)), version
                )
                threads = child.thread_cpu_seconds()
                cpu = child.cpu_seconds()
                final = None if port is None else _scrape_after(port)
            finally:
                # A profiled child writes its profile on the way out: give it time.
                outcome = child.stop(timeout=60)
        after = {name: cpu_seconds(pid) for name, pid in stack.items()}
        if sample.windows < at_least:
            raise RuntimeError(
                f"drift: only {sample.windows} of {at_least} windows within the time limit; see {log_path}"
            )
        n = len(encoded.values)
        busy = sample.last_window - sample.first_consumed
        result = {
            # Headline: from the first batch the child applied to the last window on rig.metrics.
            "events_per_s": n / busy,
            # From the first consumed batch until the child counted all N (its events_in counter).
            "consume_events_per_s": n / (sample.all_consumed - sample.first_consumed),
            # Readings in version windows emitted after the first emission / first -> last window.
            "window_events_per_s": sample.readings_after_first / (sample.last_window - sample.first_window),
            "whole_run_events_per_s": n / (sample.last_window - sample.launched),
            "startup_s": sample.first_consumed - sample.launched,
            "first_window_s": sample.first_window - sample.launched,
            "drain_s": sample.last_window - sample.all_consumed,
            "windows": float(sample.windows),
            "readings_in_windows": float(sample.readings_in_windows),
            "windows_possible": float(at_most),
            "late_records": sample.late,
            "child_cpu_s": cpu,
            "child_startup_cpu_s": sample.cpu_at_first,
            "child_cpu_pct_busy": float(np.mean(sample.cpu_busy)) if sample.cpu_busy else math.nan,
            # CPU from the first applied batch on (start-up's imports and group join left out).
            "child_cpu_us_per_event": (cpu - sample.cpu_at_first) / n * 1e6,
            "exit_code_ok": float(outcome.clean),
        }
        for name, seconds in threads.items():
            result[f"child_cpu_share.{name}"] = seconds / cpu if cpu else math.nan
        if final is not None:
            result["handle_s_per_busy_s"] = final["rigwatch_drift_batch_seconds_sum"] / busy
            result["handle_us_per_event"] = final["rigwatch_drift_batch_seconds_sum"] / n * 1e6
        for name in stack:
            result[f"{name}_cpu_s"] = after[name] - before[name]
        return result

    def _watch(
        self,
        child: Process,
        reader: Any,
        codec: Codec,
        log_path: Path,
        sample: _Sample,
        until: tuple[int, int, int],
        version: str,
    ) -> int | None:
        """Read windows until all are in; sample the child meanwhile.

        *until* is (windows at least, windows at most, readings): past the first count,
        ``idle_ms`` + 3 s without a new window also ends the watch.
        """
        at_least, at_most, n = until
        quiet = self.options.idle_ms / 1000 + 3.0
        deadline = sample.launched + max(180.0, n / 300)
        port: int | None = None
        next_probe, last_cpu = 0.0, (sample.launched, 0.0)
        while sample.windows < at_most and time.monotonic() < deadline:
            if sample.windows >= at_least and time.monotonic() - sample.last_window > quiet:
                break
            child.check_running()
            messages = reader.poll(0.05, max_messages=10_000)
            now = time.monotonic()
            first = messages and not sample.windows
            for msg in messages:
                record = codec.decode(msg.value())
                sample.windows += 1
                sample.late += float(record["metrics"].get("late_records", 0.0))
                if record["subject"] == version:
                    sample.readings_in_windows += int(record["count"])
                    if not first:
                        # The first poll's windows mark the start of the interval; they are not in it.
                        sample.readings_after_first += int(record["count"])
            if first:
                sample.first_window = now
            if messages:
                sample.last_window = now
            now = time.monotonic()
            if now < next_probe:
                continue
            next_probe = now + 0.1
            if port is None:
                port = _metrics_port(log_path)
            cpu = child.cpu_seconds()
            if port is not None and math.isnan(sample.all_consumed):
                metrics = _scrape_after(port)
                consumed = 0.0 if metrics is None else metrics["rigwatch_drift_events_in_total"]
                if consumed > 0 and math.isnan(sample.first_consumed):
                    sample.first_consumed, sample.cpu_at_first = now, cpu
                if consumed >= n:
                    sample.all_consumed = now
                    self.say(f"    all {n:,} readings consumed after {now - sample.launched:.1f} s")
            if not math.isnan(sample.first_consumed):
                sample.cpu_busy.append(100 * (cpu - last_cpu[1]) / (now - last_cpu[0]))
            last_cpu = (now, cpu)
        if math.isnan(sample.first_consumed):
            # No metrics endpoint found: fall back to the first window (then startup is overstated).
            sample.first_consumed, sample.cpu_at_first = sample.first_window, 0.0
        if math.isnan(sample.all_consumed):
            sample.all_consumed = sample.last_window
        return port


def _scrape_after(port: int) -> dict[str, float] | None:
    try:
        return _scrape(port)
    except OSError:
        return None


def _metrics_port(log_path: Path) -> int | None:
    found = re.search(rb"metrics port (\d+)", log_path.read_bytes())
    return int(found.group(1)) if found else None


def top_functions(profile_path: Path, limit: int = 15) -> list[dict[str, Any]]:
    """The profiled child's most expensive functions by own time, with their cumulative time."""
    stats = pstats.Stats(str(profile_path), stream=io.StringIO())
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = filename.split("site-packages/")[-1].replace(str(Path.cwd()) + "/", "")
        rows.append(
            {
                "function": f"{short}:{line}({name})",
                "calls": calls,
                "tottime_s": tottime,
                "cumtime_s": cumtime,
            }
        )
    rows.sort(key=lambda r: -float(r["tottime_s"]))
    return rows[:limit]


#: Processor functions whose cumulative profiled time says where the child's time goes.
KEY_FUNCTIONS = (
    ("rigwatch/runtime/windowed.py", "on_batch", "batch: decode + count + accumulate"),
    ("services/drift/handler.py", "readings", "  DriftHandler.readings"),
    # The Lua call itself runs on the runtime's writer thread, which the profile does not see.
    ("rigwatch/runtime/windowed.py", "take", "checkpoint: merged updates + offsets taken for Redis"),
    ("rigwatch/windowstore.py", "batch_call", "  WindowStore.batch_call (arguments + encoding)"),
    ("rigwatch/runtime/windowed.py", "on_tick", "close and emit windows"),
    ("rigwatch/windowstore.py", "read", "  WindowStore.read (HGETALL)"),
    ("services/drift/handler.py", "window", "  DriftHandler.window"),
    ("rigwatch/drift/evaluate.py", "evaluate", "    evaluate()"),
    ("rigwatch/drift/stats.py", "null_threshold", "    null-threshold bootstrap (cold)"),
    ("redis/connection.py", "pack_command", "redis-py: packing commands"),
    ("redis/_parsers/resp3.py", "_read_response", "redis-py: parsing replies (RESP3)"),
    ("redis/_parsers/resp2.py", "_read_response", "redis-py: parsing replies (RESP2)"),
)


def key_functions(profile_path: Path) -> dict[str, Any]:
    """Cumulative profiled seconds of :data:`KEY_FUNCTIONS` (coroutines: while running, not awaiting)."""
    stats = pstats.Stats(str(profile_path), stream=io.StringIO())
    found: dict[str, float] = {}
    for (filename, _line, name), (_cc, _calls, _tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        for suffix, function, label in KEY_FUNCTIONS:
            if filename.endswith(suffix) and name == function:
                found[label] = max(found.get(label, 0.0), float(cumtime))
    ordered = {label: found[label] for _, _, label in KEY_FUNCTIONS if label in found}
    return {"total_s": float(stats.total_tt), "cumulative_s": ordered}  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the run and its report


def summarize(runs: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Median, min and max per key over repeats (keys of the first run).

    Examples
    --------
    >>> summarize([{"a": 1.0}, {"a": 3.0}, {"a": 2.0}])
    {'a': {'median': 2.0, 'min': 1.0, 'max': 3.0}}
    """
    return {key: summary([float(r[key]) for r in runs if key in r]) for key in runs[0]} if runs else {}


def run_drift_bench(
    settings: Settings | None,
    dataset: Dataset,
    model_dir: Path,
    options: DriftBenchOptions,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every measurement *options.repeats* times; JSON and markdown in *options.out*; returns the result.

    *settings* (bound to a broker and Redis) is needed only for the Redis and end-to-end parts.
    """
    options.out.mkdir(parents=True, exist_ok=True)
    codecs = Codecs.load()
    model = ModelPackage.load(model_dir)
    profile = DriftProfile.from_reference(model.reference, model.version, model.features, model.classes)
    say(f"encoding {options.events:,} readings from {dataset.source} ...")
    encoded = encode_readings(dataset, codecs.sensor_reading, options)
    runs: dict[str, list[dict[str, float]]] = {
        name: [] for name in ("update_path", "baseline_scipy", "redis_apply", "end_to_end")
    }
    close: dict[str, list[dict[str, float]]] = {}
    ratios: dict[str, list[float]] = {"update_path/baseline": [], "update+close/baseline": []}
    agree: dict[str, float] = {}
    e2e = _EndToEnd(settings, options, say) if settings is not None and options.end_to_end else None
    for repeat in range(1, options.repeats + 1):
        tag = f"[{repeat}/{options.repeats}]"
        say(f"{tag} update path: DriftHandler.readings on {options.events:,} readings ...")
        update, batches = measure_update_path(profile, codecs, encoded, options)
        runs["update_path"].append(update)
        say(f"    {update['events_per_s']:,.0f} events/s ({update['events_per_cpu_s']:,.0f} per CPU second)")
        say(f"{tag} window close: sizes {', '.join(map(str, options.close_sizes))} ...")
        for size, figures in measure_window_close(model, dataset, codecs, options, seed=repeat).items():
            close.setdefault(size, []).append(figures)
        say(f"{tag} baseline: codec decode + scipy statistics per window ...")
        base, windows = measure_baseline(profile, codecs, encoded, options)
        runs["baseline_scipy"].append(base)
        say(f"    {base['events_per_s']:,.0f} events/s over {base['windows']:.0f} windows")
        ratios["update_path/baseline"].append(update["events_per_s"] / base["events_per_s"])
        per_version = options.window_ms // options.interval_ms
        amortised = _close_us_per_event(close, options, per_version)
        if amortised is not None:
            ratios["update+close/baseline"].append(
                1e6 / (update["us_per_event"] + amortised) / base["events_per_s"]
            )
        if not agree:
            agree = agreement(profile, DriftLayout(profile), batches, windows, options.min_count)
        if e2e is not None and settings is not None and settings.redis_url:
            say(f"{tag} Redis: WindowStore.apply of the same updates ...")
            redis_pid = stack_pids(settings).get("redis")
            runs["redis_apply"].append(
                measure_redis_apply(settings.redis_url, batches, encoded, options, redis_pid)
            )
            say(f"    {runs['redis_apply'][-1]['events_per_s']:,.0f} events/s")
            say(f"{tag} end to end: rigwatch drift on {options.events:,} preloaded readings ...")
            runs["end_to_end"].append(e2e.run(encoded, profile.model_version))
            say(f"    {runs['end_to_end'][-1]['events_per_s']:,.0f} events/s")
    profiled: dict[str, Any] = {}
    if e2e is not None and options.profile:
        path = (options.out / "logs" / f"drift-profile-{time.strftime('%Y%m%d-%H%M%S')}.prof").resolve()
        say("profiled end-to-end run (cProfile in the child; its figures are not in the table) ...")
        figures = e2e.run(encoded, profile.model_version, profile_to=path)
        profiled = {"file": str(path), "events_per_s": figures["events_per_s"]}
        if path.exists():
            profiled["top_by_own_time"] = top_functions(path)
            profiled["key_functions"] = key_functions(path)
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "options": {k: str(v) for k, v in options.__dict__.items()},
        "data": dataset.source,
        "model_version": model.version,
        **{name: summarize(rs) for name, rs in runs.items()},
        "window_close": {size: summarize(rs) for size, rs in close.items()},
        "ratios": {k: summary(v) for k, v in ratios.items() if v},
        "agreement": agree,
        "profile": profiled,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (options.out / f"drift-{stamp}.json").write_text(json.dumps(result, indent=2, default=str))
    table = markdown(result)
    (options.out / f"drift-{stamp}.md").write_text(table)
    say(table)
    return result


def _close_us_per_event(
    close: Mapping[str, Sequence[Mapping[str, float]]], options: DriftBenchOptions, per_version: int
) -> float | None:
    """Window-close time per event in this stream: one version window and one per rig every window."""
    version, seg = str(per_version), str(per_version // options.rigs)
    if version not in close or seg not in close:
        return None
    ms = close[version][-1]["window_ms"] + options.rigs * close[seg][-1]["window_ms"]
    return ms * 1e3 / per_version


def _fmt(s: Mapping[str, float] | None, spec: str) -> str:
    if not s:
        return "–"
    return f"{s['median']:{spec}} ({s['min']:{spec}}–{s['max']:{spec}})"


def markdown(result: Mapping[str, Any]) -> str:
    """The result as markdown: medians with min–max over the repeats, ratios, definitions."""
    o = result["options"]
    u = result["update_path"]
    lines = [
        f"Drift processor benchmark, {result['created_at']}, {result['machine']['cpus']} CPUs, "
        f"data {result['data']}, {int(o['events']):,} readings, {o['repeats']} repeats "
        f"(median (min–max)), {o['rigs']} rigs, event times {o['interval_ms']} ms apart, "
        f"{int(o['window_ms']) // 1000} s windows",
        "",
        "| statistics update path (DriftHandler.readings, 1 thread) | value |",
        "|---|---|",
        f"| events/s (wall) | {_fmt(u.get('events_per_s'), ',.0f')} |",
        f"| events/s per CPU second | {_fmt(u.get('events_per_cpu_s'), ',.0f')} |",
        f"| CPU / wall | {_fmt(u.get('cpu_per_wall'), '.2f')} |",
    ]
    if u.get("events_per_cpu_s"):
        met = u["events_per_cpu_s"]["median"] >= 100_000
        lines.append(f"| target ≥ 100,000 events/s/core | {'met' if met else 'NOT met'} |")
    for part, label in (
        ("decode", "decode (BatchDecoder + feature matrix)"),
        ("group", "window/subject grouping"),
        ("count", "counting (DriftLayout.readings)"),
        ("fields", "packed counts (pack_counts)"),
        ("other", "rest of readings() (total − parts)"),
    ):
        lines.append(f"| µs/event: {label} | {_fmt(u.get(f'{part}_us_per_event'), '.2f')} |")
    lines += [
        f"| µs/event: total | {_fmt(u.get('us_per_event'), '.2f')} |",
        f"| packed bytes per event (sent to Redis) | {_fmt(u.get('packed_bytes_per_event'), '.1f')} |",
        "",
        "| window close, per window | readings | hash fields | totals() ms | evaluate() ms "
        "| window() ms (all of it) | cold first window ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, w in result["window_close"].items():
        lines.append(
            f"| | {int(size):,} | {w['hash_fields']['median']:,.0f} | {_fmt(w['totals_ms'], '.2f')}"
            f" | {_fmt(w['evaluate_ms'], '.2f')} | {_fmt(w['window_ms'], '.2f')}"
            f" | {_fmt(w['cold_first_window_ms'], ',.0f')} |"
        )
    b = result["baseline_scipy"]
    lines += [
        "",
        "| baseline: codec decode + scipy statistics per window from raw events | value |",
        "|---|---|",
        f"| events/s | {_fmt(b.get('events_per_s'), ',.0f')} |",
        f"| µs/event decode (Codec.decode per record) | {_fmt(b.get('decode_us_per_event'), '.1f')} |",
        f"| µs/event statistics | {_fmt(b.get('statistics_us_per_event'), '.1f')} |",
        f"| ms per window | {_fmt(b.get('statistics_ms_per_window'), '.2f')} |",
        f"| windows | {_fmt(b.get('windows'), ',.0f')} |",
        "",
        "| ratio | median (min–max) |",
        "|---|---|",
    ]
    lines += [f"| {k} | {_fmt(v, '.2f')} |" for k, v in result["ratios"].items()]
    agree = result.get("agreement") or {}
    if agree:
        lines += ["", "| processor vs baseline, same windows | max abs diff |", "|---|---|"]
        lines += [f"| {k.split('.', 1)[1]} | {v:.3g} |" for k, v in agree.items() if k.startswith("max_abs")]
        lines.append(
            f"| windows with a PSI difference > 1e-9 | {agree['windows_with_psi_diff']:.0f}"
            f" of {agree['windows_compared']:.0f} |"
        )
    r = result.get("redis_apply") or {}
    if r:
        lines += [
            "",
            "| Redis: WindowStore.apply of the update path's batches (one Lua script each) | value |",
            "|---|---|",
            f"| events/s | {_fmt(r['events_per_s'], ',.0f')} |",
            f"| µs/event wall | {_fmt(r['us_per_event'], '.1f')} |",
            "| µs/event client CPU (redis-py packing the arguments) | "
            f"{_fmt(r['client_cpu_us_per_event'], '.1f')} |",
            "| µs/event Redis server CPU (Lua HINCRBY / HINCRBYFLOAT) | "
            f"{_fmt(r['server_cpu_us_per_event'], '.1f')} |",
            f"| emitter read (HGETALL) ms per window, wall | {_fmt(r['read_ms_per_window'], '.2f')} |",
            f"| emitter read ms per window, client CPU | {_fmt(r['read_client_cpu_ms_per_window'], '.2f')} |",
        ]
    e = result.get("end_to_end") or {}
    if e:
        rows = [
            ("events/s: first batch applied → last window on rig.metrics", "events_per_s", ",.0f"),
            ("events/s: consumption (child's events_in counter)", "consume_events_per_s", ",.0f"),
            ("events/s: readings in windows, first → last window", "window_events_per_s", ",.0f"),
            ("events/s: process start → last window", "whole_run_events_per_s", ",.0f"),
            ("start-up s (process start → first batch applied)", "startup_s", ".1f"),
            ("first window s after process start", "first_window_s", ".1f"),
            ("drain s (all consumed → last window)", "drain_s", ".1f"),
            ("windows emitted", "windows", ",.0f"),
            (
                "windows in the data (all close once every source is idle, if the store does that)",
                "windows_possible",
                ",.0f",
            ),
            ("readings in emitted model-version windows", "readings_in_windows", ",.0f"),
            ("late records", "late_records", ",.0f"),
            ("child CPU µs/event (from the first batch applied on)", "child_cpu_us_per_event", ".1f"),
            ("child CPU s before the first batch (start-up)", "child_startup_cpu_s", ".1f"),
            ("child CPU % while busy", "child_cpu_pct_busy", ".0f"),
            ("child CPU share: Python main thread", "child_cpu_share.main", ".2f"),
            ("child CPU share: librdkafka threads", "child_cpu_share.librdkafka", ".2f"),
            ("handle() (decode+count+Redis) s per busy s", "handle_s_per_busy_s", ".2f"),
            ("handle() µs/event", "handle_us_per_event", ".1f"),
            ("Redis server CPU s", "redis_cpu_s", ".1f"),
            ("broker CPU s", "broker_cpu_s", ".1f"),
            ("child exited 0 after SIGTERM (1 = yes)", "exit_code_ok", ".0f"),
        ]
        lines += ["", "| end to end: rigwatch drift through the broker and Redis | value |", "|---|---|"]
        lines += [f"| {label} | {_fmt(e.get(key), spec)} |" for label, key, spec in rows if key in e]
    prof = result.get("profile") or {}
    if prof.get("key_functions"):
        keys = prof["key_functions"]
        lines += [
            "",
            f"Profiled child (cProfile, {prof['file']}; {prof['events_per_s']:,.0f} events/s under the "
            f"profiler), {keys['total_s']:.1f} s profiled:",
            "",
            "| function | cumulative s | share |",
            "|---|---|---|",
        ]
        lines += [
            f"| {label} | {seconds:.2f} | {seconds / keys['total_s']:.0%} |"
            for label, seconds in keys["cumulative_s"].items()
        ]
    if prof.get("top_by_own_time"):
        lines += ["", "Top by own time:", ""]
        lines += ["| function | calls | own s | cumulative s |", "|---|---|---|---|"]
        lines += [
            f"| {row['function']} | {row['calls']:,} | {row['tottime_s']:.2f} | {row['cumtime_s']:.2f} |"
            for row in prof["top_by_own_time"]
        ]
    lines += [
        "",
        "Definitions: the update path is decode → window grouping → counting → hash fields, per batch of "
        f"{o['batch']} in this process; the baseline keeps raw events and, per window, decodes them with "
        "the codec and computes PSI, JS, KS (asymptotic p), Wasserstein, missing, out-of-range and mean "
        "shift with scipy/numpy. 'update+close' adds the window close cost per event of this stream (one "
        "model-version and one window per rig every window). End to end, the headline counts all N readings "
        "from the first batch the child applied (its events_in counter, sampled every 0.1 s) to the last "
        "expected window on rig.metrics, so it includes the watermark's idle wait and emission, "
        "not start-up.",
    ]
    return "\n".join(lines) + "\n"
