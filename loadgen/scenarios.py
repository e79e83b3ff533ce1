"""Named pump scenarios: what happens to the readings, from which reading on, and what it should trigger.

An :class:`Effect` changes readings with sequence numbers in ``[start, end)``;
a scenario is a few effects. ``rigwatch pump --scenario NAME[@START[-END]]``
picks one, ``demo`` strings several into a timeline.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import overload

import numpy as np

from rigwatch.data.columns import SENSOR_COLUMNS, Dataset
from rigwatch.exceptions import ConfigError

__all__ = [
    "ACTIONS",
    "DEMO_TIMELINE",
    "MODEL_UPDATE",
    "SCENARIOS",
    "Effect",
    "Phase",
    "Scenario",
    "demo_timeline",
    "parse_scenario",
    "recalibrated",
]

KINDS = ("offset", "stuck", "noise", "degrade", "bad", "wrong-labels", "recalibrate")
#: Kinds that map every value of their sensor the same way, so a dataset can be given them too.
_FIXED_MAPS = ("offset", "recalibrate")


@dataclass(frozen=True)
class Effect:
    """One change to readings ``start <= seq < end`` (``end`` None: to the end).

    ``offset`` adds *amount* to *sensor*; ``stuck`` freezes *sensor* at its value
    in reading *start*; ``noise`` adds Gaussian noise of standard deviation
    *amount* to *sensor*; ``degrade`` replays cycles of a failing cooler (3 %)
    with a probability rising from 0 to 1 over the span; ``bad`` makes a share
    *amount* of records malformed; ``wrong-labels`` gives a share *amount* of the
    Actuals a wrong class; ``recalibrate`` turns *sensor* value ``x`` into
    ``scale * x + amount`` (a sensor swapped or recalibrated with the wrong
    gain and zero).
    """

    kind: str
    start: int
    end: int | None = None
    sensor: str | None = None
    amount: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"effect kind={self.kind!r}: expected one of {', '.join(KINDS)}")
        if self.start < 0 or (self.end is not None and self.end <= self.start):
            raise ConfigError(f"effect {self.kind}: span [{self.start}, {self.end}) is empty or negative")
        if self.kind == "recalibrate" and self.sensor not in SENSOR_COLUMNS:
            raise ConfigError(
                f"effect recalibrate: sensor={self.sensor!r}, expected one of {', '.join(SENSOR_COLUMNS)}"
            )
        if self.scale != 1.0 and (self.kind != "recalibrate" or not math.isfinite(self.scale)):
            raise ConfigError(
                f"effect {self.kind}: scale={self.scale!r}, expected 1.0 (only recalibrate takes another)"
            )

    def __repr__(self) -> str:
        # scale only where it is set, so every other effect reads as it always has.
        shown = (f for f in dataclasses.fields(self) if f.name != "scale" or self.scale != 1.0)
        return f"Effect({', '.join(f'{f.name}={getattr(self, f.name)!r}' for f in shown)})"

    def active(self, seq: int) -> bool:
        """Whether reading *seq* is in the span."""
        return seq >= self.start and (self.end is None or seq < self.end)

    def progress(self, seq: int) -> float:
        """How far *seq* is through the span, 0..1 (1 after a closed span's end, or for an open one)."""
        if self.end is None:
            return 1.0
        return min(1.0, max(0.0, (seq - self.start) / (self.end - self.start)))

    @overload
    def mapped(self, value: float) -> float: ...
    @overload
    def mapped(self, value: np.ndarray) -> np.ndarray: ...
    def mapped(self, value: float | np.ndarray) -> float | np.ndarray:
        """*value* of *sensor* as an ``offset`` or ``recalibrate`` effect reports it.

        The pump (one reading) and :func:`recalibrated` (a column) both call this,
        so a model retrained on the data sees exactly the values the pump sends.

        Examples
        --------
        >>> Effect("recalibrate", 0, sensor="cool_pwr_pct", amount=0.5, scale=2.0).mapped(1.5)
        3.5
        """
        return self.scale * value + self.amount


@dataclass(frozen=True)
class Scenario:
    """A named set of effects and what an operator should see."""

    name: str
    triggers: str
    effects: Callable[[int, int | None], tuple[Effect, ...]]
    order: str = "iid"


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("iid", "nothing: a stationary replay; no alert should fire", lambda a, b: ()),
        Scenario(
            "run-order",
            "the cycles in their recorded order: the cooler goes 3 % -> 20 % -> 100 %; "
            "prediction-mix drift and ADWIN change points at each condition change",
            lambda a, b: (),
            order="run",
        ),
        Scenario(
            "sensor-offset",
            "tsb_temp +2 degC: feature_drift on tsb_temp (critical at once); the model ignores "
            "tsb_temp, so drift_score and accuracy stay put",
            lambda a, b: (Effect("offset", a, b, "tsb_temp", 2.0),),
        ),
        Scenario(
            "sensor-stuck",
            "cool_pwr_pct (the model's most important input) frozen at one value: feature_drift, "
            "drift_score ~40 and prediction_drift (critical); realised accuracy ~0.33 once labels arrive",
            lambda a, b: (Effect("stuck", a, b, "cool_pwr_pct"),),
        ),
        Scenario(
            "sensor-noise",
            "psb_bar with Gaussian noise of 5 bar (about one training std): feature_drift on psb_bar, "
            "drift_score ~2, prediction_drift, ~12 % uncertain predictions, accuracy ~0.73",
            lambda a, b: (Effect("noise", a, b, "psb_bar", 5.0),),
        ),
        Scenario(
            "cooler-degradation",
            "the class mix shifts toward a failing cooler (3 %) over the span: prediction_drift and "
            "drift_score rising window by window; accuracy stays ~1.0 (the model sees it coming)",
            lambda a, b: (Effect("degrade", a, b),),
        ),
        Scenario(
            "bad-records",
            "30 % malformed records: data_errors alert (DLQ by reason); predictions continue",
            lambda a, b: (Effect("bad", a, b, amount=0.3),),
        ),
        Scenario(
            "wrong-labels",
            "30 % of the labels wrong: realised accuracy ~0.7 while the estimate stays high (accuracy alert)",
            lambda a, b: (Effect("wrong-labels", a, b, amount=0.3),),
        ),
        Scenario(
            "sensor-recalibration",
            "cool_pwr_pct (the most important input) reads 2/3 of the true cooling power, as after a "
            "flow meter swap with the old pulse factor left configured (CP is computed from coolant flow): "
            "every cooler looks like it is failing; feature_drift on cool_pwr_pct (ratio ~50), drift_score "
            "~38, prediction_drift ~140 (critical); the model says 3 % for 99.6 % of readings at mean "
            "confidence 0.99 (none uncertain, ~1 % outlying): realised accuracy ~0.34 while the estimate "
            "stays ~0.98. A model retrained on recalibrated() data is right again (accuracy ~1.0)",
            # 2/3: the new meter's 400 pulses/l divided by the old meter's 600. A full cooler then reads
            # ~1.45 kW, where failing ones sit (1.51 +/- 0.08), for champions of every seed tried (8);
            # 0.8 fools only the 20 % class (accuracy 0.67), 0.75 is at the edge of the 100 % class.
            # Values stay within the scorer's outlying margin of the trained range but for ~1 %.
            lambda a, b: (Effect("recalibrate", a, b, "cool_pwr_pct", 0.0, scale=400 / 600),),
        ),
    )
}


def parse_scenario(text: str) -> tuple[Scenario, tuple[Effect, ...]]:
    """``NAME[@START[-END]]`` (reading numbers) -> the scenario and its effects.

    Examples
    --------
    >>> scenario, effects = parse_scenario("sensor-offset@1000-2000")
    >>> effects
    (Effect(kind='offset', start=1000, end=2000, sensor='tsb_temp', amount=2.0),)
    """
    name, _, span = text.partition("@")
    if name not in SCENARIOS:
        raise ConfigError(f"scenario={text!r}: unknown name {name!r}; expected one of {', '.join(SCENARIOS)}")
    start, _, end = span.partition("-")
    try:
        first, last = int(start) if start else 0, int(end) if end else None
    except ValueError:
        raise ConfigError(f"scenario={text!r}: START and END must be reading numbers") from None
    scenario = SCENARIOS[name]
    return scenario, scenario.effects(first, last)


def recalibrated(dataset: Dataset, scenario_name: str = "sensor-recalibration") -> Dataset:
    """*dataset* as if every cycle had been recorded after the scenario's sensor change.

    The data to retrain a challenger on: the scenario's ``recalibrate`` and
    ``offset`` effects applied to every row with :meth:`Effect.mapped`, the same
    values the pump sends inside the scenario's span. Labels and cycles are
    unchanged; missing values (NaN) stay missing.

    Raises
    ------
    ConfigError
        *scenario_name* is unknown or changes no sensor by a fixed map.

    Examples
    --------
    >>> ds = Dataset(np.arange(2), np.full((2, 17), 3.0), np.tile([3, 100, 0, 130, 0], (2, 1)), "doc")
    >>> after = recalibrated(ds)
    >>> after.row(0)["cool_pwr_pct"], after.row(0)["cool_eff_pct"], after.source
    (2.0, 3.0, 'doc (recalibrated: sensor-recalibration)')
    """
    _, effects = parse_scenario(scenario_name)
    fixed = [e for e in effects if e.kind in _FIXED_MAPS and e.sensor is not None]
    if not fixed:
        raise ConfigError(
            f"scenario={scenario_name!r}: no {' or '.join(_FIXED_MAPS)} effect to apply to a dataset"
        )
    sensors = dataset.sensors.copy()
    for effect in fixed:
        column = SENSOR_COLUMNS.index(str(effect.sensor))
        sensors[:, column] = effect.mapped(sensors[:, column])
    return Dataset(
        dataset.cycle, sensors, dataset.labels, f"{dataset.source} (recalibrated: {scenario_name})"
    )


#: What the demo does to the deployment at the start of a phase.
ACTIONS = ("promote", "rollback", "challenge")


@dataclass(frozen=True)
class Phase:
    """A stretch of the demo timeline, in seconds from the start; *action* (:data:`ACTIONS`) opens it."""

    name: str
    start_s: float
    end_s: float | None
    action: str | None = None


#: The demo's champion/challenger steps: the rig changes under the champion, a retrained
#: challenger runs in shadow, the gate promotes it once judged better (``--scenario challenger``).
CHALLENGER: tuple[tuple[str, float, str | None, str | None], ...] = (
    (
        "sensor recalibrated: cool_pwr_pct reads 2/3, the champion confidently wrong",
        30,
        "sensor-recalibration",
        None,
    ),
    (
        "challenger retrained after the recalibration, in shadow; promoted once judged better",
        60,
        "sensor-recalibration",
        "challenge",
    ),
)
#: The demo: (phase, seconds, pump scenario or None for normal operation, deployment action or None).
DEMO_TIMELINE: tuple[tuple[str, float, str | None, str | None], ...] = (
    # Short enough that a newcomer sees an alert fire and resolve within two minutes.
    ("normal", 40, None, None),
    ("sensor offset: tsb_temp +2 degC", 40, "sensor-offset", None),
    ("recovery", 40, None, None),
    ("bad records: 30 % malformed", 30, "bad-records", None),
    ("cooler degrading toward failure", 90, "cooler-degradation", None),
    ("a retrained model version promoted while readings flow", 40, None, "promote"),
    ("rolled back to the previous champion", 40, None, "rollback"),
    *CHALLENGER,
)
#: ``rigwatch demo --scenario model-update``: the deployment steps of the timeline alone.
MODEL_UPDATE: tuple[tuple[str, float, str | None, str | None], ...] = (
    ("normal", 20, None, None),
    ("a retrained model version promoted while readings flow", 20, None, "promote"),
    ("rolled back to the previous champion", 20, None, "rollback"),
)


def demo_timeline(rate: float, scenario: str = "timeline") -> tuple[list[Phase], list[str]]:
    """The demo's phases and, for a pump sending *rate* readings/s, the ``--scenario`` values that play them.

    *scenario* ``timeline`` plays :data:`DEMO_TIMELINE`, ``model-update`` :data:`MODEL_UPDATE`,
    ``challenger`` its last steps (20 s normal first); a scenario name plays 20 s normal, 20 s
    of that scenario, then recovery. The effect of the last phase lasts until the demo stops.

    Examples
    --------
    >>> phases, specs = demo_timeline(10)
    >>> specs[0], phases[0].name
    ('sensor-offset@400-800', 'normal')
    >>> demo_timeline(10, "bad-records")[1]
    ['bad-records@200-400']
    >>> [(p.start_s, p.action) for p in demo_timeline(10, "model-update")[0]]
    [(0.0, None), (20.0, 'promote'), (40.0, 'rollback')]
    """
    if scenario == "timeline":
        timeline = DEMO_TIMELINE
    elif scenario == "model-update":
        timeline = MODEL_UPDATE
    elif scenario == "challenger":
        timeline = (("normal", 20, None, None), *CHALLENGER)
    elif scenario in SCENARIOS:
        timeline = (("normal", 20, None, None), (scenario, 20, scenario, None), ("recovery", 20, None, None))
    else:
        raise ConfigError(
            f"scenario={scenario!r}: expected 'timeline', 'model-update', 'challenger' or one of"
            f" {', '.join(SCENARIOS)}"
        )
    phases: list[Phase] = []
    specs: list[str] = []
    t = 0.0
    for i, (name, seconds, effect, action) in enumerate(timeline):
        # The last phase stays on screen until the demo stops.
        phases.append(Phase(name, t, None if i == len(timeline) - 1 else t + seconds, action))
        if effect is not None:
            end = "" if i == len(timeline) - 1 else f"-{int((t + seconds) * rate)}"
            specs.append(f"{effect}@{int(t * rate)}{end}")
        t += seconds
    return phases, specs
