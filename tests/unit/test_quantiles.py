"""The log-bucket quantile sketch matches np.percentile within alpha, merges exactly, reads Redis hashes."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rigwatch.quantiles import LogBuckets

SKETCH = LogBuckets()
QS = (50, 95, 99)
# Floating-point slack on top of the alpha guarantee: a value at a bucket edge may land in
# either neighbour (relative), and the fractional rank h = (n - 1) q / 100 is itself rounded,
# so its interpolation weight is off by ~1e-16 times the gap to the next value (absolute).
FP = 1e-9


def _bimodal(rng: np.random.Generator, n: int) -> np.ndarray:
    """85 % fast path around 4 ms, 15 % slow path (cache miss) around 40 ms."""
    fast = rng.normal(4.0, 0.5, n).clip(0.05)
    slow = rng.lognormal(math.log(40.0), 0.3, n)
    return np.where(rng.random(n) < 0.85, fast, slow)


LATENCIES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "lognormal": lambda rng, n: rng.lognormal(1.5, 0.8, n),
    "exponential": lambda rng, n: rng.exponential(5.0, n),
    "uniform": lambda rng, n: rng.uniform(0.5, 50.0, n),
    "bimodal": _bimodal,
}


def _latencies(kind: str, n: int, seed: int = 0) -> np.ndarray:
    return LATENCIES[kind](np.random.default_rng([seed, n, sorted(LATENCIES).index(kind)]), n)


@pytest.mark.parametrize("n", [100, 1_000, 100_000])
@pytest.mark.parametrize("kind", sorted(LATENCIES))
def test_p50_p95_p99_are_within_one_percent_of_np_percentile(kind: str, n: int) -> None:
    x = _latencies(kind, n)
    got = SKETCH.quantiles(SKETCH.counts(x), QS)
    want = np.percentile(x, QS)
    rel = np.abs(got / want - 1.0)
    assert (rel <= 0.01).all(), dict(zip(QS, rel.tolist(), strict=True))
    # The guarantee is tighter than the 1 % target: alpha itself.
    assert (rel <= SKETCH.alpha * (1 + FP)).all()


def test_rank_rule_is_np_percentile_of_the_bucket_representatives() -> None:
    x = _latencies("lognormal", 1_000)
    qs = np.linspace(0, 100, 201)
    decoded = SKETCH.representative(SKETCH.index(x))
    np.testing.assert_allclose(SKETCH.quantiles(SKETCH.counts(x), qs), np.percentile(decoded, qs), rtol=1e-12)


def test_merge_of_two_sketches_equals_sketch_of_concatenation_exactly() -> None:
    a, b = _latencies("bimodal", 1_000, seed=1), _latencies("exponential", 3_000, seed=2)
    merged = SKETCH.merge(SKETCH.counts(a), SKETCH.counts(b))
    assert merged == SKETCH.counts(np.concatenate([a, b]))
    assert merged == SKETCH.merge(SKETCH.counts(b), SKETCH.counts(a))
    np.testing.assert_array_equal(
        SKETCH.quantiles(merged, QS), SKETCH.quantiles(SKETCH.counts(np.concatenate([b, a])), QS)
    )


def test_merge_accepts_redis_style_counts_and_returns_int_keys() -> None:
    merged = SKETCH.merge({461: 2}, {b"461": b"3", b"530": b"1"})
    assert merged == {461: 5, 530: 1}
    assert all(type(k) is int and type(v) is int for k, v in merged.items())


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda c: {str(k): str(v) for k, v in c.items()}, id="str-decode_responses"),
        pytest.param(lambda c: {str(k).encode(): str(v).encode() for k, v in c.items()}, id="bytes-default"),
        pytest.param(lambda c: {str(k): v for k, v in c.items()}, id="json-str-keys"),
    ],
)
def test_redis_style_string_counts_give_the_same_result(encode: Callable[[dict], dict]) -> None:
    counts = SKETCH.counts(_latencies("lognormal", 1_000))
    as_stored = encode(counts)
    np.testing.assert_array_equal(SKETCH.quantiles(as_stored, QS), SKETCH.quantiles(counts, QS))
    assert SKETCH.summary(as_stored) == SKETCH.summary(counts)
    assert SKETCH.max_value(as_stored) == SKETCH.max_value(counts)


def test_counts_are_plain_python_ints_for_hincrby() -> None:
    counts = SKETCH.counts(np.array([0.0, 1.0, 1.0, 250.0]))
    assert counts == {0: 1, 461: 2, 1013: 1}
    assert all(type(k) is int and type(v) is int for k, v in counts.items())


def test_empty_counts_give_nan() -> None:
    for empty in ({}, {"461": "0"}):  # a hash whose counts were decremented back to 0 is empty too
        assert np.isnan(SKETCH.quantiles(empty, QS)).all()
        assert math.isnan(SKETCH.max_value(empty))
        s = SKETCH.summary(empty)
        assert s["count"] == 0.0
        assert all(math.isnan(s[k]) for k in ("p50", "p95", "p99", "max"))
    assert SKETCH.counts(np.empty(0)) == {}


def test_summary_has_p50_p95_p99_max_count_keys() -> None:
    x = _latencies("exponential", 10_000)
    s = SKETCH.summary(SKETCH.counts(x))
    assert list(s) == ["p50", "p95", "p99", "max", "count"]
    assert s["count"] == 10_000
    np.testing.assert_allclose([s["p50"], s["p95"], s["p99"]], np.percentile(x, QS), rtol=SKETCH.alpha)
    assert s["max"] == pytest.approx(x.max(), rel=SKETCH.alpha)
    assert s["max"] == SKETCH.quantiles(SKETCH.counts(x), 100)


def test_values_below_min_value_go_to_bucket_zero_and_read_as_zero() -> None:
    b = LogBuckets(min_value=0.01)
    assert b.index(np.array([0.0, 1e-300, 0.00999, 0.01])).tolist() == [0, 0, 0, 1]
    counts = b.counts(np.array([0.0, 0.005, 0.009, 2.0]))
    assert counts[0] == 3
    assert b.quantiles(counts, [0, 50]).tolist() == [0.0, 0.0]
    assert b.representative(0) == 0.0


@pytest.mark.parametrize("bad", [-1.5, float("nan"), float("inf"), -0.001])
def test_negative_nan_or_infinite_latency_raises_naming_the_value(bad: float) -> None:
    with pytest.raises(ValueError, match=rf"got {re.escape(repr(bad))} \(position 2;"):
        SKETCH.counts(np.array([1.0, 2.0, bad, 3.0]))


def test_malformed_counts_raise_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"got 'total': '3'"):
        SKETCH.quantiles({"461": "1", "total": "3"}, QS)
    with pytest.raises(ValueError, match=r"got '461': '-2'"):
        SKETCH.summary({"461": "-2"})
    with pytest.raises(ValueError, match=r"got 461: 1.5"):
        SKETCH.quantiles({461: 1.5}, QS)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"percentiles must be in \[0, 100\]"):
        SKETCH.quantiles({461: 1}, [50, 101])


def test_invalid_parameters_raise() -> None:
    with pytest.raises(ValueError, match="alpha"):
        LogBuckets(alpha=1.0)
    with pytest.raises(ValueError, match="min_value"):
        LogBuckets(min_value=0.0)


latencies = st.lists(
    st.one_of(st.just(0.0), st.floats(min_value=0.01, max_value=1e6, allow_nan=False)),
    min_size=1,
    max_size=300,
)
alphas = st.sampled_from([0.001, 0.005, 0.02, 0.1])


@settings(max_examples=200, deadline=None)
@given(values=latencies, alpha=alphas, data=st.data())
def test_every_order_statistic_is_within_alpha_of_the_true_one(
    values: list[float], alpha: float, data: st.DataObject
) -> None:
    b = LogBuckets(alpha=alpha)
    x = np.sort(np.array(values))
    n = x.size
    counts = b.counts(x)
    ranks = np.arange(n) if n < 50 else np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1)))
    qs = 100.0 * ranks / max(n - 1, 1)  # h = (n - 1) q / 100 = rank
    got = b.quantiles(counts, qs)
    true = x[ranks]
    assert (np.abs(got - true) <= alpha * true * (1 + FP) + FP * x.max()).all()


@settings(max_examples=200, deadline=None)
@given(values=latencies, alpha=alphas, qs=st.lists(st.floats(0, 100), min_size=1, max_size=5))
def test_every_quantile_is_within_alpha_of_np_percentile(
    values: list[float], alpha: float, qs: list[float]
) -> None:
    b = LogBuckets(alpha=alpha)
    x = np.array(values)
    # Split across two "partitions": the merged sketch must give the same answer.
    half = len(values) // 2
    counts = b.merge(b.counts(x[:half]), b.counts(x[half:]))
    got = b.quantiles(counts, qs)
    true = np.percentile(x, qs)
    assert (np.abs(got - true) <= alpha * true * (1 + FP) + FP * x.max()).all()
    assert b.max_value(counts) == pytest.approx(x.max(), rel=alpha * (1 + FP), abs=1e-12)
