"""One contract for every class whose state goes to Redis or pickles (after river's estimator checks).

State outlives the process that built it, so it must come back from its storage
answering exactly as before; a clone must be independent; public state classes
say what they are, with an example; no constructor has a mutable default.

Every class defined in :data:`STATE_MODULES` is either in :data:`STATEFUL`
(with how to build one and what must survive its round trip) or in
:data:`NOT_STATEFUL` with the reason; a new class fails
:func:`test_every_class_is_classified` until it is put in one of them.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import importlib.util
import inspect
import pathlib
import pickle
import pkgutil
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import rigwatch.drift
import services
from rigwatch.drift import ChangeDetectors, NullThresholds
from rigwatch.quantiles import LogBuckets
from services.alerts.handler import AlertState
from services.drift.handler import DriftHandler


def _state_modules() -> Iterator[types.ModuleType]:
    """Where window, sketch, detector and handler classes live (new submodules included)."""
    yield importlib.import_module("rigwatch.quantiles")
    yield importlib.import_module("rigwatch.windowing")
    for info in pkgutil.walk_packages(rigwatch.drift.__path__, "rigwatch.drift."):
        yield importlib.import_module(info.name)
    for info in pkgutil.iter_modules(services.__path__, "services."):
        if info.ispkg and importlib.util.find_spec(f"{info.name}.handler") is not None:
            yield importlib.import_module(f"{info.name}.handler")


STATE_MODULES = list(_state_modules())


def _classes() -> list[type]:
    return sorted(
        {
            obj
            for module in STATE_MODULES
            for obj in vars(module).values()
            if inspect.isclass(obj) and obj.__module__ == module.__name__
        },
        key=_name,
    )


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# ---------------------------------------------------------------------------- the stateful classes


def _pickled(obj: Any) -> Any:
    return pickle.loads(pickle.dumps(obj))


@dataclass(frozen=True)
class Stateful:
    """How the contract builds an instance with state in it, and what must survive its storage."""

    make: Callable[[], Any]
    #: What the instance answers next (may update it); equal before and after a round trip.
    behaviour: Callable[[Any], Any]
    #: Out to its storage and back, as the service does it.
    round_trip: Callable[[Any], Any] = _pickled
    #: What ``behaviour`` of a fresh ``make()`` gives, so the comparison is not vacuous.
    expected: Any = None


# A window after four stable ones: both class detectors fire on it.
_CLASS_FLIP = ([0, 40], [0, 40], [0.9, 1.0], [9.0])


def _detectors() -> ChangeDetectors:
    d = ChangeDetectors(["3", "20"], ["t"], per_window=40)
    for _ in range(4):
        d.update([40, 0], [0, 40], [0.9, 1.0], [0.5])
    return d


def _thresholds() -> NullThresholds:
    null = NullThresholds(np.random.default_rng(0).normal(size=(300, 2)), "ks", resamples=100)
    null(50)  # a cached table entry
    return null


def _latency_summary(buckets: LogBuckets) -> dict[str, float]:
    counts = buckets.counts([0.0, 1.0, 2.0, 2.0, 250.0])
    # The sketch's state is its counts, kept as a Redis hash: bytes in, bytes out.
    redis_hash = {str(k).encode(): str(v).encode() for k, v in counts.items()}
    return buckets.summary(redis_hash)


def _alert_state() -> AlertState:
    last = {"alert_id": "a1", "severity": "critical", "detail": {"items": ["psi.x"]}}
    return AlertState(
        "critical", breach=3, critical=2, since=60_000, first_seen=30_000, last_end=90_000, last=last
    )


STATEFUL: dict[type, Stateful] = {
    # Pickled to Redis per subject after each emitted window.
    ChangeDetectors: Stateful(
        _detectors,
        lambda d: d.update(*_CLASS_FLIP).changes,
        round_trip=lambda d: pickle.loads(DriftHandler.dump_detectors(d)),
        expected=["class.3", "class.20"],
    ),
    # Part of a drift profile; documented to pickle with its table.
    NullThresholds: Stateful(_thresholds, lambda n: (n(80).tolist(), sorted(n.table))),
    # The quantile sketch: a latency window's counts in Redis read back through it.
    LogBuckets: Stateful(LogBuckets, _latency_summary),
    # One Redis hash field per alert, as JSON.
    AlertState: Stateful(_alert_state, dataclasses.asdict, round_trip=lambda s: AlertState.loads(s.dumps())),
}

NOT_STATEFUL: dict[str, str] = {
    "rigwatch.drift.counts.DriftLayout": "maps a profile onto window fields; no state of its own",
    "rigwatch.drift.counts.WindowTotals": "a closed window's totals, read from Redis and used once",
    "rigwatch.drift.profile.DriftProfile": "built from the model package at start, never stored",
    "rigwatch.windowing.Update": "what a batch adds to a window: script arguments, never stored as an object",
    "rigwatch.windowing.Updates": "a handler's result for one batch",
    "rigwatch.windowing.Pending": "in process between two checkpoints; dropped on a crash and re-read",
    "services.accuracy.handler.AccuracyHandler": "handler: settings only between batches",
    "services.accuracy.handler.Pairs": "columns parsed from a window's items, used once",
    "services.accuracy.handler.ComparedPairs": "columns parsed from a comparison window's items, used once",
    "services.gate.handler.Action": "what the gate does about one verdict, made and used at once",
    "services.console.handler.Call": "a checked request, made and used at once",
    "services.console.handler.Reply": "a JSON answer, made and used at once",
    "services.console.handler.ConsoleHandler": "API routes over the tables; rebuilt from the topics at start",
    "services.console.handler.ModelCache": "loaded scorers by version; a cache refilled on demand",
    "services.alerts.handler.AlertEngine": "rules only; the per-alert states (AlertState) are passed in",
    "services.drift.handler.DriftHandler": "handler: settings and decode caches only",
    "services.latency.handler.DlqRecord": "a decoded DLQ record",
    "services.latency.handler.LatencyHandler": "handler: settings only between batches",
    "services.scorer.handler.Model": "protocol of the model package",
    "services.scorer.handler.Reject": "a rejected record of one batch",
    "services.scorer.handler.ScoredBatch": "one batch's outputs",
    "services.scorer.handler.Scorer": "handler: the model and settings, nothing between batches",
}

#: State classes without an ``Examples`` section yet, and why (remove the entry once it has one).
WITHOUT_EXAMPLES: dict[type, str] = {
    AlertState: "a plain record (JSON in Redis); round trips in tests/unit/test_alert_engine.py",
}

#: ``"module.Class.parameter"`` constructor defaults allowed although mutable, and why.
MUTABLE_DEFAULTS_ALLOWED: dict[str, str] = {}

CASES = [pytest.param(cls, id=cls.__name__) for cls in STATEFUL]


def test_every_class_is_classified() -> None:
    names = {_name(cls) for cls in _classes()}
    stateful = {_name(cls) for cls in STATEFUL}
    unclassified = names - stateful - set(NOT_STATEFUL)
    assert not unclassified, (
        f"put each in STATEFUL (with a factory) or NOT_STATEFUL (with why): {unclassified}"
    )
    assert not (stateful & set(NOT_STATEFUL)), "a class is listed as both stateful and not"
    assert set(NOT_STATEFUL) <= names, f"stale NOT_STATEFUL entries: {set(NOT_STATEFUL) - names}"


@pytest.mark.parametrize("cls", CASES)
def test_state_answers_the_same_after_its_round_trip_through_storage(cls: type) -> None:
    case = STATEFUL[cls]
    original, restored = case.make(), case.round_trip(case.make())
    assert type(restored) is cls
    before = case.behaviour(original)
    assert case.behaviour(restored) == before
    if case.expected is not None:
        assert before == case.expected


@pytest.mark.parametrize("cls", CASES)
def test_state_pickles(cls: type) -> None:
    case = STATEFUL[cls]
    assert case.behaviour(_pickled(case.make())) == case.behaviour(case.make())


@pytest.mark.parametrize("cls", [pytest.param(c, id=c.__name__) for c in STATEFUL if hasattr(c, "clone")])
def test_a_clone_answers_the_same_and_is_independent(cls: type) -> None:
    case = STATEFUL[cls]
    original = case.make()
    clone = original.clone()
    assert case.behaviour(clone) == case.behaviour(case.make())
    # The clone was updated; the original was not.
    assert case.behaviour(original) == case.behaviour(case.make())


@pytest.mark.parametrize("cls", CASES)
def test_state_class_is_documented_with_an_example(cls: type) -> None:
    doc = inspect.getdoc(cls) or ""
    assert doc.strip(), f"{cls.__name__} has no docstring"
    assert ("Examples" in doc) != (cls in WITHOUT_EXAMPLES), (
        f"{cls.__name__}: add an Examples section"
        if cls not in WITHOUT_EXAMPLES
        else f"{cls.__name__} has examples now: drop it from WITHOUT_EXAMPLES"
    )


# ---------------------------------------------------------------------------- defaults

#: Defaults that cannot be changed in place (river allows only basic immutable types).
_IMMUTABLE = (type(None), bool, int, float, complex, str, bytes, range, type, enum.Enum, pathlib.PurePath)
#: A function default (``on_pause=lambda: None``) is called, never changed.
_FUNCTIONS = (types.FunctionType, types.BuiltinFunctionType)


def _is_immutable(value: object) -> bool:
    if isinstance(value, tuple | frozenset):
        return all(_is_immutable(v) for v in value)
    return isinstance(value, _IMMUTABLE + _FUNCTIONS)


def _constructor_defaults(cls: type) -> dict[str, object]:
    if dataclasses.is_dataclass(cls):
        # A default_factory field gets a fresh value per instance: no default to share.
        return {
            f.name: f.default
            for f in dataclasses.fields(cls)
            if f.init and f.default is not dataclasses.MISSING
        }
    return {
        p.name: p.default
        for p in inspect.signature(cls.__init__).parameters.values()  # type: ignore[misc]
        if p.default is not inspect.Parameter.empty
    }


def _mutable_defaults() -> dict[str, object]:
    return {
        f"{_name(cls)}.{param}": default
        for cls in _classes()
        for param, default in _constructor_defaults(cls).items()
        if not _is_immutable(default)
    }


def test_no_constructor_has_an_unlisted_mutable_default() -> None:
    found = _mutable_defaults()
    unlisted = {name: repr(value) for name, value in found.items() if name not in MUTABLE_DEFAULTS_ALLOWED}
    assert not unlisted, f"mutable default arguments (use None or a tuple): {unlisted}"
    stale = set(MUTABLE_DEFAULTS_ALLOWED) - set(found)
    assert not stale, f"stale MUTABLE_DEFAULTS_ALLOWED entries: {stale}"


def test_the_mutable_default_check_sees_one() -> None:
    class Window:
        def __init__(self, edges: list[float] = [0.0, 1.0], name: str = "w") -> None:  # noqa: B006
            self.edges, self.name = edges, name

    class Scale:  # hashable, so dataclasses let it through as a default
        factor = 1.0

    @dataclass
    class Record:
        items: list[str] = dataclasses.field(default_factory=list)
        scale: Scale = Scale()  # noqa: RUF009

    assert {k for k, v in _constructor_defaults(Window).items() if not _is_immutable(v)} == {"edges"}
    assert {k for k, v in _constructor_defaults(Record).items() if not _is_immutable(v)} == {"scale"}
