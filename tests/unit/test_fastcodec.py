"""The fast paths give exactly what the codec gives: bytes, records, rejects and their reasons."""

from __future__ import annotations

import copy
import re
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rigwatch.codec import MARKER, Codec
from rigwatch.exceptions import DecodeError
from rigwatch.fastcodec import BatchDecoder, UnsupportedSchemaError, compile_encoder
from rigwatch.schemas import SCHEMA_FILES, load_schema

LONGS = st.integers(-(2**63), 2**63 - 1)
INTS = st.integers(-(2**31), 2**31 - 1)
# Realistic epoch milliseconds take the encoder's remembered-high-bytes path.
TIMESTAMPS = st.one_of(LONGS, st.integers(1_500_000_000_000, 1_900_000_000_000))
# NaN (any payload) and infinities included: sent as values, they must come back as values.
DOUBLES = st.floats()
FLAT_SCHEMAS = ("Actual", "Alert", "SensorReading")

#: Every kind the batch decoder reads: a boolean, an int and a double in the head, a
#: tail of a nullable double with null second, a double and a boolean.
KINDS = {
    "type": "record",
    "name": "Kinds",
    "fields": [
        {"name": "s", "type": "string"},
        {"name": "flag", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "d0", "type": "double"},
        {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "d1", "type": ["double", "null"]},
        {"name": "d2", "type": "double"},
        {"name": "ok", "type": "boolean"},
    ],
}

#: Nesting the repository's schemas do not use yet, for the encoder.
NESTED = {
    "type": "record",
    "name": "Nested",
    "fields": [
        {"name": "n", "type": ["null", "long"]},
        {"name": "b", "type": ["boolean", "null"], "default": True},
        {"name": "i", "type": ["null", "int"]},
        {"name": "tags", "type": {"type": "map", "values": ["null", "string"]}},
        {"name": "counts", "type": {"type": "array", "items": "long"}, "default": [1, 2]},
        {
            "name": "inner",
            "type": {
                "type": "record",
                "name": "Inner",
                "fields": [{"name": "x", "type": "double"}, {"name": "on", "type": "boolean"}],
            },
        },
        {"name": "inners", "type": {"type": "array", "items": "Inner"}},
    ],
}


def _strategy(avro_type: Any, named: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Values of *avro_type*, derived from the schema; fields with a default may be left out."""
    named = {} if named is None else named
    if isinstance(avro_type, list):
        return st.one_of([_strategy(t, named) for t in avro_type])
    if isinstance(avro_type, dict):
        kind = avro_type["type"]
        if kind == "record":
            named[avro_type["name"]] = avro_type
            fields = avro_type["fields"]
            required = {f["name"]: _strategy(f["type"], named) for f in fields if "default" not in f}
            optional = {f["name"]: _strategy(f["type"], named) for f in fields if "default" in f}
            return st.fixed_dictionaries(required, optional=optional)
        if kind == "map":
            return st.dictionaries(st.text(), _strategy(avro_type["values"], named), max_size=5)
        if kind == "array":
            return st.lists(_strategy(avro_type["items"], named), max_size=5)
        if avro_type.get("logicalType") == "timestamp-millis":
            return TIMESTAMPS
        return _strategy(kind, named)
    if avro_type in named:
        return _strategy(named[avro_type], named)
    primitives = {
        "null": st.none(),
        "string": st.text(),
        "long": LONGS,
        "int": INTS,
        "double": DOUBLES,
        "boolean": st.booleans(),
    }
    return primitives[avro_type]


def _canonical(value: Any) -> Any:
    """Floats as their bytes, so NaN equals NaN and -0.0 differs from 0.0."""
    if isinstance(value, float):
        return struct.pack("<d", value)
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _detail(exc: DecodeError) -> str:
    """fastavro's messages name a BytesIO by address; equal details differ only there."""
    return re.sub(r"0x[0-9a-f]+", "0x?", exc.detail)


class _Counting(Codec):
    """A codec that counts how often the fast paths fall back to it."""

    def __init__(self, schema: dict[str, Any], writers: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(schema, writers)
        self.encoded = self.decoded = 0

    def encode(self, record: dict[str, Any]) -> bytes:
        self.encoded += 1
        return super().encode(record)

    def decode(self, data: bytes | None) -> dict[str, Any]:
        self.decoded += 1
        return super().decode(data)


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except Exception as exc:
        return "raises", type(exc)


def _assert_matches_codec(decoder: BatchDecoder, values: Sequence[Any]) -> None:
    """Every position ends in exactly one of index/rejects, as ``Codec.decode`` says."""
    batch = decoder.decode(values)
    rows = {index: row for row, index in enumerate(batch.index.tolist())}
    rejects = dict(batch.rejects)
    assert sorted([*rows, *rejects]) == list(range(len(values)))
    assert batch.index.dtype == np.int64
    assert batch.doubles.shape == batch.nulls.shape == (len(rows), len(decoder.double_names))
    for i, value in enumerate(values):
        try:
            expected = decoder.codec.decode(value)
        except DecodeError as exc:
            assert i in rejects, f"input {i}: codec rejects it ({exc}), the batch does not"
            assert (rejects[i].reason, _detail(rejects[i])) == (exc.reason, _detail(exc))
            continue
        assert i in rows, f"input {i}: codec decodes it, the batch rejects it ({rejects.get(i)})"
        row = rows[i]
        assert _canonical(batch.record(row)) == _canonical(expected)
        for j, name in enumerate(batch.double_names):
            assert batch.nulls[row, j] == (expected[name] is None)
            if expected[name] is not None:
                assert struct.pack("<d", batch.doubles[row, j]) == struct.pack("<d", expected[name])
            else:
                assert np.isnan(batch.doubles[row, j])


def _v1_sensor_reading() -> dict[str, Any]:
    """The SensorReading an older producer wrote: no eff_fact_pct field yet."""
    schema = copy.deepcopy(load_schema("SensorReading"))
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "eff_fact_pct"]
    return schema


def _sensor_codec() -> Codec:
    return Codec(load_schema("SensorReading"), writers=[_v1_sensor_reading()])


def _reading(cycle: int = 7, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"event_id": f"run-rig-001-{cycle}", "rig_id": "rig-001", "cycle": cycle}
    record["event_time"] = 1_718_000_000_000 + cycle
    names = [f["name"] for f in load_schema("SensorReading")["fields"][4:]]
    return record | {name: 100.0 + j for j, name in enumerate(names)} | overrides


# --- encoder -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_compiled_encoder_writes_the_codecs_bytes_for_every_schema(name: str) -> None:
    codec = _Counting(load_schema(name))
    encode = compile_encoder(codec)

    @settings(max_examples=200, deadline=None)
    @given(_strategy(codec.schema))
    def same_bytes(record: dict[str, Any]) -> None:
        fast = encode(record)
        assert codec.encoded == 0, "a record of the schema's own types took the fallback"
        assert fast == codec.encode(record)
        codec.encoded = 0

    same_bytes()


@pytest.mark.parametrize("schema", [KINDS, NESTED], ids=["kinds", "nested"])
def test_compiled_encoder_writes_the_codecs_bytes_for_unions_arrays_and_nested_records(
    schema: dict[str, Any],
) -> None:
    codec = _Counting(schema)
    encode = compile_encoder(codec)

    @settings(max_examples=200, deadline=None)
    @given(_strategy(schema))
    def same_bytes(record: dict[str, Any]) -> None:
        fast = encode(record)
        assert codec.encoded == 0, "a record of the schema's own types took the fallback"
        assert fast == codec.encode(record)
        codec.encoded = 0

    same_bytes()


ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.sampled_from(["1.5", "NaN", b"bytes", (), ("a",), [], ["a"], {}, {"3": 1}, np.float64(2.5), 3.0]),
    st.sampled_from([np.int64(5), np.int64(2**62), np.int64(-(2**63)), np.int32(-7), np.uint64(2**63)]),
    st.sampled_from([np.True_, np.float32(1.5)]),
)


@pytest.mark.parametrize("name", ["Prediction", "SensorReading", "MetricWindow", "Kinds", "Nested"])
def test_compiled_encoder_writes_or_fails_like_the_codec_on_values_of_the_wrong_type(name: str) -> None:
    codec = Codec({"Kinds": KINDS, "Nested": NESTED}.get(name) or load_schema(name))
    encode = compile_encoder(codec)
    fields = [f["name"] for f in codec.schema["fields"]]

    @settings(max_examples=300, deadline=None)
    @given(_strategy(codec.schema), st.dictionaries(st.sampled_from(fields), ODD_VALUES, max_size=3))
    def same_outcome(record: dict[str, Any], odd: dict[str, Any]) -> None:
        record = record | odd
        assert _outcome(encode, record) == _outcome(codec.encode, record)

    same_outcome()


def test_numpy_integers_in_long_fields_take_the_fast_path_and_write_the_codecs_bytes() -> None:
    codec = _Counting(load_schema("Prediction"))
    encode = compile_encoder(codec)
    record = {
        "event_id": "e",
        "rig_id": "r",
        "cycle": np.int64(12),  # as taken from a BatchDecoder column
        "event_time": np.int64(1_718_000_000_000),
        "model_name": "m",
        "model_version": "1",
        "probabilities": {"3": 0.25, "20": 0.5, "100": 0.25},
        "predicted_label": "20",
        "confidence": np.float64(0.5),
        "scored_time": True,  # fastavro writes a bool as 1 in a plain long
    }
    fast = encode(record)
    assert codec.encoded == 0
    assert fast == codec.encode(record)


def test_a_bool_in_a_nullable_long_fails_like_the_codec() -> None:
    codec = Codec(NESTED)
    record: dict[str, Any] = {
        "n": True,
        "i": None,
        "tags": {},
        "inner": {"x": 1.0, "on": False},
        "inners": [],
    }
    assert (
        _outcome(compile_encoder(codec), record) == _outcome(codec.encode, record) == ("raises", ValueError)
    )


def test_compiled_encoder_fails_naming_a_missing_required_field_like_the_codec() -> None:
    codec = Codec(load_schema("Actual"))
    with pytest.raises(Exception, match="label"):
        compile_encoder(codec)({"event_id": "e", "rig_id": "r", "observed_time": 5})


def test_compiled_encoder_fills_defaults_like_the_codec() -> None:
    codec = Codec(load_schema("Prediction"))
    record = {
        "event_id": "e",
        "rig_id": "r",
        "cycle": 1,
        "event_time": 1_718_000_000_000,
        "model_name": "m",
        "model_version": "1",
        "probabilities": {"3": 0.25, "20": 0.5, "100": 0.25},
        "predicted_label": "20",
        "confidence": 0.5,
        "scored_time": 1_718_000_000_500,
    }  # no role, no flags
    assert compile_encoder(codec)(record) == codec.encode(record)


def test_compiled_encoder_refuses_a_type_it_cannot_write_naming_the_field() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "blob", "type": "bytes"}]}
    with pytest.raises(UnsupportedSchemaError, match=r"R\.blob"):
        compile_encoder(Codec(schema))


# --- batch decoder ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", FLAT_SCHEMAS)
def test_batch_decoder_equals_codec_decode_for_flat_schemas(name: str) -> None:
    codec = _Counting(load_schema(name))
    decoder = BatchDecoder(codec)

    @settings(max_examples=100, deadline=None)
    @given(st.lists(_strategy(codec.schema), max_size=12))
    def same_records(records: list[dict[str, Any]]) -> None:
        values = [codec.encode(r) for r in records]
        decoder.decode(values)
        assert codec.decoded == 0, "a record of the current schema took the fallback"
        _assert_matches_codec(decoder, values)
        codec.decoded = 0

    same_records()


def test_batch_decoder_reads_every_kind_and_a_null_second_union() -> None:
    codec = _Counting(KINDS)
    decoder = BatchDecoder(codec)
    assert decoder.double_names == ("d0", "d1", "d2")

    @settings(max_examples=150, deadline=None)
    @given(st.lists(_strategy(KINDS), max_size=12))
    def same_records(records: list[dict[str, Any]]) -> None:
        values = [codec.encode(r) for r in records]
        batch = decoder.decode(values)
        assert codec.decoded == 0, "a record of the current schema took the fallback"
        assert batch.booleans["ok"].dtype == bool
        assert batch.longs["i"].dtype == np.int64
        _assert_matches_codec(decoder, values)
        codec.decoded = 0

    same_records()


def _corrupt(data: st.DataObject, good: bytes) -> bytes:
    """Damage *good* the way a broken producer or a bit flip would."""
    how = data.draw(st.sampled_from(["truncate", "append", "flip", "flip", "insert", "delete"]))
    at = data.draw(st.integers(0, len(good) - 1))
    if how == "truncate":
        return good[:at]
    if how == "append":
        return good + data.draw(st.binary(min_size=1, max_size=12))
    if how == "flip":
        byte = data.draw(st.sampled_from([0, 1, 2, 3, 0x7F, 0x80, 0xFF]) | st.integers(0, 255))
        return good[:at] + bytes([byte]) + good[at + 1 :]
    if how == "insert":
        return good[:at] + data.draw(st.binary(min_size=1, max_size=4)) + good[at:]
    return good[:at] + good[at + 1 :]


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mixed_batches_end_per_index_as_codec_decode_says(data: st.DataObject) -> None:
    codec = _sensor_codec()
    v1 = Codec(_v1_sensor_reading())
    current, old = _strategy(codec.schema), _strategy(v1.schema)
    values: list[Any] = []
    for _ in range(data.draw(st.integers(0, 16))):
        kind = data.draw(
            st.sampled_from(["good", "good", "full", "v1", "junk", "unknown", "none", "corrupt", "corrupt"])
        )
        if kind == "good":
            values.append(codec.encode(data.draw(current)))
        elif kind == "full":
            values.append(codec.encode(_reading(data.draw(st.integers(0, 10**6)))))
        elif kind == "v1":
            values.append(v1.encode(data.draw(old)))
        elif kind == "junk":
            values.append(data.draw(st.binary(max_size=40)))
        elif kind == "unknown":
            values.append(MARKER + data.draw(st.binary(min_size=8, max_size=8)) + b"\x02a")
        elif kind == "none":
            values.append(None)
        else:
            values.append(
                _corrupt(data, codec.encode(data.draw(st.sampled_from([_reading(), data.draw(current)]))))
            )
    _assert_matches_codec(BatchDecoder(codec), values)


@pytest.mark.parametrize("name", ["Kinds", "Alert"])
def test_corrupted_records_end_as_codec_decode_says(name: str) -> None:
    schema = KINDS if name == "Kinds" else load_schema(name)
    codec = Codec(schema)
    decoder = BatchDecoder(codec)

    @settings(max_examples=150, deadline=None)
    @given(st.data(), st.lists(_strategy(schema), min_size=1, max_size=8))
    def same_outcomes(data: st.DataObject, records: list[dict[str, Any]]) -> None:
        values = [codec.encode(r) for r in records]
        values += [_corrupt(data, v) for v in values]
        _assert_matches_codec(decoder, values)

    same_outcomes()


@pytest.mark.parametrize(
    "varint",
    [
        b"\x80" * 9 + b"\x01",  # 10 bytes, bit 63 set: the largest a long may take
        b"\xff" * 9 + b"\x7f",  # 10 bytes overflowing 64 bits
        b"\x81" + b"\x80" * 8 + b"\x02",
        b"\x80" * 10 + b"\x00",  # 11 bytes
        b"\x80\x00",  # zero, not in its shortest form
    ],
)
def test_overlong_and_overflowing_varints_decode_as_the_codec_decodes_them(varint: bytes) -> None:
    codec = Codec(load_schema("Actual"))
    good = codec.encode({"event_id": "e", "rig_id": "r", "label": "3", "observed_time": 5})
    _assert_matches_codec(BatchDecoder(codec), [good[:-1] + varint, good])


def test_mixed_batch_outcomes_and_reasons_per_index() -> None:
    codec = _Counting(load_schema("SensorReading"), writers=[_v1_sensor_reading()])
    v1 = Codec(_v1_sensor_reading())
    good = codec.encode(_reading(1))
    values = [
        good,
        codec.encode(_reading(2, psb_bar=None, eff_fact_pct=None)),
        v1.encode({k: v for k, v in _reading(3).items() if k != "eff_fact_pct"}),
        b"{not avro}",
        MARKER + b"\x01" * 8 + good[10:],
        good[:-4],
        good + b"\x00",
        None,
        codec.encode(_reading(4, psa_bar=float("nan"), psc_bar=float("inf"))),
    ]
    batch = BatchDecoder(codec).decode(values)

    assert codec.decoded == 6  # only the old writer's record and the rejects went one by one
    assert batch.index.tolist() == [0, 1, 2, 8]
    assert [(i, e.reason) for i, e in batch.rejects] == [
        (3, "not_single_object"),
        (4, "unknown_schema"),
        (5, "bad_body"),
        (6, "bad_body"),
        (7, "not_single_object"),
    ]
    assert batch.longs["cycle"].tolist() == [1, 2, 3, 4]
    assert batch.strings["event_id"] == [f"run-rig-001-{c}" for c in (1, 2, 3, 4)]
    psa, psb, psc, eff = (
        batch.double_names.index(n) for n in ("psa_bar", "psb_bar", "psc_bar", "eff_fact_pct")
    )
    # A null is NaN in the matrix and flagged; a NaN or infinity that was sent is a value.
    assert np.isnan(batch.doubles[1, psb]) and batch.nulls[1, psb]
    assert np.isnan(batch.doubles[2, eff]) and batch.nulls[2, eff]  # v1 has no such field
    assert np.isnan(batch.doubles[3, psa]) and not batch.nulls[3, psa]
    assert batch.doubles[3, psc] == np.inf and not batch.nulls[3, psc]
    assert batch.record(1)["psb_bar"] is None and batch.record(2)["eff_fact_pct"] is None
    _assert_matches_codec(BatchDecoder(codec), values)


def test_old_writer_is_unknown_schema_until_registered() -> None:
    v1 = Codec(_v1_sensor_reading())
    data = v1.encode({k: v for k, v in _reading().items() if k != "eff_fact_pct"})
    batch = BatchDecoder(Codec(load_schema("SensorReading"))).decode([data])
    assert [(i, e.reason) for i, e in batch.rejects] == [(0, "unknown_schema")]


def test_invalid_utf8_is_bad_body_with_the_codecs_detail() -> None:
    codec = _sensor_codec()
    good = codec.encode(_reading(event_id="ab"))
    broken = good.replace(b"\x04ab", b"\x04\xff\xfe", 1)
    values = [good, broken, codec.encode(_reading(event_id="é€😀"))]
    batch = BatchDecoder(codec).decode(values)
    assert batch.index.tolist() == [0, 2]
    assert batch.strings["event_id"] == ["ab", "é€😀"]
    assert [(i, e.reason) for i, e in batch.rejects] == [(1, "bad_body")]
    _assert_matches_codec(BatchDecoder(codec), values)


def test_bytes_like_and_non_bytes_inputs_are_treated_like_the_codec() -> None:
    codec = _sensor_codec()
    good = codec.encode(_reading())
    _assert_matches_codec(BatchDecoder(codec), [bytearray(good), memoryview(good), None, b""])


def test_empty_batch_has_empty_columns() -> None:
    batch = BatchDecoder(_sensor_codec()).decode([])
    assert len(batch) == 0 and batch.rejects == [] and batch.records() == []
    assert batch.doubles.shape == (0, 17) and batch.longs["cycle"].shape == (0,)
    assert batch.strings["rig_id"] == []


def test_large_batch_of_complete_readings_is_read_as_columns_and_equals_the_codec() -> None:
    codec = _Counting(load_schema("SensorReading"))
    values = [codec.encode(_reading(cycle)) for cycle in range(0, 3000, 3)]
    batch = BatchDecoder(codec).decode(values)
    assert codec.decoded == 0
    assert batch.index.tolist() == list(range(len(values)))
    assert batch.records() == [codec.decode(v) for v in values]


@pytest.mark.parametrize("name", ["Prediction", "MetricWindow"])
def test_batch_decoder_refuses_a_schema_it_cannot_read_naming_the_field(name: str) -> None:
    with pytest.raises(UnsupportedSchemaError, match=rf"{name}\.(probabilities|metrics)"):
        BatchDecoder(Codec(load_schema(name)))
