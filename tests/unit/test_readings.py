from __future__ import annotations

import itertools

import numpy as np
import pytest

from loadgen.readings import BAD_KINDS, ReadingStream, Shift, stepping_clock
from rigwatch.data import SENSOR_COLUMNS, Dataset
from rigwatch.exceptions import ConfigError, DecodeError
from rigwatch.schemas import Codecs


def _dataset(n: int = 30) -> Dataset:
    sensors = np.arange(n * 17, dtype=np.float64).reshape(n, 17)
    sensors[3, 2] = np.nan
    labels = np.zeros((n, 5), dtype=np.int64)
    labels[:, 0] = np.array([3, 20, 100] * (n // 3))
    return Dataset(cycle=np.arange(n), sensors=sensors, labels=labels, source="test")


def _events(**kwargs):
    codec = Codecs.load().sensor_reading
    stream = ReadingStream(_dataset(), codec, run_id="run1", **kwargs)
    return codec, list(itertools.islice(stream.events(lambda: 42), kwargs.get("count") or 100))


def test_run_order_replays_rows_in_order_with_labels() -> None:
    codec, events = _events(order="run", count=6)
    readings = [codec.decode(e.value) for e in events]
    assert [r["psa_bar"] for r in readings] == [i * 17.0 for i in range(6)]
    assert [e.label for e in events] == ["3", "20", "100", "3", "20", "100"]
    assert readings[3]["psc_bar"] is None  # NaN in the data is a null on the wire
    assert all(r["event_time"] == 42 for r in readings)


def test_rigs_get_own_ids_and_cycle_counters() -> None:
    codec, events = _events(order="run", rigs=3, count=9)
    readings = [codec.decode(e.value) for e in events]
    assert [r["rig_id"] for r in readings[:3]] == ["rig-000", "rig-001", "rig-002"]
    assert [r["cycle"] for r in readings if r["rig_id"] == "rig-001"] == [0, 1, 2]
    assert len({r["event_id"] for r in readings}) == 9
    assert all(e.key == r["rig_id"] for e, r in zip(events, readings, strict=True))


def test_exact_number_of_malformed_records_each_rejected_for_its_kind() -> None:
    codec, events = _events(count=2000, bad_rate=0.01, seed=3)
    bad = [e for e in events if e.bad_kind]
    assert len(bad) == 20
    assert {e.bad_kind for e in bad} <= set(BAD_KINDS)
    for event in bad:
        assert event.label is None
        if event.bad_kind == "missing_field":
            assert codec.decode(event.value)["event_id"] == ""
        else:
            with pytest.raises(DecodeError) as info:
                codec.decode(event.value)
            assert info.value.reason == event.bad_kind


def test_label_coverage_and_seed_determinism() -> None:
    _, first = _events(count=1000, label_coverage=0.5, seed=7)
    _, again = _events(count=1000, label_coverage=0.5, seed=7)
    labelled = sum(e.label is not None for e in first)
    assert 430 <= labelled <= 570
    assert [e.value for e in first] == [e.value for e in again]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"order": "random"}, "order"), ({"rigs": 0}, "rigs"), ({"bad_rate": 1.5}, "bad_rate")],
)
def test_bad_options_name_the_field(kwargs, field) -> None:
    with pytest.raises(ConfigError, match=field):
        ReadingStream(_dataset(), Codecs.load().sensor_reading, run_id="r", **kwargs)


def test_sensor_columns_are_all_on_the_wire() -> None:
    codec, events = _events(count=1)
    assert set(SENSOR_COLUMNS) <= set(codec.decode(events[0].value))


def test_shift_adds_its_delta_from_its_start_on() -> None:
    codec = Codecs.load().sensor_reading
    stream = ReadingStream(
        _dataset(), codec, run_id="s", order="run", count=6, effects=[Shift.parse("tsb_temp=+2@3").effect()]
    )
    readings = [codec.decode(e.value) for e in stream.events(lambda: 0)]
    column = SENSOR_COLUMNS.index("tsb_temp")
    assert [r["tsb_temp"] for r in readings] == [i * 17.0 + column + (2 if i >= 3 else 0) for i in range(6)]


@pytest.mark.parametrize("text", ["nosuch=+2", "tsb_temp", "tsb_temp=abc", "tsb_temp=1@x"])
def test_bad_shift_is_named(text: str) -> None:
    with pytest.raises(ConfigError, match="shift="):
        Shift.parse(text)


def test_stepping_clock_drives_event_time() -> None:
    codec = Codecs.load().sensor_reading
    stream = ReadingStream(_dataset(), codec, run_id="c", count=4)
    events = [codec.decode(e.value)["event_time"] for e in stream.events(stepping_clock(10_000, 500))]
    assert events == [10_000, 10_500, 11_000, 11_500]


def test_scenario_effects_act_only_inside_their_span() -> None:
    from loadgen.scenarios import Effect

    effects = [
        Effect("stuck", 10, 20, "psa_bar"),
        Effect("noise", 0, 50, "psb_bar", 3.0),
        Effect("bad", 50, 70, amount=1.0),
        Effect("wrong-labels", 70, 90, amount=1.0),
        Effect("degrade", 90, 100),
    ]
    codec, events = _events(count=100, seed=1, effects=effects)
    readings = {i: codec.decode(e.value) for i, e in enumerate(events) if e.reading is not None}
    clean = {i: e for i, e in enumerate(_events(count=100, seed=1)[1])}
    # stuck: the value of reading 10 from 10 to 19, free again after.
    assert {readings[i]["psa_bar"] for i in range(10, 20)} == {readings[10]["psa_bar"]}
    assert len({readings[i]["psa_bar"] for i in range(20, 50)}) > 1
    # noise: psb_bar moves off the data's value (up to reading 50 the rows equal a run without effects).
    noisy = [readings[i]["psb_bar"] - codec.decode(clean[i].value)["psb_bar"] for i in range(10, 50)]
    assert np.std(noisy) == pytest.approx(3.0, rel=0.5) and clean[60].label is not None
    # bad: every record in [50, 70) malformed, none outside.
    assert [i for i, e in enumerate(events) if e.bad_kind] == list(range(50, 70))
    # wrong labels: every label in [70, 90) differs from the row's class.
    rows = {i: int(readings[i]["psa_bar"] // 17) for i in range(70, 90)}  # psa_bar is row * 17 here
    assert all(events[i].label != ("3", "20", "100")[rows[i] % 3] for i in range(70, 90))
    # degrade with progress rising to 1: the last readings come from failing-cooler (3 %) rows.
    assert events[99].label == "3"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("nope", "unknown name 'nope'"), ("sensor-offset@x", "START and END must be reading numbers")],
)
def test_scenario_names_and_spans_are_checked(text: str, fragment: str) -> None:
    from loadgen.scenarios import parse_scenario

    with pytest.raises(ConfigError, match=fragment):
        parse_scenario(text)
