"""Schema evolution: records written with an older schema in ``schemas/history/`` still decode.

Prediction v1 had no ``processing_ms``; v2 adds it as a double with default 0.0.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from rigwatch.codec import MARKER, Codec
from rigwatch.exceptions import DecodeError
from rigwatch.fastcodec import compile_encoder
from rigwatch.schemas import SCHEMA_FILES, Codecs, load_schema, schema_dir

HISTORY = sorted((schema_dir() / "history").glob("*.v*.avsc"))
_STEMS = {file.removesuffix(".avsc"): name for name, file in SCHEMA_FILES.items()}


def _v1_prediction_schema() -> dict[str, Any]:
    return json.loads((schema_dir() / "history" / "prediction.v1.avsc").read_text())


def _v1_prediction() -> dict[str, Any]:
    """A Prediction as a v1 scorer wrote it: every v1 field, no processing_ms."""
    return {
        "event_id": "run-rig-001-7",
        "rig_id": "rig-001",
        "cycle": 7,
        "event_time": 1_718_000_000_000,
        "model_name": "cooler-lgbm",
        "model_version": "2024.06.1",
        "role": "challenger",
        "probabilities": {"3": 0.125, "20": 0.25, "100": 0.625},
        "predicted_label": "100",
        "confidence": 0.625,
        "scored_time": 1_718_000_000_042,
        "flags": ["missing:tsb_temp"],
    }


class _Spy(Codec):
    """A codec counting how often the compiled encoder falls back to it."""

    encoded = 0

    def encode(self, record: dict[str, Any]) -> bytes:
        self.encoded += 1
        return super().encode(record)


def test_v1_history_is_the_current_prediction_without_processing_ms() -> None:
    current = load_schema("Prediction")
    v1 = _v1_prediction_schema()
    assert [f["name"] for f in current["fields"]][-1] == "processing_ms"
    assert v1["fields"] == current["fields"][:-1]
    assert {k: v for k, v in v1.items() if k != "fields"} == {
        k: v for k, v in current.items() if k != "fields"
    }


def test_v1_prediction_decodes_with_processing_ms_zero_and_every_other_field_equal() -> None:
    v1 = Codec(_v1_prediction_schema())
    data = v1.encode(_v1_prediction())
    assert data[:2] == MARKER and data[2:10] == v1.fingerprint

    decoded = Codecs.load().prediction.decode(data)

    assert decoded["processing_ms"] == 0.0 and isinstance(decoded["processing_ms"], float)
    assert {k: v for k, v in decoded.items() if k != "processing_ms"} == _v1_prediction()


def test_current_prediction_round_trips_with_processing_ms() -> None:
    codec = Codecs.load().prediction
    record = _v1_prediction() | {"processing_ms": 3.25}
    data = codec.encode(record)
    assert data[2:10] == codec.fingerprint
    assert codec.decode(data) == record


def test_v1_and_current_prediction_fingerprints_differ() -> None:
    v1 = Codec(_v1_prediction_schema())
    assert v1.fingerprint != Codecs.load().prediction.fingerprint


def test_current_prediction_decodes_with_a_v1_reader_only_once_it_knows_the_writer() -> None:
    """A consumer still on v1 rejects v2 records as unknown_schema: upgrade readers before the scorer."""
    data = Codecs.load().prediction.encode(_v1_prediction() | {"processing_ms": 1.5})
    with pytest.raises(DecodeError) as info:
        Codec(_v1_prediction_schema()).decode(data)
    assert info.value.reason == "unknown_schema"

    old_reader = Codec(_v1_prediction_schema(), writers=[load_schema("Prediction")])
    assert old_reader.decode(data) == _v1_prediction()


@pytest.mark.parametrize("path", HISTORY, ids=[p.name for p in HISTORY])
def test_history_versions_differ_from_the_current_schema_only_by_fields_with_defaults(path) -> None:
    name = _STEMS[path.name.split(".v")[0]]
    old, current = json.loads(path.read_text()), load_schema(name)
    old_fields = {f["name"]: f for f in old["fields"]}
    for field in current["fields"]:
        if field["name"] in old_fields:
            assert field["type"] == old_fields[field["name"]]["type"], field["name"]
        else:
            assert "default" in field, f"{name}.{field['name']} was added without a default"
    assert set(old_fields) <= {f["name"] for f in current["fields"]}, "a field was removed"


def test_codecs_load_registers_every_history_version() -> None:
    codecs = {codec.name: codec for codec in Codecs.load().all()}
    assert HISTORY, "no history files found"
    for path in HISTORY:
        codec = codecs[_STEMS[path.name.split(".v")[0]]]
        old = Codec(json.loads(path.read_text()))
        assert old.fingerprint in codec._writers


@pytest.mark.parametrize("processing_ms", [None, 0.0, 12.345, 7])
def test_compiled_encoder_writes_processing_ms_and_its_default_on_the_fast_path(processing_ms) -> None:
    codec = _Spy(load_schema("Prediction"))
    encode = compile_encoder(codec)
    record = _v1_prediction()
    if processing_ms is not None:  # None: the field is left out and its default written
        record["processing_ms"] = processing_ms

    fast = encode(record)

    assert codec.encoded == 0, "the compiled encoder fell back to the codec"
    assert fast == codec.encode(record)
    assert codec.decode(fast)["processing_ms"] == float(processing_ms or 0.0)
