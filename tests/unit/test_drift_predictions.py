"""Drift's column reader of Predictions: the same records, values and unusable counts as ``Codec.decode``."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadgen.readings import ReadingStream, stepping_clock
from loadgen.scenarios import Effect
from rigwatch.codec import MARKER, Codec
from rigwatch.drift import DriftProfile
from rigwatch.exceptions import DecodeError
from rigwatch.schemas import Codecs, load_schema, schema_dir
from rigwatch.windowing import decode_valid, max_event_per_source, window_start
from services.drift.handler import DriftHandler
from services.drift.predictions import PredictionColumns, PredictionReader, factorize
from services.scorer.handler import Scorer

CLASSES = ["3", "20", "100"]
VERSION = "9f2c1a"
CODEC = Codecs.load().prediction


# ---------------------------------------------------------------------------- a hand-made Avro writer


def _long(v: int) -> bytes:
    z = (v << 1) ^ (v >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append(z & 0x7F | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _text(s: str | bytes) -> bytes:
    data = s.encode() if isinstance(s, str) else s
    return _long(len(data)) + data


def _blocks(blocks: list[tuple[list[bytes], bool]]) -> bytes:
    """Entries in blocks, a block of negative count carrying its byte size, then the end block."""
    out = b""
    for entries, negative in blocks:
        body = b"".join(entries)
        out += _long(-len(entries)) + _long(len(body)) + body if negative else _long(len(entries)) + body
    return out + _long(0)


def _encode(
    p: dict[str, Any],
    *,
    probabilities: list[tuple[list[tuple[str | bytes, float]], bool]] | None = None,
    flags: list[tuple[list[str | bytes], bool]] | None = None,
    raw: dict[str, bytes] | None = None,
) -> bytes:
    """A Prediction written by hand: strings may be bytes, maps and arrays in the blocks given."""
    raw = raw or {}
    if probabilities is None:
        probabilities = [(list(p["probabilities"].items()), False)] if p["probabilities"] else []
    if flags is None:
        flags = [(list(p["flags"]), False)] if p["flags"] else []
    fields = [
        _text(p["event_id"]),
        _text(p["rig_id"]),
        _long(p["cycle"]),
        _long(p["event_time"]),
        _text(p["model_name"]),
        _text(p["model_version"]),
        _text(p["role"]),
        _blocks([([_text(k) + struct.pack("<d", v) for k, v in block], neg) for block, neg in probabilities]),
        _text(p["predicted_label"]),
        struct.pack("<d", p["confidence"]),
        _long(p["scored_time"]),
        _blocks([([_text(f) for f in block], neg) for block, neg in flags]),
        struct.pack("<d", p["processing_ms"]),
    ]
    names = [f["name"] for f in load_schema("Prediction")["fields"]]
    body = b"".join(raw.get(name, value) for name, value in zip(names, fields, strict=True))
    return MARKER + CODEC.fingerprint + body


def _prediction(**overrides: Any) -> dict[str, Any]:
    p = {
        "event_id": "run-rig-001-7",
        "rig_id": "rig-001",
        "cycle": 7,
        "event_time": 1_700_000_012_345,
        "model_name": "cooler",
        "model_version": VERSION,
        "role": "champion",
        "probabilities": {"3": 0.05, "20": 0.15, "100": 0.8},
        "predicted_label": "100",
        "confidence": 0.8,
        "scored_time": 1_700_000_012_400,
        "flags": [],
        "processing_ms": 1.25,
    }
    return p | overrides


def _odd_values() -> list[Any]:
    """Records the fast path must hand to the codec, or read exactly as the codec does."""
    good = CODEC.encode(_prediction())
    v1 = Codec(json.loads((schema_dir() / "history" / "prediction.v1.avsc").read_text()))
    p = _prediction
    return [
        # Not a record, or a broken one.
        None,
        b"",
        b"junk",
        good[:10],
        good[:-1],
        good + b"\x00",
        MARKER + bytes(8) + good[10:],
        bytearray(good),
        memoryview(good),
        # An older writer schema.
        v1.encode({k: v for k, v in p(rig_id="rig-v1").items() if k != "processing_ms"}),
        # Unusable: a label that is not a class (or is a prefix or extension of one).
        CODEC.encode(p(predicted_label="7")),
        CODEC.encode(p(predicted_label="10")),
        CODEC.encode(p(predicted_label="1000")),
        CODEC.encode(p(predicted_label="")),
        # Another model version, usable.
        CODEC.encode(p(model_version="other", rig_id="rig-002")),
        CODEC.encode(p(model_version=VERSION + "0")),
        CODEC.encode(p(model_version="")),
        # Valid UTF-8 beyond ASCII, in every kind of string.
        CODEC.encode(p(rig_id="rig-ü")),
        CODEC.encode(p(event_id="é-1")),
        CODEC.encode(p(model_version="vé")),
        CODEC.encode(p(probabilities={"3": 0.1, "ü": 0.2})),
        CODEC.encode(p(flags=["missing:ö"])),
        # Invalid UTF-8: the codec rejects these.
        _encode(p(event_id=b"\xff\xfe")),
        _encode(p(rig_id=b"rig-\xc3")),
        _encode(p(model_name=b"\x80")),
        _encode(p(model_version=b"\xe2\x82")),
        _encode(p(role=b"champ\xffon")),
        _encode(p(predicted_label=b"\xff")),
        _encode(p(flags=[b"missing:\xff"])),
        _encode(p(), probabilities=[([(b"\xff", 0.5)], False)]),
        # Rig ids: empty, long, with a trailing NUL beside the same without.
        CODEC.encode(p(rig_id="")),
        CODEC.encode(p(rig_id="r" * 100)),
        CODEC.encode(p(rig_id="rig-001\x00")),
        CODEC.encode(p(rig_id="rig-001\x00\x00")),
        # Values at the edges.
        CODEC.encode(p(confidence=float("nan"))),
        CODEC.encode(p(confidence=float("-inf"))),
        CODEC.encode(p(event_time=-(2**63))),
        CODEC.encode(p(event_time=2**63 - 1, scored_time=-1)),
        CODEC.encode(p(event_time=0)),
        # Maps and arrays in other block shapes.
        CODEC.encode(p(probabilities={})),
        CODEC.encode(p(probabilities={str(k): 0.01 for k in range(70)})),
        CODEC.encode(p(flags=["a", "b", "c"])),
        _encode(p(), probabilities=[([("3", 0.2), ("20", 0.8)], True)]),
        _encode(p(), probabilities=[([("3", 0.2)], False), ([("20", 0.8)], False)]),
        _encode(p(), flags=[(["x"], True), (["y", "z"], False)]),
        _encode(p(), flags=[([str(k)], False) for k in range(10)]),
        # Varints: not the shortest encoding (the codec reads it), too long, a huge length.
        _encode(p(), raw={"cycle": b"\x80\x80\x00"}),
        _encode(p(), raw={"cycle": b"\xff" * 10 + b"\x01"}),
        _encode(p(), raw={"cycle": b"\xff" * 9 + b"\x7f"}),
        _encode(p(), raw={"event_id": b"\xfe\xff\xff\xff\x0f"}),
        _encode(p(), raw={"event_id": b"\x01"}),
    ]


def _reference(values: list[Any]) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """The usable records by ``Codec.decode``, with their positions, and the unusable count."""
    rows, unusable = [], 0
    for i, value in enumerate(values):
        try:
            record = CODEC.decode(value)
        except DecodeError:
            unusable += 1
            continue
        if record["predicted_label"] in CLASSES:
            rows.append((i, record))
        else:
            unusable += 1
    return rows, unusable


def _assert_as_codec(out: PredictionColumns, values: list[Any]) -> None:
    rows, unusable = _reference(values)
    assert out.unusable == unusable
    assert out.index.tolist() == [i for i, _ in rows]
    assert out.event_time.dtype == np.int64
    assert out.event_time.tolist() == [r["event_time"] for _, r in rows]
    assert out.rigs == sorted({r["rig_id"] for _, r in rows})
    assert [out.rigs[k] for k in out.rig.tolist()] == [r["rig_id"] for _, r in rows]
    assert out.label.tolist() == [CLASSES.index(r["predicted_label"]) for _, r in rows]
    assert out.same_version.tolist() == [r["model_version"] == VERSION for _, r in rows]
    expected = np.array([r["confidence"] for _, r in rows], dtype=np.float64)
    np.testing.assert_array_equal(out.confidence, expected)


@pytest.fixture(scope="module")
def real_predictions(real_dataset, real_model) -> list[bytes]:
    """Predictions of the real model on real readings, humility flags and all, as the scorer writes them."""
    codecs = Codecs.load()
    # A far offset on one sensor for a while: those predictions carry humility flags.
    far = (Effect("offset", 1000, 1400, "tsb_temp", 500.0),)
    stream = ReadingStream(
        real_dataset, codecs.sensor_reading, run_id="drift-reader", rigs=5, count=3000, seed=3, effects=far
    )
    readings = [e.value for e in stream.events(stepping_clock(1_700_000_000_000, 20))]
    scorer = Scorer(real_model, codecs.sensor_reading, codecs.prediction)
    scored = scorer.score(readings, 1_700_000_100_000)
    assert not scored.rejects
    return [value for _, value in scored.outputs]


class _CountingCodec:
    """The prediction codec, counting the records it decodes."""

    def __init__(self) -> None:
        self.decoded = 0

    def decode(self, data: Any) -> dict[str, Any]:
        self.decoded += 1
        return CODEC.decode(data)


def test_my_writer_writes_what_the_codec_writes() -> None:
    for p in (_prediction(), _prediction(flags=["missing:x", "uncertain"], probabilities={}, rig_id="")):
        assert _encode(p) == CODEC.encode(p)


def test_real_predictions_are_read_as_the_codec_reads_them_without_the_codec(
    real_predictions, real_model
) -> None:
    reader = PredictionReader(CODEC, CLASSES, VERSION)
    assert reader.fast
    counting = _CountingCodec()
    reader.codec = counting  # type: ignore[assignment]
    assert list(real_model.classes) == CLASSES
    flagged = 0
    for first in range(0, len(real_predictions), 1000):
        values = real_predictions[first : first + 1000]
        flagged += sum(bool(CODEC.decode(v)["flags"]) for v in values)
        _assert_as_codec(reader.read(values), values)
    assert flagged > 0  # humility flags were on some of them
    assert counting.decoded == 0
    # The model's own version: the real predictions are all of it.
    own = PredictionReader(CODEC, CLASSES, real_model.version).read(real_predictions)
    assert own.same_version.all() and len(own) == len(real_predictions)


def test_odd_records_are_used_or_counted_exactly_as_the_codec_decides(real_predictions) -> None:
    reader = PredictionReader(CODEC, CLASSES, VERSION)
    odd = _odd_values()
    # In a batch of ordinary records, alone, and each on its own.
    _assert_as_codec(reader.read(odd), odd)
    mixed = [v for pair in zip(real_predictions[: len(odd)], odd, strict=True) for v in pair]
    _assert_as_codec(reader.read(mixed), mixed)
    for value in odd:
        _assert_as_codec(reader.read([value]), [value])
    _assert_as_codec(reader.read([]), [])
    # Only what the fast path cannot be sure of goes to the codec.
    counting = _CountingCodec()
    reader.codec = counting  # type: ignore[assignment]
    reader.read(mixed)
    assert 0 < counting.decoded <= len(odd)


_MUTATION = st.tuples(
    st.sampled_from(["set", "insert", "delete", "truncate"]), st.integers(0, 10_000), st.binary(max_size=3)
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 30), st.lists(_MUTATION, min_size=1, max_size=3)), max_size=6))
def test_damaged_records_are_read_exactly_as_the_codec_reads_them(
    real_predictions, damage: list[tuple[int, list[tuple[str, int, bytes]]]]
) -> None:
    reader = PredictionReader(CODEC, CLASSES, VERSION)
    values: list[Any] = list(real_predictions[:8])
    for pick, mutations in damage:
        data = bytearray(real_predictions[pick])
        for kind, at, payload in mutations:
            at %= len(data) + 1
            if kind == "set" and at < len(data):
                data[at] = payload[0] if payload else data[at] ^ 0x80
            elif kind == "insert":
                data[at:at] = payload
            elif kind == "delete":
                del data[at : at + max(1, len(payload))]
            else:
                del data[at:]
        values.append(bytes(data))
    _assert_as_codec(reader.read(values), values)


def test_a_schema_the_fast_path_does_not_read_goes_through_the_codec() -> None:
    schema = load_schema("Prediction")
    schema["fields"].append({"name": "note", "type": ["null", "string"], "default": None})
    codec = Codec(schema, [load_schema("Prediction")])
    reader = PredictionReader(codec, CLASSES, VERSION)
    assert not reader.fast
    values = [codec.encode(_prediction(note="x")), CODEC.encode(_prediction(rig_id="old")), b"junk"]
    out = reader.read(values)
    assert out.index.tolist() == [0, 1] and out.rigs == ["old", "rig-001"] and out.unusable == 1
    # A schema without a field drift needs is not read here either.
    schema = load_schema("Prediction")
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "confidence"]
    assert not PredictionReader(Codec(schema), CLASSES, VERSION).fast


def test_factorize_sorts_the_distinct_values() -> None:
    distinct, codes = factorize([])
    assert distinct == [] and codes.tolist() == []
    distinct, codes = factorize(["rig-2", "rig-10", "rig-2", "ü", ""])
    assert distinct == ["", "rig-10", "rig-2", "ü"]
    assert codes.tolist() == [2, 1, 2, 3, 0]


# ---------------------------------------------------------------------------- the handler, as before


def _old_window_groups(times: np.ndarray, rigs: list[str], size_ms: int, version: str):
    """The handler's grouping before the column reader (np.unique over Python strings)."""
    starts = window_start(times, size_ms)
    uniq_starts, start_idx = np.unique(starts, return_inverse=True)
    uniq_rigs, rig_idx = np.unique(np.asarray(rigs, dtype=object), return_inverse=True)
    n = len(uniq_starts)
    keys = [(version, int(s)) for s in uniq_starts]
    keys += [(f"rig:{r}", int(s)) for r in uniq_rigs for s in uniq_starts]
    return keys, start_idx, n + rig_idx * n + start_idx


def _old_predictions(handler: DriftHandler, values: list[Any], sources: list[str]):
    """What the handler made of predictions with ``Codec.decode`` per record: window -> counts."""
    profile = handler.profile
    index = {label: k for k, label in enumerate(profile.classes)}
    decoded, used, bad = decode_valid(CODEC, values, sources, lambda r: r["predicted_label"] in index)
    if not decoded:
        return {}, {}, bad
    times = np.array([r["event_time"] for r in decoded], dtype=np.int64)
    keys, vg, sg = _old_window_groups(times, [r["rig_id"] for r in decoded], handler.size_ms, VERSION)
    cls = np.array([index[r["predicted_label"]] for r in decoded])
    conf = np.array([r["confidence"] for r in decoded], dtype=np.float64)
    mine = np.array([r["model_version"] == profile.model_version for r in decoded])
    ints, floats = handler.layout.predictions(cls, conf, mine, [vg, sg], len(keys))
    records = np.bincount(np.concatenate([vg, sg]), minlength=len(keys))
    windows = {key: (int(records[g]), ints[g], floats[g]) for g, key in enumerate(keys) if records[g]}
    return windows, max_event_per_source(used, times.tolist()), bad


def test_the_handler_counts_predictions_exactly_as_with_the_codec(real_model, real_predictions) -> None:
    profile = DriftProfile.from_reference(
        real_model.reference, VERSION, real_model.features, real_model.classes
    )
    codecs = Codecs.load()
    handler = DriftHandler(profile, codecs.sensor_reading, CODEC, size_ms=10_000, min_count=1)
    odd = _odd_values()
    ordinary = [
        CODEC.encode({**CODEC.decode(v), "model_version": VERSION if k % 3 else "old"})
        for k, v in enumerate(real_predictions[:1500])
    ]
    batches = [ordinary[:700] + odd, ordinary[700:], odd, odd[:3]]
    for values in batches:
        sources = [f"p/{k % 3}" for k in range(len(values))]
        updates = handler.predictions(values, sources)
        windows, marks, bad = _old_predictions(handler, values, sources)
        assert updates.undecodable == bad
        assert updates.max_event_ms == marks
        got = {(u.subject, u.start_ms): u for u in updates.updates}
        assert sorted(got) == sorted(windows)
        for key, (records, ints, floats) in windows.items():
            u = got[key]
            assert u.records == records and not u.ints and not u.floats and u.counts is not None
            np.testing.assert_array_equal(u.counts[0], ints)
            assert u.counts[1].tobytes() == floats.tobytes()  # the same sums, bit for bit


def test_the_handler_groups_readings_and_their_sources_as_before(real_model, real_dataset) -> None:
    profile = DriftProfile.from_reference(
        real_model.reference, VERSION, real_model.features, real_model.classes
    )
    codecs = Codecs.load()
    handler = DriftHandler(profile, codecs.sensor_reading, CODEC, size_ms=10_000, min_count=1)
    stream = ReadingStream(real_dataset, codecs.sensor_reading, run_id="r", rigs=7, count=900, seed=5)
    values: list[Any] = [e.value for e in stream.events(stepping_clock(1_700_000_000_000, 50))]
    values[10:10] = [None, b"junk"]
    rng = np.random.default_rng(4)
    for sources in (
        ["r/0"] * len(values),
        [f"r/{k}" for k in rng.integers(0, 4, len(values))],
        [f"r/{k % 2}" for k in range(len(values))],
    ):
        updates = handler.readings(values, sources)
        assert updates.undecodable == 2
        records = [codecs.sensor_reading.decode(v) for v in values if v not in (None, b"junk")]
        used = [s for v, s in zip(values, sources, strict=True) if v not in (None, b"junk")]
        times = np.array([r["event_time"] for r in records], dtype=np.int64)
        assert updates.max_event_ms == max_event_per_source(used, times.tolist())
        keys, vg, sg = _old_window_groups(times, [r["rig_id"] for r in records], 10_000, VERSION)
        counts = np.bincount(np.concatenate([vg, sg]), minlength=len(keys))
        expected = {key: int(counts[g]) for g, key in enumerate(keys) if counts[g]}
        assert {(u.subject, u.start_ms): u.records for u in updates.updates} == expected
