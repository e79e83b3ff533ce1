"""Dense window counts: merged in process (Pending), packed into one item per checkpoint, added up on read."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rigwatch.windowing import Pending, Update, Updates, pack_counts, unpack_counts


def _round_trip(ints: np.ndarray, floats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    got_i, got_f = unpack_counts(pack_counts(ints, floats), len(ints), len(floats))
    assert got_i.dtype == np.int64 and got_f.dtype == np.float64
    return got_i, got_f


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(np.int64, st.integers(0, 300), elements=st.integers(-(2**63), 2**63 - 1) | st.just(0)),
    hnp.arrays(np.float64, st.integers(0, 300), elements=st.floats(allow_nan=False) | st.just(0.0)),
)
def test_a_packed_item_gives_back_the_vectors(ints: np.ndarray, floats: np.ndarray) -> None:
    got_i, got_f = _round_trip(ints, floats)
    np.testing.assert_array_equal(got_i, ints)
    # Exact, bit for bit, except that -0.0 may come back as 0.0 (the same in any sum from zeros).
    np.testing.assert_array_equal(got_f, floats)
    assert (np.zeros_like(floats) + got_f).tobytes() == (np.zeros_like(floats) + floats).tobytes()


def test_sparse_and_dense_items_and_the_narrowest_integer_type() -> None:
    n = 1_834
    sparse_i = np.zeros(n, np.int64)
    sparse_i[[0, 7, 1_833]] = [5, -3, 120]
    sparse_f = np.zeros(1_617)
    sparse_f[[2, 3]] = [0.1, -2.5]
    blob = pack_counts(sparse_i, sparse_f)
    # Header, a sparse int8 section of 3 slots and a sparse float64 section of 2 (2-byte slot numbers).
    assert len(blob) == 12 + (6 + 3 * 3) + (6 + 2 * 10)
    got_i, got_f = _round_trip(sparse_i, sparse_f)
    assert got_i.tolist() == sparse_i.tolist() and got_f.tolist() == sparse_f.tolist()

    rng = np.random.default_rng(0)
    for high, width in ((100, 1), (30_000, 2), (2**31 - 1, 4), (2**40, 8)):
        dense_i = rng.integers(1, high, size=n, endpoint=True)
        dense_f = rng.normal(size=1_617)
        blob = pack_counts(dense_i, dense_f)
        assert len(blob) == 12 + 6 + n * width + 6 + 1_617 * 8
        got_i, got_f = _round_trip(dense_i, dense_f)
        assert got_i.tolist() == dense_i.tolist() and got_f.tolist() == dense_f.tolist()
    # Vectors longer than 2**16 number their slots with 4 bytes.
    long_i = np.zeros(70_000, np.int64)
    long_i[[3, 69_999]] = [1, 2]
    assert len(pack_counts(long_i, [])) == 12 + (6 + 2 * 5) + (6 + 0)
    got_i, _ = _round_trip(long_i, np.zeros(0))
    assert np.flatnonzero(got_i).tolist() == [3, 69_999] and got_i[69_999] == 2
    # NaN and infinities are kept as they are (a float section stores float64).
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0])
    _, got_f = _round_trip(np.zeros(0, np.int64), special)
    np.testing.assert_array_equal(got_f, special)


def test_unpack_refuses_what_is_not_a_whole_item_of_the_layout() -> None:
    ints, floats = np.zeros(40, np.int64), np.array([1.5, 0.0, 2.0])
    ints[[1, 39]] = [4, 9]
    blob = pack_counts(ints, floats)  # ints sparse: slots 1 and 39
    assert unpack_counts(blob)[0].tolist() == ints.tolist()
    bad = {
        "empty": b"",
        "another item": b"1,2,3 as text",
        "another magic": b"rwc2" + blob[4:],
        "cut short": blob[:-1],
        "header only": blob[:12],
        "bytes left over": blob + b"\x00",
        "bad section type": blob[:12] + struct.pack("<BcI", 0, b"x", 8) + blob[18:],
        "slot beyond the length": blob.replace(struct.pack("<H", 39), struct.pack("<H", 40), 1),
        "unknown section form": blob[:12] + struct.pack("<BcI", 3, b"b", 2) + blob[18:],
    }
    for name, data in bad.items():
        with pytest.raises(ValueError):
            unpack_counts(data)
        assert name
    # Written for another layout (other vector lengths).
    with pytest.raises(ValueError, match="another layout"):
        unpack_counts(blob, 41, 3)
    with pytest.raises(ValueError, match="another layout"):
        unpack_counts(blob, 40, 2)
    with pytest.raises(ValueError):
        pack_counts(np.array([1.5]), floats)
    with pytest.raises(ValueError):
        pack_counts(np.array([2**64 - 1], np.uint64), floats)


def test_pending_adds_the_counts_of_a_window_and_keeps_windows_apart() -> None:
    rng = np.random.default_rng(1)
    parts = [(rng.integers(0, 50, 40), rng.normal(size=7)) for _ in range(5)]
    pending = Pending()
    for k, (ints, floats) in enumerate(parts):
        updates = [Update("v1", 0, 3, counts=(ints, floats)), Update("rig:a", 0, 1, {"n": 1})]
        if k == 2:
            updates.append(Update("v1", 1_000, 2, counts=(ints, floats)))
        pending.add(Updates(updates, {"t/0": k}), records=3)
    by_window = {(u.subject, u.start_ms): u for u in pending.updates()}
    v1 = by_window[("v1", 0)]
    assert v1.records == 15
    assert v1.counts is not None
    np.testing.assert_array_equal(v1.counts[0], sum(i for i, _ in parts))
    expected = np.zeros(7)
    for _, floats in parts:  # added in batch order, as the hash fields were
        expected = expected + floats
    assert v1.counts[1].tobytes() == expected.tobytes()
    later = by_window[("v1", 1_000)]
    assert later.counts is not None and later.counts[0].tolist() == parts[2][0].tolist()
    assert by_window[("rig:a", 0)].counts is None and by_window[("rig:a", 0)].ints == {"n": 5}
    # The handler's arrays were copied, not added into.
    assert parts[0][0].tolist() != v1.counts[0].tolist()


def test_pending_refuses_counts_of_another_length_for_the_same_window() -> None:
    pending = Pending()
    pending.add(Updates([Update("v1", 0, 1, counts=(np.ones(3, np.int64), np.ones(2)))], {}), records=1)
    with pytest.raises(ValueError, match="cannot be added"):
        pending.add(Updates([Update("v1", 0, 1, counts=(np.ones(4, np.int64), np.ones(2)))], {}), records=1)
    with pytest.raises(ValueError, match="integer"):
        pending.add(Updates([Update("v2", 0, 1, counts=(np.ones(3), np.ones(2)))], {}), records=1)
