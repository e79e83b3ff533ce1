"""Request fields of the console: strict parsing that names the field, and readings from the schema."""

from __future__ import annotations

import math
from typing import Any

import pytest

from rigwatch.schemas import load_schema
from services.console.errors import ApiError
from services.console.routes import routes
from services.console.scoring import complete, reading_params
from services.console.validation import Param, parse_body, parse_object, parse_query


def _score_body() -> tuple[Param, ...]:
    body = next(r for r in routes() if r.name == "score").body
    assert body is not None
    return body


def _refused(data: Any, params: tuple[Param, ...]) -> ApiError:
    with pytest.raises(ApiError) as refused:
        parse_object(data, params)
    assert refused.value.status == 400
    return refused.value


@pytest.mark.parametrize(
    ("reading", "field", "value"),
    [
        ({"psa_bar": 1.0}, "readings[0].rig_id", None),
        ({"rig_id": ""}, "readings[0].rig_id", ""),
        ({"rig_id": "r", "psa_bar": "160.7"}, "readings[0].psa_bar", "160.7"),
        ({"rig_id": "r", "psa_bar": True}, "readings[0].psa_bar", True),
        ({"rig_id": "r", "psa_bar": [1.0]}, "readings[0].psa_bar", "[1.0]"),
        ({"rig_id": "r", "cycle": 2.5}, "readings[0].cycle", 2.5),
        ({"rig_id": "r", "cycle": 2**64}, "readings[0].cycle", 2**64),
        ({"rig_id": "r", "event_time": "now"}, "readings[0].event_time", "now"),
        ({"rig_id": "r", "tsb_tmp": 41.0}, "readings[0].tsb_tmp", 41.0),
        ({"rig_id": 7}, "readings[0].rig_id", 7),
    ],
)
def test_a_bad_reading_is_refused_naming_its_field_and_value(reading: dict, field: str, value: Any) -> None:
    refused = _refused({"readings": [reading]}, _score_body())

    assert refused.field == field and refused.body()["value"] == value
    assert refused.body()["field"] == field and field.split(".")[-1] in refused.message


def test_the_second_bad_reading_is_named_by_its_index() -> None:
    refused = _refused({"readings": [{"rig_id": "a"}, {"rig_id": "b", "vs_vib": "x"}]}, _score_body())

    assert refused.field == "readings[1].vs_vib"


def test_a_reading_is_one_object_or_a_list_with_defaults_filled_in() -> None:
    one = parse_object({"readings": {"rig_id": "r", "psa_bar": 160}}, _score_body())
    many = parse_object({"readings": [{"rig_id": "r"}, {"rig_id": "s", "cycle": 3.0}]}, _score_body())

    reading = one["readings"][0]
    assert (one["deployment"], one["publish"]) == (None, True)
    assert reading["psa_bar"] == 160.0 and isinstance(reading["psa_bar"], float)
    assert (reading["event_id"], reading["cycle"], reading["event_time"], reading["tsb_temp"]) == (
        None,
        0,
        None,
        None,
    )
    assert [r["cycle"] for r in many["readings"]] == [0, 3]


def test_sensors_may_be_null_nan_or_infinite_like_on_kafka() -> None:
    parsed = parse_body(
        b'{"readings": {"rig_id": "r", "psa_bar": NaN, "psb_bar": Infinity, "psc_bar": null}}', _score_body()
    )

    reading = parsed["readings"][0]
    assert math.isnan(reading["psa_bar"]) and reading["psb_bar"] == math.inf and reading["psc_bar"] is None


def test_an_empty_list_of_readings_and_a_non_object_body_are_refused() -> None:
    assert _refused({"readings": []}, _score_body()).field == "readings"
    assert _refused([{"rig_id": "r"}], _score_body()).field == "body"
    assert _refused({"readings": [None]}, _score_body()).field == "readings[0]"


def test_reading_params_follow_the_sensor_reading_schema() -> None:
    schema = load_schema("SensorReading")
    params = {p.name: p for p in reading_params(schema)}

    assert list(params) == [f["name"] for f in schema["fields"]]
    assert [n for n, p in params.items() if p.required] == ["rig_id"]
    assert {p.type for n, p in params.items() if n.endswith(("_bar", "_temp", "_pct"))} == {"number"}


def test_complete_gives_every_reading_an_id_and_a_time_once() -> None:
    ids = iter(["e1", "e2"])
    first = complete({"event_id": None, "rig_id": "r", "event_time": None}, 1000, lambda: next(ids))
    kept = complete({"event_id": "mine", "rig_id": "r", "event_time": 5}, 1000, lambda: next(ids))

    assert (first["event_id"], first["event_time"]) == ("e1", 1000)
    assert (kept["event_id"], kept["event_time"]) == ("mine", 5)


@pytest.mark.parametrize(
    ("param", "value", "ok"),
    [
        (Param("p", "number", minimum=0, maximum=100, exclusive=True), 100, False),
        (Param("p", "number", minimum=0, maximum=100, exclusive=True), 99.5, True),
        (Param("p", "number", minimum=0, maximum=100), 100, True),
        (Param("p", "number"), float("inf"), False),
        (Param("p", "integer", minimum=0), -1, False),
        (Param("p", "boolean"), 1, False),
        (Param("p", "string", enum=("a", "b")), "c", False),
        (Param("p", "string", pattern=r"[0-9a-f]{4,12}"), "abcd", True),
        (Param("p", "string", pattern=r"[0-9a-f]{4,12}"), "abcd/", False),
        (Param("p", "string", nullable=True), None, True),
    ],
)
def test_param_bounds_enums_and_patterns(param: Param, value: Any, ok: bool) -> None:
    if ok:
        assert parse_object({"p": value}, [param]) == {"p": value}
    else:
        assert _refused({"p": value}, (param,)).field == "p"


def test_query_parameters_are_converted_and_unknown_ones_refused() -> None:
    params = [Param("limit", "integer", default=10), Param("since", "time"), Param("state", "string")]

    parsed = parse_query({"limit": "5", "since": "1700000000000", "state": "active"}, params)
    relative = parse_query({"since": "10m"}, params)

    assert parsed == {"limit": 5, "since": 1_700_000_000_000, "state": "active"}
    assert relative["since"] > 1_700_000_000_000 and relative["limit"] == 10
    with pytest.raises(ApiError) as refused:
        parse_query({"limt": "5"}, params)
    assert refused.value.field == "limt"
    with pytest.raises(ApiError) as refused:
        parse_query({"since": "last tuesday"}, params)
    assert refused.value.field == "since"


@pytest.mark.parametrize("raw", [b"{", b"[" * 100_000, b"\xff\xfe\x00", b'{"text": 1'])
def test_a_body_that_is_not_json_is_a_400_not_a_crash(raw: bytes) -> None:
    with pytest.raises(ApiError) as refused:
        parse_body(raw, [Param("text", "string")])
    assert refused.value.status == 400 and refused.value.field == "body"


def test_a_route_without_a_body_refuses_one() -> None:
    assert parse_body(b"  ", None) == {}
    with pytest.raises(ApiError, match="takes no body"):
        parse_body(b'{"x": 1}', None)
