"""Champion/challenger comparison on paired events, valid however often it is looked at.

Both models score the very same events and are judged against the same delayed
labels, so each labelled event is a *pair* of outcomes. The comparison is
published per window and cumulatively and read again and again, so a fixed-n
test (read at every window until it says "significant") would declare a winner
between two equal models far more often than its alpha. The verdict therefore
comes from a sequential test whose error bound holds at every look at once.

State is :class:`PairedCounts`: integer counts and float sums that add up, so
windows are summed into a cumulative (``sum(windows, PairedCounts())``) and
stored as JSON (:meth:`PairedCounts.to_dict`). :func:`compare` turns counts into a
:class:`Comparison`:

==================  =====================================================================
``mcnemar_p``       McNemar's exact two-sided p-value on the discordant pairs, for
                    reporting only: it is valid for one look at a fixed n, not for many.
``sequential_p``    always-valid p-value of the mSPRT on the discordant pairs
                    (:func:`discordant_log_lr`); the accuracy verdict comes from it.
``loss_p``          always-valid (asymptotically) p-value of a normal-mixture mSPRT on the
                    per-event log-loss difference (:func:`loss_log_lr`).
``verdict``         ``better`` / ``worse`` / ``inconclusive`` for the challenger.
``n_needed``        labelled pairs still needed for a decision if the observed rates held.
==================  =====================================================================

Verdict rule, with ``A`` the accuracy mSPRT and ``L`` the log-loss mSPRT, both at the
same ``alpha`` and both from the current counts:

- ``inconclusive`` while ``n < minimum_pairs``;
- ``better`` when ``A`` crosses (Λ ≥ 1/alpha) with ``c > b`` (the challenger is right
  where the champion is wrong more often than the reverse) and ``L`` is not
  significant in the champion's favour (not: its current Λ ≥ 1/alpha with the
  champion's mean log loss lower);
- ``worse`` symmetrically (``A`` crosses with ``b > c``; ``L`` not significant in the
  challenger's favour);
- ``inconclusive`` otherwise, including when ``A`` and ``L`` point opposite ways.

Under H0 (equal accuracy) the probability that *any* look ever says ``better`` or
``worse`` is at most ``alpha`` (Ville's inequality, :func:`discordant_log_lr`); the
log-loss test can only turn a decision into ``inconclusive``, never make one, so an
anti-conservative ``L`` (it is asymptotic) costs power, not error rate. And if the
challenger is in truth no more accurate than the champion, the probability of ever
declaring ``better`` is at most ``alpha`` too (likewise ``worse``).

Caveats
-------
- The guarantees assume the labelled pairs are independent draws from one population.
  Consecutive cycles of one rig are correlated (a condition persists over many cycles),
  so discordant pairs come in runs and the tests are then anti-conservative. Thinning
  the pairs (every k-th cycle of a rig) reduces that; nothing here corrects for it.
- Labels that arrive (or not) depending on the outcome bias every figure here.
- A per-window comparison is a new test per window: over many windows, some will
  decide between equal models. Act on the cumulative comparison; windows are for looking.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from rigwatch.exceptions import ConfigError, DataError

__all__ = [
    "BETTER",
    "DEFAULT_ALPHA",
    "DEFAULT_LOSS_SCALE",
    "DEFAULT_MINIMUM_PAIRS",
    "DEFAULT_PRIOR_A",
    "INCONCLUSIVE",
    "LOSS_MIN_PAIRS",
    "MAX_LOG_LOSS",
    "VERDICTS",
    "WORSE",
    "Comparison",
    "PairedCounts",
    "compare",
    "discordant_log_lr",
    "loss_log_lr",
    "mcnemar_exact_p",
    "pairs_needed",
]

BETTER, WORSE, INCONCLUSIVE = "better", "worse", "inconclusive"
#: What :func:`compare` can say about the challenger.
VERDICTS = (BETTER, WORSE, INCONCLUSIVE)

#: Probability of any decision between two equally accurate models, over every look.
DEFAULT_ALPHA = 0.05
#: ``a`` of the Beta(a, a) mixing prior on the split of discordant pairs. Its sd is
#: 0.11 (splits 0.4-0.6 are where it puts its weight): discordant pairs needed to
#: cross 1/0.05 on the expected path are ~1,010 / 230 / 60 / 20 for true splits of
#: 0.55 / 0.6 / 0.7 / 0.9 (a uniform prior, a = 1: 1,270 / 280 / 60 / 13).
#: Small effects take most pairs, so the prior leans toward them.
DEFAULT_PRIOR_A = 10.0
#: sd of the normal mixing prior on the mean log-loss difference, in units of the
#: sd of the per-event difference: tuned to standardised effects around 0.1
#: (~920 pairs to cross 1/0.05 on the expected path; 0.05: ~4,000; 0.2: ~250).
DEFAULT_LOSS_SCALE = 0.1
#: Labelled pairs below which :func:`compare` says ``inconclusive`` whatever the tests say.
DEFAULT_MINIMUM_PAIRS = 100
#: Labelled pairs below which the log-loss test reports p = 1: its plug-in variance
#: is an asymptotic device, meaningless from a handful of pairs.
LOSS_MIN_PAIRS = 30
#: Per-event log loss cap: -ln(1e-15), i.e. the true-class probability clipped to >= 1e-15.
MAX_LOG_LOSS = -math.log(1e-15)

_LN2 = math.log(2.0)
# Doubling the projected pairs stops here (~1e15): beyond it, "never" is the honest answer.
_MAX_PROJECTION = 2**50


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise DataError(f"paired_counts.{name}: {value!r}, expected a non-negative integer")
    return int(value)


def _sum(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise DataError(f"paired_counts.{name}: {value!r}, expected a finite non-negative number")
    v = float(value)
    if not (math.isfinite(v) and v >= 0.0):
        raise DataError(f"paired_counts.{name}: {value!r}, expected a finite non-negative number")
    return v


@dataclass(frozen=True)
class PairedCounts:
    """Sufficient statistics of a champion/challenger comparison; they add up.

    The four outcome cells partition the labelled pairs; the loss sums are over the
    same pairs. ``predicted`` and ``agreements`` count predicted pairs, labelled or
    not, so they are counted when the predictions are made (:meth:`from_predictions`),
    the rest when the labels arrive (:meth:`from_arrays`).

    Parameters
    ----------
    both_correct, both_wrong
        Labelled pairs where both models are right / both wrong.
    champion_only
        ``b``: the champion right, the challenger wrong.
    challenger_only
        ``c``: the challenger right, the champion wrong.
    champion_loss_sum, challenger_loss_sum
        Sums of each model's per-event log loss (capped at :data:`MAX_LOG_LOSS`).
    loss_diff_sq_sum
        Sum of ``d**2``, ``d = champion loss - challenger loss`` per event. The sum of
        ``d`` is ``champion_loss_sum - challenger_loss_sum`` (:attr:`loss_diff_sum`).
    predicted, agreements
        Predicted pairs, and those where both models predicted the same class.

    Raises
    ------
    DataError
        A count that is not a non-negative integer, a sum that is not finite and
        non-negative, or more agreements than predicted pairs.

    Examples
    --------
    >>> w1 = PairedCounts.from_arrays(
    ...     [True, False, True], [True, True, False], [0.1, 2.0, 0.2], [0.1, 0.3, 1.5]
    ... )
    >>> w2 = PairedCounts.from_predictions([0, 1, 2, 2], [0, 2, 2, 2])
    >>> total = w1 + w2
    >>> total.n, total.b, total.c, total.predicted, total.agreements
    (3, 1, 1, 4, 3)
    >>> PairedCounts.from_dict(total.to_dict()) == total
    True
    """

    both_correct: int = 0
    both_wrong: int = 0
    champion_only: int = 0
    challenger_only: int = 0
    champion_loss_sum: float = 0.0
    challenger_loss_sum: float = 0.0
    loss_diff_sq_sum: float = 0.0
    predicted: int = 0
    agreements: int = 0

    def __post_init__(self) -> None:
        # Coerce numpy scalars to int/float so instances compare, pickle and
        # serialise to JSON the same whichever way they were built.
        for f in fields(self):
            value = getattr(self, f.name)
            object.__setattr__(
                self, f.name, _count(f.name, value) if f.type == "int" else _sum(f.name, value)
            )
        if self.agreements > self.predicted:
            raise DataError(
                f"paired_counts.agreements: {self.agreements}, expected at most predicted={self.predicted}"
            )

    def __add__(self, other: PairedCounts) -> PairedCounts:
        if not isinstance(other, PairedCounts):
            return NotImplemented
        return PairedCounts(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @property
    def n(self) -> int:
        """Labelled pairs."""
        return self.both_correct + self.both_wrong + self.champion_only + self.challenger_only

    @property
    def b(self) -> int:
        """Discordant pairs won by the champion (McNemar's ``b``)."""
        return self.champion_only

    @property
    def c(self) -> int:
        """Discordant pairs won by the challenger (McNemar's ``c``)."""
        return self.challenger_only

    @property
    def loss_diff_sum(self) -> float:
        """Sum of ``d = champion loss - challenger loss``: positive when the challenger's is lower."""
        return self.champion_loss_sum - self.challenger_loss_sum

    @classmethod
    def from_arrays(
        cls,
        champion_correct: npt.ArrayLike,
        challenger_correct: npt.ArrayLike,
        champion_log_loss: npt.ArrayLike,
        challenger_log_loss: npt.ArrayLike,
    ) -> PairedCounts:
        """Counts of labelled pairs, one element per event in each array.

        Parameters
        ----------
        champion_correct, challenger_correct
            Whether each model's predicted class is the label (bool, or 0/1).
        champion_log_loss, challenger_log_loss
            ``-ln p(true class)`` per event. Clipped to ``[0, MAX_LOG_LOSS]``
            (p >= 1e-15, so infinity from p = 0 is capped too, and a tiny negative
            from p rounded above 1 is 0).

        Raises
        ------
        DataError
            Arrays that are not 1-d of one length, correctness not boolean, or
            a NaN log loss.
        """
        arrays = {
            "champion_correct": np.asarray(champion_correct),
            "challenger_correct": np.asarray(challenger_correct),
            "champion_log_loss": np.asarray(champion_log_loss, dtype=np.float64),
            "challenger_log_loss": np.asarray(challenger_log_loss, dtype=np.float64),
        }
        size = arrays["champion_correct"].shape
        for name, arr in arrays.items():
            if arr.ndim != 1 or arr.shape != size:
                raise DataError(f"{name}: shape {arr.shape}, expected 1-d like champion_correct {size}")
        for name in ("champion_correct", "challenger_correct"):
            arr = arrays[name]
            if arr.dtype != np.bool_ and not (
                np.issubdtype(arr.dtype, np.integer) and np.isin(arr, (0, 1)).all()
            ):
                raise DataError(f"{name}: dtype {arr.dtype}, expected booleans (or 0/1)")
        for name in ("champion_log_loss", "challenger_log_loss"):
            if np.isnan(arrays[name]).any():
                raise DataError(
                    f"{name}: NaN at index {int(np.argmax(np.isnan(arrays[name])))}, expected -ln p"
                )
        won = arrays["champion_correct"].astype(bool)
        challenger_won = arrays["challenger_correct"].astype(bool)
        champion_ll = np.clip(arrays["champion_log_loss"], 0.0, MAX_LOG_LOSS)
        challenger_ll = np.clip(arrays["challenger_log_loss"], 0.0, MAX_LOG_LOSS)
        d = champion_ll - challenger_ll
        return cls(
            both_correct=int(np.count_nonzero(won & challenger_won)),
            both_wrong=int(np.count_nonzero(~won & ~challenger_won)),
            champion_only=int(np.count_nonzero(won & ~challenger_won)),
            challenger_only=int(np.count_nonzero(~won & challenger_won)),
            champion_loss_sum=float(champion_ll.sum()),
            challenger_loss_sum=float(challenger_ll.sum()),
            loss_diff_sq_sum=float(d @ d),
        )

    @classmethod
    def from_predictions(cls, champion_class: npt.ArrayLike, challenger_class: npt.ArrayLike) -> PairedCounts:
        """Counts of predicted pairs (labels not needed): how often the two models agree.

        Raises
        ------
        DataError
            The arrays are not 1-d of one length.
        """
        champion, challenger = np.asarray(champion_class), np.asarray(challenger_class)
        if champion.ndim != 1 or champion.shape != challenger.shape:
            raise DataError(
                f"challenger_class: shape {challenger.shape}, "
                f"expected 1-d like champion_class {champion.shape}"
            )
        return cls(predicted=champion.size, agreements=int(np.count_nonzero(champion == challenger)))

    def to_dict(self) -> dict[str, int | float]:
        """JSON-serialisable form, read back by :meth:`from_dict`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PairedCounts:
        """Read :meth:`to_dict` output.

        Raises
        ------
        DataError
            A key is missing or unknown, or a value breaks the class rules.
        """
        if not isinstance(d, Mapping):
            raise DataError(f"paired_counts: {type(d).__name__} {d!r}, expected an object")
        names = {f.name for f in fields(cls)}
        missing, unknown = sorted(names - set(d)), sorted(set(d) - names)
        if missing or unknown:
            raise DataError(
                f"paired_counts: missing {missing}, unknown {unknown}; expected keys {sorted(names)}"
            )
        return cls(**d)


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare` says about a challenger against the champion.

    Accuracies and log losses are NaN without labelled pairs, ``agreement``
    without predicted pairs. ``b``/``c`` as in :class:`PairedCounts`;
    ``loss_diff`` is the mean of ``champion loss - challenger loss`` (positive:
    the challenger's log loss is lower). ``log_lambda`` and ``loss_log_lambda`` are
    the current log likelihood ratios of the two mSPRTs. ``sequential_p`` and
    ``loss_p`` are running minima over the looks chained through ``previous``
    (:func:`compare`), else from the current counts alone. ``reason`` says in a
    line why the verdict is what it is; ``method`` names the tests and settings.
    """

    n: int
    predicted: int
    agreement: float
    champion_accuracy: float
    challenger_accuracy: float
    champion_log_loss: float
    challenger_log_loss: float
    b: int
    c: int
    mcnemar_p: float
    log_lambda: float
    sequential_p: float
    loss_diff: float
    loss_log_lambda: float
    loss_p: float
    verdict: str
    reason: str
    n_needed: int | None
    method: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (NaN as ``None``), read back by :meth:`from_dict`."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = None if isinstance(value, float) and math.isnan(value) else value
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Comparison:
        """Read :meth:`to_dict` output (``None`` back to NaN where a float is expected).

        Raises
        ------
        DataError
            A key is missing.
        """
        names = [f.name for f in fields(cls)]
        missing = [name for name in names if name not in d]
        if missing:
            raise DataError(f"comparison: missing {', '.join(missing)}; keys present: {sorted(d)}")
        values = {name: d[name] for name in names}
        for f in fields(cls):
            if f.type == "float" and values[f.name] is None:
                values[f.name] = math.nan
        return cls(**values)


def mcnemar_exact_p(b: int, c: int) -> float:
    """McNemar's exact two-sided p-value: ``2 P(X <= min(b, c))``, X ~ Binomial(b + c, 1/2), capped at 1.

    Valid for one look at a sample size fixed in advance; reported beside the
    sequential test, never used for the verdict. Summed in log space from the
    tail's largest term down, stopping once terms no longer change the sum, so
    millions of discordant pairs cost a few thousand steps.

    Examples
    --------
    >>> round(mcnemar_exact_p(0, 6), 12), round(mcnemar_exact_p(9, 1), 12), mcnemar_exact_p(3, 3)
    (0.03125, 0.021484375, 1.0)
    """
    n, k = b + c, min(b, c)
    if 2 * k >= n:
        return 1.0
    log_top = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * _LN2
    # Terms below the top one, relative to it: P(j-1) / P(j) = j / (n - j + 1).
    rest, term = 0.0, 1.0
    for j in range(k, 0, -1):
        term *= j / (n - j + 1)
        rest += term
        if term < 1e-17 * rest:
            break
    return min(1.0, 2.0 * math.exp(log_top + math.log1p(rest)))


def _lbeta(x: float, y: float) -> float:
    return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)


def discordant_log_lr(b: float, c: float, prior_a: float = DEFAULT_PRIOR_A) -> float:
    """ln Λ of the mixture SPRT on discordant pairs.

    Given a discordant pair, the challenger is the one right with probability
    θ; H0 (equal accuracy) is θ = 1/2. With a Beta(a, a) mixture over θ,

    ``Λ = ∫ θ^c (1-θ)^b dBeta(θ; a, a) / (1/2)^(b+c) = B(c+a, b+a) / B(a, a) · 2^(b+c)``.

    Under H0, Λ after each discordant pair is a non-negative martingale starting at 1,
    so by Ville's inequality ``P(sup Λ >= 1/alpha) <= alpha``: a test that rejects when Λ
    reaches 1/alpha keeps its level however often, and whenever, it is looked at.
    ``min(1, 1/Λ)`` is an always-valid p-value. Concordant pairs do not change Λ.
    Non-integer counts are accepted (projections in :func:`pairs_needed`).

    Examples
    --------
    >>> [round(discordant_log_lr(b, c), 3) for b, c in [(0, 0), (3, 3), (2, 30)]]
    [0.0, -0.134, 7.641]
    """
    return _lbeta(c + prior_a, b + prior_a) - _lbeta(prior_a, prior_a) + (b + c) * _LN2


def loss_log_lr(n: int, mean: float, variance: float, scale: float = DEFAULT_LOSS_SCALE) -> float:
    """ln Λ of the normal-mixture SPRT on a mean difference (Robbins; Johari et al. 2017).

    With the per-event differences treated as normal with known variance σ² and a
    N(0, (scale·σ)²) mixture over their mean μ (H0: μ = 0),

    ``Λ = (1 + n s²)^(-1/2) exp(n s² / (1 + n s²) · z² / 2)``, ``z = √n · mean / σ``, ``s = scale``.

    σ² is replaced by the sample variance: the test is valid **asymptotically** (large
    n, finite variance), not exactly. Returns 0 (Λ = 1, no evidence) for ``n < 2`` or a
    variance that is not positive.

    Examples
    --------
    >>> round(loss_log_lr(1000, 0.02, 0.04), 3), round(loss_log_lr(1000, 0.0, 0.04), 3)
    (3.347, -1.199)
    """
    if n < 2 or not variance > 0.0:
        return 0.0
    ns2 = n * scale * scale
    return 0.5 * ns2 / (1.0 + ns2) * n * mean * mean / variance - 0.5 * math.log1p(ns2)


def pairs_needed(
    b: int,
    c: int,
    n: int,
    *,
    alpha: float = DEFAULT_ALPHA,
    prior_a: float = DEFAULT_PRIOR_A,
    min_effect: float | None = None,
) -> int | None:
    """Further labelled pairs after which Λ would reach 1/alpha if the observed rates held.

    Future pairs are discordant at the observed rate ``q = (b + c) / n`` and split at
    the observed ``c / (b + c)``; when the split is exactly 1/2 (no direction yet),
    at ``1/2 + min_effect / (2 q)`` (capped at 1), ``min_effect`` being the accuracy
    difference of interest. A projection along the expected path, not a power
    calculation: about half of the futures with these rates need more.

    Returns
    -------
    int or None
        0 when Λ already reaches 1/alpha. None with no discordant pair yet, with a
        split of exactly 1/2 and no ``min_effect``, or beyond ~1e15 pairs.

    Examples
    --------
    >>> pairs_needed(10, 20, 200), pairs_needed(10, 10, 200), pairs_needed(10, 10, 200, min_effect=0.05)
    (357, None, 521)
    """
    if n <= 0 or b + c == 0:
        return None
    threshold = -math.log(alpha)
    if discordant_log_lr(b, c, prior_a) >= threshold:
        return 0
    q = (b + c) / n
    if b != c:
        split = c / (b + c)
    elif min_effect is None:
        return None
    else:
        split = min(1.0, 0.5 + min_effect / (2.0 * q))

    def crosses(m: int) -> bool:
        return discordant_log_lr(b + (1.0 - split) * q * m, c + split * q * m, prior_a) >= threshold

    # ln Λ along the path falls at first (the mixture pays for its spread) and then
    # grows linearly, so once it is below the threshold it crosses it once: double
    # to bracket the crossing, then bisect.
    hi = 1
    while not crosses(hi):
        if hi >= _MAX_PROJECTION:
            return None
        hi *= 2
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if crosses(mid) else (mid, hi)
    return hi


def _method(alpha: float, prior_a: float, loss_scale: float, minimum_pairs: int) -> str:
    return (
        f"mSPRT Beta({prior_a:g},{prior_a:g}) mixture on discordant pairs, alpha={alpha:g}; "
        f"log loss: normal-mixture mSPRT (tau={loss_scale:g} sd, plug-in variance, asymptotic); "
        f"minimum_pairs={minimum_pairs}"
    )


def _check_settings(
    alpha: float, prior_a: float, loss_scale: float, minimum_pairs: int, min_effect: float | None
) -> None:
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha: {alpha!r}, expected a probability in (0, 1)")
    if not (math.isfinite(prior_a) and prior_a > 0.0):
        raise ConfigError(f"prior_a: {prior_a!r}, expected a finite number > 0")
    if not (math.isfinite(loss_scale) and loss_scale > 0.0):
        raise ConfigError(f"loss_scale: {loss_scale!r}, expected a finite number > 0")
    if isinstance(minimum_pairs, bool) or not isinstance(minimum_pairs, int) or minimum_pairs < 0:
        raise ConfigError(f"minimum_pairs: {minimum_pairs!r}, expected a non-negative integer")
    if min_effect is not None and not 0.0 < min_effect <= 1.0:
        raise ConfigError(f"min_effect: {min_effect!r}, expected an accuracy difference in (0, 1]")


def _ratio(numerator: float, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def compare(
    counts: PairedCounts,
    *,
    alpha: float = DEFAULT_ALPHA,
    prior_a: float = DEFAULT_PRIOR_A,
    loss_scale: float = DEFAULT_LOSS_SCALE,
    minimum_pairs: int = DEFAULT_MINIMUM_PAIRS,
    min_effect: float | None = None,
    previous: Comparison | None = None,
) -> Comparison:
    """Compare the challenger with the champion on the pairs in ``counts``.

    The verdict rule is in the module docstring. The verdict is a function of the
    current counts: ``Λ >= 1/alpha`` at this look implies ``sup Λ >= 1/alpha``, so
    Ville's bound covers every look. A caller that acts on a decision (promotes,
    drops the challenger) stops the test there; later looks are reports.

    Parameters
    ----------
    counts
        Cumulative counts for the decision (a single window's counts give that
        window's own test; see the module caveats).
    alpha
        Bound on the probability of ever deciding between equally accurate models.
        The mixture is symmetric, so alpha is not split per side: the total under
        H0 is at most alpha, and the probability of ``better`` for a challenger that
        is not more accurate is at most alpha (likewise ``worse``).
    prior_a
        Beta(a, a) mixing prior of the accuracy mSPRT (:data:`DEFAULT_PRIOR_A`).
    loss_scale
        Mixing sd of the log-loss mSPRT in sds of ``d`` (:data:`DEFAULT_LOSS_SCALE`).
    minimum_pairs
        Labelled pairs below which the verdict is ``inconclusive``.
    min_effect
        Accuracy difference of interest, used by ``n_needed`` only while the
        discordant pairs split exactly evenly (:func:`pairs_needed`).
    previous
        The comparison at the previous look at the *same* cumulative counts. With it,
        ``sequential_p`` and ``loss_p`` are ``min(1, 1 / max Λ)`` over the looks so far
        (monotone, what a dashboard should show); without it, ``min(1, 1 / Λ)`` from the
        current counts, which is also always valid but can rise again.

    Returns
    -------
    Comparison
        ``n_needed`` is 0 once decided; while inconclusive, the further labelled pairs
        to a decision if the observed rates held (at least up to ``minimum_pairs``;
        the log-loss test assumed not to object), or None when it cannot be projected
        or when the two tests disagree (more pairs at these rates will not settle it).

    Raises
    ------
    ConfigError
        A setting out of range, or ``previous`` made with other settings.
    DataError
        ``previous`` has more labelled pairs than ``counts``: not an earlier look.

    Examples
    --------
    >>> counts = PairedCounts(both_correct=700, both_wrong=100, champion_only=60, challenger_only=140,
    ...                       champion_loss_sum=420.0, challenger_loss_sum=350.0, loss_diff_sq_sum=250.0)
    >>> result = compare(counts)
    >>> result.verdict, result.challenger_accuracy, result.sequential_p < 0.05, result.n_needed
    ('better', 0.84, True, 0)
    >>> compare(counts, minimum_pairs=2000).n_needed
    1000
    """
    _check_settings(alpha, prior_a, loss_scale, minimum_pairs, min_effect)
    method = _method(alpha, prior_a, loss_scale, minimum_pairs)
    if previous is not None:
        if previous.method != method:
            raise ConfigError(f"previous.method: {previous.method!r}, expected this comparison's {method!r}")
        if previous.n > counts.n:
            raise DataError(
                f"previous.n: {previous.n} labelled pairs, expected at most counts.n={counts.n} "
                "(an earlier look at the same cumulative counts)"
            )
    n, b, c = counts.n, counts.b, counts.c
    threshold = -math.log(alpha)

    log_lambda = discordant_log_lr(b, c, prior_a)
    sequential_p = min(1.0, math.exp(-log_lambda))
    accuracy_side = 0
    if log_lambda >= threshold:
        # Λ <= 1 when b == c (Jensen), so a crossing always has a direction.
        accuracy_side = 1 if c > b else -1

    loss_diff = _ratio(counts.loss_diff_sum, n)
    loss_log_lambda, loss_side = 0.0, 0
    if n >= max(LOSS_MIN_PAIRS, 2):
        # Sums rather than Welford so windows add; the cancellation costs ~eps·(mean²/var)
        # relative, negligible unless the test is overwhelming anyway. A variance that is
        # zero up to rounding (identical or constant differences) is treated as zero.
        centred = counts.loss_diff_sq_sum - counts.loss_diff_sum * loss_diff
        variance = centred / (n - 1) if centred > 1e-12 * counts.loss_diff_sq_sum else 0.0
        loss_log_lambda = loss_log_lr(n, loss_diff, variance, loss_scale)
        if loss_log_lambda >= threshold:
            loss_side = 1 if loss_diff > 0 else -1
    loss_p = min(1.0, math.exp(-loss_log_lambda))
    if previous is not None:
        sequential_p, loss_p = min(sequential_p, previous.sequential_p), min(loss_p, previous.loss_p)

    verdict, n_needed = INCONCLUSIVE, None
    if accuracy_side and loss_side == -accuracy_side:
        winner, loser = ("challenger", "champion") if accuracy_side > 0 else ("champion", "challenger")
        reason = f"accuracy favours the {winner} but log loss favours the {loser} (loss_p={loss_p:.3g})"
    elif accuracy_side and n < minimum_pairs:
        reason = f"accuracy test decided, but n={n} is below minimum_pairs={minimum_pairs}"
        n_needed = minimum_pairs - n
    elif accuracy_side:
        verdict, n_needed = (BETTER if accuracy_side > 0 else WORSE), 0
        reason = f"c={c} vs b={b}: Lambda={math.exp(log_lambda):.4g} >= 1/alpha={1 / alpha:g}"
    else:
        reason = f"c={c} vs b={b}: Lambda={math.exp(log_lambda):.4g} < 1/alpha={1 / alpha:g}"
        projected = pairs_needed(b, c, n, alpha=alpha, prior_a=prior_a, min_effect=min_effect)
        if projected is not None:
            n_needed = max(projected, minimum_pairs - n)

    return Comparison(
        n=n,
        predicted=counts.predicted,
        agreement=_ratio(counts.agreements, counts.predicted),
        champion_accuracy=_ratio(counts.both_correct + b, n),
        challenger_accuracy=_ratio(counts.both_correct + c, n),
        champion_log_loss=_ratio(counts.champion_loss_sum, n),
        challenger_log_loss=_ratio(counts.challenger_loss_sum, n),
        b=b,
        c=c,
        mcnemar_p=mcnemar_exact_p(b, c),
        log_lambda=log_lambda,
        sequential_p=sequential_p,
        loss_diff=loss_diff,
        loss_log_lambda=loss_log_lambda,
        loss_p=loss_p,
        verdict=verdict,
        reason=reason,
        n_needed=n_needed,
        method=method,
    )
