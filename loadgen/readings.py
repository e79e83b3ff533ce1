"""Turn a :class:`~rigwatch.data.Dataset` into a seeded stream of encoded readings (no I/O)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from loadgen.scenarios import Effect
from rigwatch.codec import MARKER, Codec
from rigwatch.data import CLASS_LABELS, SENSOR_COLUMNS, Dataset
from rigwatch.exceptions import ConfigError

__all__ = [
    "BAD_KINDS",
    "PumpEvent",
    "ReadingStream",
    "Shift",
    "WrongLabels",
    "stepping_clock",
]

#: Malformed records the pump can mix in, named by the reason the scorer reports.
BAD_KINDS = ("not_single_object", "unknown_schema", "bad_body", "missing_field")


@dataclass(frozen=True)
class Shift:
    """A drift scenario: add *delta* to *sensor* in every reading from sequence number *start* on
    (up to, not including, *end* when given).

    Examples
    --------
    >>> Shift.parse("tsb_temp=+2@1000")
    Shift(sensor='tsb_temp', delta=2.0, start=1000, end=None)
    >>> Shift.parse("tsb_temp=+2@1000-2000").effect().active(2000)
    False
    """

    sensor: str
    delta: float
    start: int = 0
    end: int | None = None

    def effect(self) -> Effect:
        """The pump effect that applies this shift."""
        return Effect("offset", self.start, self.end, self.sensor, self.delta)

    @classmethod
    def parse(cls, text: str) -> Shift:
        """``SENSOR=DELTA[@START[-END]]``, e.g. ``tsb_temp=+2@1000`` or ``tsb_temp=+2@1000-2000``."""
        name, sep, rest = text.partition("=")
        delta, _, span = rest.partition("@")
        start, _, end = span.partition("-")
        if not sep or name not in SENSOR_COLUMNS:
            raise ConfigError(
                f"shift={text!r}: expected SENSOR=DELTA[@START[-END]], "
                f"SENSOR one of {', '.join(SENSOR_COLUMNS)}"
            )
        try:
            shift = cls(name, float(delta), int(start) if start else 0, int(end) if end else None)
        except ValueError:
            raise ConfigError(f"shift={text!r}: DELTA must be a number, START and END integers") from None
        if shift.end is not None and shift.end <= shift.start:
            raise ConfigError(f"shift={text!r}: END {shift.end} must be after START {shift.start}")
        return shift


@dataclass(frozen=True)
class WrongLabels:
    """An accuracy scenario: from reading *start* on, a *rate* share of Actuals carry a wrong label.

    Examples
    --------
    >>> WrongLabels.parse("0.3@2000")
    WrongLabels(rate=0.3, start=2000)
    """

    rate: float
    start: int = 0

    @classmethod
    def parse(cls, text: str) -> WrongLabels:
        """``RATE[@START]``, e.g. ``0.3@2000``."""
        rate, _, start = text.partition("@")
        try:
            parsed = cls(float(rate), int(start) if start else 0)
        except ValueError:
            raise ConfigError(f"wrong_labels={text!r}: expected RATE[@START], e.g. 0.3@2000") from None
        if not 0.0 <= parsed.rate <= 1.0 or parsed.start < 0:
            raise ConfigError(f"wrong_labels={text!r}: RATE must be in [0, 1] and START >= 0")
        return parsed

    def effect(self) -> Effect:
        """The pump effect that applies this scenario."""
        return Effect("wrong-labels", self.start, None, amount=self.rate)


def stepping_clock(start_ms: int, interval_ms: int) -> Callable[[], int]:
    """A simulated event-time clock: *start_ms*, then *interval_ms* later at every call.

    Tests and scenarios drive event time with it, so twenty 30 s windows take
    seconds, not ten minutes.

    Examples
    --------
    >>> clock = stepping_clock(1000, 250)
    >>> [clock(), clock(), clock()]
    [1000, 1250, 1500]
    """
    ticks = itertools.count()
    return lambda: start_ms + next(ticks) * interval_ms


@dataclass(frozen=True)
class PumpEvent:
    """One record to publish: its key and bytes, and the Actual to send later (if labelled)."""

    key: str
    value: bytes
    reading: dict[str, Any] | None
    label: str | None
    bad_kind: str | None = None


class ReadingStream:
    """Seeded readings from real (or simulated) cycles, one cycle counter per rig.

    Parameters
    ----------
    dataset
        Cycles to replay.
    order
        ``iid``: rows sampled with replacement; ``run``: the original cycle order, repeated.
    rigs
        Readings go round-robin to ``rig-000`` .. ``rig-{rigs-1}``.
    count
        Total records, or None for an endless stream (then bad records are Bernoulli).
    bad_rate
        Fraction of malformed records; with *count* known, exactly ``round(count * bad_rate)``.
    label_coverage
        Fraction of valid readings that get an Actual.
    effects
        Scenario effects (:class:`~loadgen.scenarios.Effect`) by reading number.
    """

    def __init__(
        self,
        dataset: Dataset,
        codec: Codec,
        *,
        run_id: str,
        order: str = "iid",
        rigs: int = 1,
        count: int | None = None,
        bad_rate: float = 0.0,
        label_coverage: float = 1.0,
        seed: int = 0,
        effects: Sequence[Effect] = (),
    ) -> None:
        if order not in ("iid", "run"):
            raise ConfigError(f"order={order!r}: expected 'iid' or 'run'")
        if rigs < 1:
            raise ConfigError(f"rigs={rigs}: expected at least 1")
        for name, value in (("bad_rate", bad_rate), ("label_coverage", label_coverage)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name}={value}: expected a fraction in [0, 1]")
        self.dataset, self.codec, self.run_id = dataset, codec, run_id
        self.order, self.rigs, self.count = order, rigs, count
        self.bad_rate, self.label_coverage = bad_rate, label_coverage
        self.effects = tuple(effects)
        self._rng = np.random.default_rng(seed)
        # Own streams for the effects: the same seed gives the same readings with or without them.
        self._effect_rng = np.random.default_rng([seed, 1])
        self._failing = np.flatnonzero(dataset.cool_cond == 3)
        self._stuck: dict[int, float | None] = {}
        self._bad_at: set[int] | None = None
        if count is not None:
            n_bad = round(count * bad_rate)
            self._bad_at = set(self._rng.choice(count, size=n_bad, replace=False).tolist())

    def events(self, clock_ms: Callable[[], int]) -> Iterator[PumpEvent]:
        """Yield events; *clock_ms* is called for each reading's ``event_time``."""
        cycles = [0] * self.rigs
        n = len(self.dataset)
        seq = 0
        while self.count is None or seq < self.count:
            rig = seq % self.rigs
            row = int(self._rng.integers(n)) if self.order == "iid" else seq % n
            row = self._degraded(seq, row)
            reading = self._reading(rig, cycles[rig], row, clock_ms())
            self._perturb(seq, reading)
            cycles[rig] += 1
            if self._is_bad(seq):
                kind = BAD_KINDS[int(self._rng.integers(len(BAD_KINDS)))]
                yield PumpEvent(reading["rig_id"], self._malformed(kind, reading), None, None, kind)
            else:
                labelled = self._rng.random() < self.label_coverage
                label = self._relabel(seq, str(int(self.dataset.cool_cond[row]))) if labelled else None
                yield PumpEvent(reading["rig_id"], self.codec.encode(reading), reading, label)
            seq += 1

    def _active(self, kind: str, seq: int) -> list[tuple[int, Effect]]:
        return [(i, e) for i, e in enumerate(self.effects) if e.kind == kind and e.active(seq)]

    def _degraded(self, seq: int, row: int) -> int:
        """A failing cooler's cycle instead of *row*, more likely the further into a ``degrade`` span."""
        for _, e in self._active("degrade", seq):
            if self._failing.size and self._effect_rng.random() < e.progress(seq):
                return int(self._failing[self._effect_rng.integers(self._failing.size)])
        return row

    def _perturb(self, seq: int, reading: dict[str, Any]) -> None:
        for i, e in enumerate(self.effects):
            if e.sensor is None or not e.active(seq) or reading[e.sensor] is None:
                continue
            if e.kind == "offset":
                reading[e.sensor] += e.amount
            elif e.kind == "noise":
                reading[e.sensor] += float(self._effect_rng.normal(0.0, e.amount))
            elif e.kind == "stuck":
                reading[e.sensor] = self._stuck.setdefault(i, reading[e.sensor])
            elif e.kind == "recalibrate":
                reading[e.sensor] = e.mapped(reading[e.sensor])

    def _relabel(self, seq: int, label: str) -> str:
        for _, e in self._active("wrong-labels", seq):
            if self._effect_rng.random() < e.amount:
                return str(self._effect_rng.choice([c for c in CLASS_LABELS if c != label]))
        return label

    def _is_bad(self, seq: int) -> bool:
        for _, e in self._active("bad", seq):
            if self._effect_rng.random() < e.amount:
                return True
        if self._bad_at is not None:
            return seq in self._bad_at
        return bool(self.bad_rate) and self._rng.random() < self.bad_rate

    def _reading(self, rig: int, cycle: int, row: int, event_time: int) -> dict[str, Any]:
        rig_id = f"rig-{rig:03d}"
        reading: dict[str, Any] = {
            "event_id": f"{self.run_id}-{rig_id}-{cycle}",
            "rig_id": rig_id,
            "cycle": cycle,
            "event_time": event_time,
        }
        for name, value in zip(SENSOR_COLUMNS, self.dataset.sensors[row].tolist(), strict=True):
            reading[name] = value if math.isfinite(value) else None
        return reading

    def _malformed(self, kind: str, reading: dict[str, Any]) -> bytes:
        good = self.codec.encode(reading)
        if kind == "not_single_object":
            return b"{" + bytes(self._rng.integers(0, 256, 24, dtype=np.uint8)) + b"}"
        if kind == "unknown_schema":
            return MARKER + bytes(self._rng.integers(0, 256, 8, dtype=np.uint8)) + good[10:]
        if kind == "bad_body":
            return good[: len(good) // 2]
        return self.codec.encode({**reading, "event_id": ""})
