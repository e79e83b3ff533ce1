"""Named pump scenarios: what happens to the readings, from which reading on, and what it should trigger.

An :class:`Effect` changes readings with sequence numbers in ``[start, end)``;
a scenario is a few effects. ``rigwatch pump --scenario NAME[@START[-END]]``
picks one, ``demo`` strings several into a timeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
]

KINDS = ("offset", "stuck", "noise", "degrade", "bad", "wrong-labels")


@dataclass(frozen=True)
class Effect:
    """One change to readings ``start <= seq < end`` (``end`` None: to the end).

    ``offset`` adds *amount* to *sensor*; ``stuck`` freezes *sensor* at its value
    in reading *start*; ``noise`` adds Gaussian noise of standard deviation
    *amount* to *sensor*; ``degrade`` replays cycles of a failing cooler (3 %)
    with a probability rising from 0 to 1 over the span; ``bad`` makes a share
    *amount* of records malformed; ``wrong-labels`` gives a share *amount* of the
    Actuals a wrong class.
    """

    kind: str
    start: int
    end: int | None = None
    sensor: str | None = None
    amount: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"effect kind={self.kind!r}: expected one of {', '.join(KINDS)}")
        if self.start < 0 or (self.end is not None and self.end <= self.start):
            raise ConfigError(f"effect {self.kind}: span [{self.start}, {self.end}) is empty or negative")

    def active(self, seq: int) -> bool:
        """Whether reading *seq* is in the span."""
        return seq >= self.start and (self.end is None or seq < self.end)

    def progress(self, seq: int) -> float:
        """How far *seq* is through the span, 0..1 (1 after a closed span's end, or for an open one)."""
        if self.end is None:
            return 1.0
        return min(1.0, max(0.0, (seq - self.start) / (self.end - self.start)))


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


#: What the demo does to the deployment at the start of a phase.
ACTIONS = ("promote", "rollback")


@dataclass(frozen=True)
class Phase:
    """A stretch of the demo timeline, in seconds from the start; *action* (:data:`ACTIONS`) opens it."""

    name: str
    start_s: float
    end_s: float | None
    action: str | None = None


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
)
#: ``rigwatch demo --scenario model-update``: the deployment steps of the timeline alone.
MODEL_UPDATE: tuple[tuple[str, float, str | None, str | None], ...] = (
    ("normal", 20, None, None),
    ("a retrained model version promoted while readings flow", 20, None, "promote"),
    ("rolled back to the previous champion", 20, None, "rollback"),
)


def demo_timeline(rate: float, scenario: str = "timeline") -> tuple[list[Phase], list[str]]:
    """The demo's phases and, for a pump sending *rate* readings/s, the ``--scenario`` values that play them.

    *scenario* ``timeline`` plays :data:`DEMO_TIMELINE`, ``model-update`` :data:`MODEL_UPDATE`;
    a scenario name plays 20 s normal, 20 s of that scenario, then recovery.

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
    elif scenario in SCENARIOS:
        timeline = (("normal", 20, None, None), (scenario, 20, scenario, None), ("recovery", 20, None, None))
    else:
        raise ConfigError(
            f"scenario={scenario!r}: expected 'timeline', 'model-update' or one of {', '.join(SCENARIOS)}"
        )
    phases: list[Phase] = []
    specs: list[str] = []
    t = 0.0
    for i, (name, seconds, effect, action) in enumerate(timeline):
        # The last phase stays on screen until the demo stops.
        phases.append(Phase(name, t, None if i == len(timeline) - 1 else t + seconds, action))
        if effect is not None:
            specs.append(f"{effect}@{int(t * rate)}-{int((t + seconds) * rate)}")
        t += seconds
    return phases, specs
