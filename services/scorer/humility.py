"""Humility rules: when the scorer should not take the model at its word.

Three rules look at every scored row, in this order:

``missing``
    A model feature was null or non-finite; flag ``missing:<feature>``. Always on:
    LightGBM scores a missing value, but the prediction should say it guessed.
``outlying``
    A feature lies outside its training range (``min``/``max`` of the model's
    reference profile) by more than ``outlying_margin`` times the range's width;
    flag ``outlying:<feature>``. Trees extrapolate flat, so such a value is
    scored like the nearest training value, whatever it means physically.
``uncertain``
    The model's top probability is below ``uncertain_below``; flag ``uncertain``.

Each rule's action says what happens to a row it fires on: ``none`` (the flag
only), ``override`` (the prediction's label becomes ``fallback_label`` and it
gets an ``override:<rule>`` flag) or ``reject`` (no prediction: the reading goes
to the DLQ with reason ``humility:<rule>``). A reject wins over an override,
an override over nothing; between rules with the same action the first in the
order above names the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

from rigwatch.exceptions import ConfigError, ModelError

__all__ = ["ACTIONS", "RULES", "HumilityRules", "Verdict", "judge", "training_range"]

Action = Literal["none", "override", "reject"]
#: What a rule may do to a row it fires on, weakest first.
ACTIONS: tuple[Action, ...] = ("none", "override", "reject")
#: The rules in the order they name a reason when several ask for the same action.
RULES = ("missing", "outlying", "uncertain")
_RANK = {action: rank for rank, action in enumerate(ACTIONS)}


@dataclass(frozen=True)
class HumilityRules:
    """How one deployment treats missing, outlying and uncertain predictions.

    Parameters
    ----------
    uncertain_below
        A prediction whose confidence (top probability) is below this is
        ``uncertain``; None turns the rule off.
    outlying_margin
        How far outside its training range ``[min, max]`` a feature may be before
        it is ``outlying``, as a fraction of ``max - min``; None turns the rule off.
    uncertain_action, outlying_action, missing_action
        ``none``, ``override`` or ``reject`` (see the module docstring).
    fallback_label
        The label an ``override`` emits; required when any action is
        ``override``, and must be one of the model's classes
        (:meth:`check_classes`).

    Raises
    ------
    ConfigError
        An unknown action, a threshold out of range, or an override without a
        fallback label; the message names the field and the value.

    Examples
    --------
    >>> HumilityRules().describe()
    'missing -> none; outlying beyond 10 % of the training range -> none; uncertain below 0.5 -> none'
    >>> HumilityRules(uncertain_action="override")
    Traceback (most recent call last):
    ...
    rigwatch.exceptions.ConfigError: fallback_label=None: required when uncertain_action is 'override'
    """

    uncertain_below: float | None = 0.5
    outlying_margin: float | None = 0.1
    uncertain_action: str = "none"
    outlying_action: str = "none"
    missing_action: str = "none"
    fallback_label: str | None = None

    def __post_init__(self) -> None:
        for rule in RULES:
            name = f"{rule}_action"
            if self.action(rule) not in ACTIONS:
                raise ConfigError(f"{name}={self.action(rule)!r}: expected one of {', '.join(ACTIONS)}")
        below = self.uncertain_below
        if below is not None and not 0.0 <= below <= 1.0:
            raise ConfigError(f"uncertain_below={below!r}: expected a probability in [0, 1], or None (off)")
        margin = self.outlying_margin
        # `not margin >= 0` also catches NaN, which would silently turn the rule off.
        if margin is not None and not (margin >= 0.0 and np.isfinite(margin)):
            raise ConfigError(
                f"outlying_margin={margin!r}: expected a finite fraction >= 0 of the training range, "
                "or None (off)"
            )
        overriding = [f"{rule}_action" for rule in RULES if self.action(rule) == "override"]
        if overriding and not self.fallback_label:
            raise ConfigError(
                f"fallback_label={self.fallback_label!r}: "
                f"required when {' and '.join(overriding)} is 'override'"
            )

    def action(self, rule: str) -> Action:
        """The configured action of *rule* (one of :data:`RULES`)."""
        return cast(Action, getattr(self, f"{rule}_action"))

    def check_classes(self, classes: Sequence[str]) -> None:
        """Raise :class:`ConfigError` if an override would emit a label the model cannot predict.

        Downstream windows index labels by the model's classes, so a fallback
        outside them would be dropped there as malformed.
        """
        if any(self.action(rule) == "override" for rule in RULES) and self.fallback_label not in classes:
            raise ConfigError(
                f"fallback_label={self.fallback_label!r}: not a class of the model; "
                f"expected one of {', '.join(classes)}"
            )

    def describe(self) -> str:
        """The active rules in one line, for the start-up log."""
        parts = [f"missing -> {self.missing_action}"]
        if self.outlying_margin is None:
            parts.append("outlying off")
        else:
            beyond = f"{self.outlying_margin * 100:g} % of the training range"
            parts.append(f"outlying beyond {beyond} -> {self.outlying_action}")
        if self.uncertain_below is None:
            parts.append("uncertain off")
        else:
            parts.append(f"uncertain below {self.uncertain_below:g} -> {self.uncertain_action}")
        if self.fallback_label is not None:
            parts.append(f"fallback label {self.fallback_label!r}")
        return "; ".join(parts)


@dataclass(frozen=True)
class Verdict:
    """What the rules say about one row on which at least one of them fired.

    ``flags`` go on the prediction (they include ``override:<rule>`` when
    ``action`` is ``override``); ``rule`` is the rule whose action was taken
    (None when ``action`` is ``none``); ``reason`` and ``detail`` are the DLQ
    headers of a ``reject``.
    """

    flags: tuple[str, ...]
    action: Action = "none"
    rule: str | None = None
    detail: str = ""

    @property
    def reason(self) -> str:
        """``humility:<rule>``, the DLQ ``error`` header of a reject."""
        return f"humility:{self.rule}"


def training_range(
    reference: Mapping[str, Any] | None, features: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's training ``min`` and ``max`` from a reference profile; NaN where unknown.

    A model without a reference profile, or a feature without ``min``/``max``
    in it, is not checked by the ``outlying`` rule (a NaN bound never compares).

    Raises
    ------
    ModelError
        A bound that is not a number, or ``min > max``.

    Examples
    --------
    >>> low, high = training_range({"features": {"a": {"min": 1, "max": 2}}}, ["a", "b"])
    >>> low.tolist(), high.tolist()
    ([1.0, nan], [2.0, nan])
    """
    low = np.full(len(features), np.nan)
    high = np.full(len(features), np.nan)
    profiles = (reference or {}).get("features") or {}
    for j, name in enumerate(features):
        profile = profiles.get(name)
        if not isinstance(profile, Mapping) or "min" not in profile or "max" not in profile:
            continue
        try:
            low[j], high[j] = float(profile["min"]), float(profile["max"])
        except (TypeError, ValueError) as exc:
            raise ModelError(
                f"reference features.{name}: min={profile['min']!r}, max={profile['max']!r}; expected numbers"
            ) from exc
        if low[j] > high[j]:
            raise ModelError(f"reference features.{name}: min={low[j]!r} > max={high[j]!r}")
    return low, high


def judge(
    rules: HumilityRules,
    x: np.ndarray,
    missing: np.ndarray,
    confidence: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    features: Sequence[str],
) -> list[Verdict | None]:
    """Apply *rules* to a scored batch: one :class:`Verdict` per row, None where no rule fired.

    Parameters
    ----------
    x
        ``(n, len(features))`` model input, NaN where missing.
    missing
        ``(n, len(features))`` boolean, True where the input was missing.
    confidence
        ``(n,)`` top probability of each row.
    low, high
        Training range of each feature (:func:`training_range`); NaN skips a feature.
    features
        Feature names, in column order.

    Notes
    -----
    The masks are computed for the whole batch at once; Python work is done
    only for the rows a rule fired on, so a clean batch costs a few array
    comparisons.

    Examples
    --------
    >>> x = np.array([[5.0, 1.0], [9.0, 1.0], [5.0, np.nan]])
    >>> v = judge(HumilityRules(outlying_action="reject"), x, np.isnan(x), np.array([0.9, 0.9, 0.4]),
    ...           np.array([0.0, 0.0]), np.array([6.0, 2.0]), ["a", "b"])
    >>> v[0] is None, v[1].reason, v[1].detail
    (True, 'humility:outlying', 'outlying: a=9 outside training range [0, 6] +- 10 %')
    >>> v[2].flags, v[2].action
    (('missing:b', 'uncertain'), 'none')
    """
    fired: dict[str, np.ndarray] = {"missing": np.asarray(missing.any(axis=1))}
    outlying: np.ndarray | None = None
    margin = rules.outlying_margin
    if margin is not None and np.isfinite(low).any():
        pad = margin * (high - low)
        # Bounds in x's dtype: rounding is monotonic, so a float32 value at the
        # training max is never pushed past a float32 bound that was exact in float64.
        lo, hi = (low - pad).astype(x.dtype), (high + pad).astype(x.dtype)
        outlying = (x < lo) | (x > hi)
        fired["outlying"] = np.asarray(outlying.any(axis=1))
    if rules.uncertain_below is not None:
        fired["uncertain"] = np.asarray(confidence < rules.uncertain_below)
    verdicts: list[Verdict | None] = [None] * len(x)
    rows = np.flatnonzero(np.logical_or.reduce(list(fired.values())))
    for i in rows.tolist():
        hits = [rule for rule in RULES if rule in fired and fired[rule][i]]
        flags, details = [], {}
        if "missing" in hits:
            names = [features[j] for j in np.flatnonzero(missing[i]).tolist()]
            flags += [f"missing:{name}" for name in names]
            details["missing"] = f"missing: {', '.join(names)} (null or non-finite)"
        if "outlying" in hits and outlying is not None and margin is not None:
            cols = np.flatnonzero(outlying[i]).tolist()
            flags += [f"outlying:{features[j]}" for j in cols]
            details["outlying"] = "outlying: " + ", ".join(
                f"{features[j]}={float(x[i, j]):.6g} outside training range "
                f"[{low[j]:.6g}, {high[j]:.6g}] +- {margin * 100:g} %"
                for j in cols
            )
        if "uncertain" in hits:
            flags.append("uncertain")
            details["uncertain"] = (
                f"uncertain: confidence {float(confidence[i]):.6g} below {rules.uncertain_below:g}"
            )
        action = max((rules.action(rule) for rule in hits), key=_RANK.__getitem__)
        if action == "none":
            verdicts[i] = Verdict(tuple(flags))
            continue
        rule = next(rule for rule in hits if rules.action(rule) == action)
        if action == "override":
            flags.append(f"override:{rule}")
        # The deciding rule first, then whatever else fired: a DLQ record has no flags.
        detail = "; ".join([details[rule]] + [d for r, d in details.items() if r != rule])
        verdicts[i] = Verdict(tuple(flags), action, rule, detail)
    return verdicts
