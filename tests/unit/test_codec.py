from __future__ import annotations

import copy
from typing import Any

import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form
from hypothesis import given, settings
from hypothesis import strategies as st

from rigwatch.codec import MARKER, Codec, fingerprint
from rigwatch.exceptions import DecodeError
from rigwatch.schemas import SCHEMA_FILES, Codecs, load_schema

LONGS = st.integers(-(2**63), 2**63 - 1)
DOUBLES = st.floats(allow_nan=False)


def _strategy(avro_type: Any) -> st.SearchStrategy[Any]:
    """Values of any Avro type our schemas use, derived from the schema itself."""
    if isinstance(avro_type, list):
        return st.one_of([_strategy(t) for t in avro_type])
    if isinstance(avro_type, dict):
        kind = avro_type["type"]
        if kind == "record":
            return st.fixed_dictionaries({f["name"]: _strategy(f["type"]) for f in avro_type["fields"]})
        if kind == "map":
            return st.dictionaries(st.text(), _strategy(avro_type["values"]), max_size=5)
        if kind == "array":
            return st.lists(_strategy(avro_type["items"]), max_size=5)
        return _strategy(kind)  # a primitive with a logicalType
    scalars = {
        "null": st.none(),
        "string": st.text(),
        "long": LONGS,
        "double": DOUBLES,
        "boolean": st.booleans(),
    }
    return scalars[avro_type]


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_every_schema_round_trips(name: str) -> None:
    schema = load_schema(name)
    codec = Codec(schema)

    @settings(max_examples=150, deadline=None)
    @given(_strategy(schema))
    def round_trip(record: dict[str, Any]) -> None:
        data = codec.encode(record)
        assert data[:2] == MARKER
        assert data[2:10] == codec.fingerprint
        assert codec.decode(data) == record

    round_trip()


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_fingerprint_matches_fastavro_crc64(name: str) -> None:
    schema = load_schema(name)
    expected = fastavro_fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
    assert fingerprint(schema).hex() == expected


def _v1_sensor_reading() -> dict[str, Any]:
    """The SensorReading an older producer wrote: no eff_fact_pct field yet."""
    schema = copy.deepcopy(load_schema("SensorReading"))
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "eff_fact_pct"]
    return schema


def test_old_writer_record_decodes_with_default_for_new_field() -> None:
    v1 = Codec(_v1_sensor_reading())
    current = Codec(load_schema("SensorReading"), writers=[_v1_sensor_reading()])
    old = {"event_id": "e1", "rig_id": "rig-1", "cycle": 4, "event_time": 1_700_000_000_000}
    old |= {f["name"]: 1.5 for f in v1.schema["fields"][4:]}

    decoded = current.decode(v1.encode(old))

    assert decoded["eff_fact_pct"] is None
    assert decoded["psa_bar"] == 1.5
    assert v1.fingerprint != current.fingerprint


def test_old_writer_is_unknown_until_registered() -> None:
    v1 = Codec(_v1_sensor_reading())
    record = {"event_id": "e1", "rig_id": "r", "cycle": 0, "event_time": 0}
    with pytest.raises(DecodeError) as info:
        Codec(load_schema("SensorReading")).decode(v1.encode(record))
    assert info.value.reason == "unknown_schema"
    assert v1.fingerprint.hex() in info.value.detail


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not_single_object"),
        (b"\x00\x01garbage-garbage", "not_single_object"),
        (MARKER + b"\x01" * 8 + b"\x02", "unknown_schema"),
    ],
)
def test_bad_bytes_raise_typed_error_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        Codecs.load().sensor_reading.decode(data)
    assert info.value.reason == reason


def test_truncated_and_padded_bodies_are_bad_body() -> None:
    codec = Codecs.load().actual
    good = codec.encode({"event_id": "e", "rig_id": "r", "label": "3", "observed_time": 5})
    for data in (good[:-3], good + b"\x00"):
        with pytest.raises(DecodeError) as info:
            codec.decode(data)
        assert info.value.reason == "bad_body"


def test_timestamps_stay_epoch_millis() -> None:
    codec = Codecs.load().actual
    record = {"event_id": "e", "rig_id": "r", "label": "3", "observed_time": 1_700_000_000_123}
    assert codec.decode(codec.encode(record))["observed_time"] == 1_700_000_000_123


def test_encoding_a_record_missing_a_required_field_fails_naming_it() -> None:
    codec = Codecs.load().actual
    with pytest.raises(Exception, match="label"):
        codec.encode({"event_id": "e", "rig_id": "r", "observed_time": 5})
