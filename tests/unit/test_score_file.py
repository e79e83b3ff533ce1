"""``rigwatch score``: a CSV file through the streaming scorer, bad rows, column order, humility outcomes."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rigwatch.cli import app
from rigwatch.config import Settings
from rigwatch.data import LABEL_COLUMNS, SENSOR_COLUMNS
from rigwatch.exceptions import ConfigError, DataError, ModelError
from rigwatch.lifecycle.store import ModelStore
from rigwatch.schemas import Codecs
from services.scorer.csvrows import BadRow, BadRowError
from services.scorer.handler import Scorer
from services.scorer.humility import HumilityRules
from services.scorer.scorefile import load_model, output_columns, score_file

HEADER = ["cycle", *SENSOR_COLUMNS, *LABEL_COLUMNS]


@pytest.fixture(scope="module")
def codecs() -> Codecs:
    return Codecs.load()


def _scorer(model, codecs: Codecs, rules: HumilityRules | None = None) -> Scorer:
    return Scorer(model, codecs.sensor_reading, codecs.prediction, rules=rules)


def _rows(dataset, n: int = 40) -> list[dict[str, str]]:
    """*n* real cycles spread over the three cooler classes, as CSV text (repr: exact floats)."""
    picked = range(0, len(dataset), len(dataset) // n)
    return [
        {
            "cycle": str(int(dataset.cycle[i])),
            **{c: repr(v) for c, v in zip(SENSOR_COLUMNS, dataset.sensors[i].tolist(), strict=True)},
            **{c: str(v) for c, v in zip(LABEL_COLUMNS, dataset.labels[i].tolist(), strict=True)},
        }
        for i in picked
    ][:n]


def _write(path: Path, rows: list[dict[str, str]], header: list[str] = HEADER) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _score(model, codecs, source: Path, out: Path, rules=None, **kw):
    return score_file(
        _scorer(model, codecs, rules), codecs.sensor_reading, codecs.prediction, source, out, **kw
    )


def test_rows_get_what_the_streaming_scorer_gives_the_same_readings(
    tmp_path, real_model, real_dataset, codecs
) -> None:
    rows = _rows(real_dataset)
    report = _score(real_model, codecs, _write(tmp_path / "in.csv", rows), tmp_path / "out.csv")
    out = _read(tmp_path / "out.csv")

    readings = [
        codecs.sensor_reading.encode(
            {"event_id": str(i), "rig_id": "r", "cycle": i, "event_time": 0}
            | {c: float(row[c]) for c in SENSOR_COLUMNS}
        )
        for i, row in enumerate(rows)
    ]
    streamed = [
        codecs.prediction.decode(v) for _, v in _scorer(real_model, codecs).score(readings, 0).outputs
    ]
    assert (report.rows, report.scored, report.bad) == (len(rows), len(rows), [])
    assert list(out[0]) == HEADER + list(output_columns(real_model.classes))
    assert [c for c in out[0] if c.startswith("p_")] == ["p_3", "p_20", "p_100"]
    for row, got, p in zip(rows, out, streamed, strict=True):
        assert {k: got[k] for k in HEADER} == row, "input columns kept as they were"
        assert got["predicted_label"] == p["predicted_label"]
        assert float(got["confidence"]) == p["confidence"]
        assert [float(got[f"p_{c}"]) for c in real_model.classes] == [
            p["probabilities"][c] for c in p["probabilities"]
        ]
        assert (got["model_version"], got["outcome"], got["flags"]) == (real_model.version, "scored", "")
    assert sum(r["predicted_label"] == r["cool_cond_y"] for r in out) == len(rows)


def test_column_order_does_not_change_any_output(tmp_path, real_model, real_dataset, codecs) -> None:
    rows = _rows(real_dataset)
    shuffled = HEADER[:]
    random.Random(3).shuffle(shuffled)
    _score(real_model, codecs, _write(tmp_path / "a.csv", rows), tmp_path / "a.out.csv")
    _score(real_model, codecs, _write(tmp_path / "b.csv", rows, shuffled), tmp_path / "b.out.csv")
    a, b = _read(tmp_path / "a.out.csv"), _read(tmp_path / "b.out.csv")

    assert list(b[0])[: len(HEADER)] == shuffled
    assert a == b, "same values per column name, whatever the order"


def test_bad_rows_are_skipped_and_reported_with_row_line_column_and_value(
    tmp_path, real_model, real_dataset, codecs
) -> None:
    rows = _rows(real_dataset, 6)
    rows[1]["psa_bar"] = "12,5"
    rows[3]["tsb_temp"] = "n/a"
    source = _write(tmp_path / "in.csv", rows)
    seen: list[BadRow] = []
    report = _score(real_model, codecs, source, tmp_path / "out.csv", on_bad=seen.append)

    assert seen == report.bad
    assert [(b.row, b.line, b.column, b.value) for b in seen] == [
        (2, 3, "psa_bar", "12,5"),
        (4, 5, "tsb_temp", "n/a"),
    ]
    assert str(seen[0]) == "row 2 (line 3): psa_bar='12,5' is not a number"
    assert (report.rows, report.scored) == (6, 4)
    assert [r["cycle"] for r in _read(tmp_path / "out.csv")] == [rows[i]["cycle"] for i in (0, 2, 4, 5)]


def test_a_row_with_too_few_or_too_many_values_is_bad_and_names_the_column(
    tmp_path, real_model, real_dataset, codecs
) -> None:
    source = _write(tmp_path / "in.csv", _rows(real_dataset, 3))
    lines = source.read_text().splitlines()
    lines[1] = ",".join(lines[1].split(",")[:5])  # cycle, psa_bar .. psd_bar
    lines[2] += ",surplus"
    source.write_text("\n".join(lines) + "\n")
    report = _score(real_model, codecs, source, tmp_path / "out.csv")

    short, long = report.bad
    assert (short.row, short.column, short.value) == (1, "pse_bar", None)
    assert "5 values, the header has 23: no value for pse_bar and 17 more column(s)" in str(short)
    assert (long.row, long.value) == (2, "surplus") and "24 values" in long.reason
    assert report.scored == 1


def test_fail_stops_at_the_first_bad_row_and_leaves_the_old_output(
    tmp_path, real_model, real_dataset, codecs
) -> None:
    rows = _rows(real_dataset, 5)
    rows[2]["pump_eff"] = "2538.9x"
    rows[4]["psa_bar"] = "bad too"
    out = tmp_path / "out.csv"
    out.write_text("previous\n")
    with pytest.raises(BadRowError) as caught:
        _score(real_model, codecs, _write(tmp_path / "in.csv", rows), out, on_error="fail")

    assert (caught.value.bad.row, caught.value.bad.column, caught.value.bad.value) == (
        3,
        "pump_eff",
        "2538.9x",
    )
    assert "in.csv: row 3 (line 4): pump_eff='2538.9x' is not a number" in str(caught.value)
    assert out.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no temporary file left"


def test_a_feature_missing_from_the_header_is_an_error_naming_it(
    tmp_path, real_model, real_dataset, codecs
) -> None:
    header = [c for c in HEADER if c not in ("tsb_temp", "vs_vib")]
    source = _write(tmp_path / "in.csv", _rows(real_dataset, 3), header)
    with pytest.raises(DataError, match=r"in.csv: no column tsb_temp, vs_vib \(the model needs psa_bar"):
        _score(real_model, codecs, source, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_cool_eff_pct_is_not_needed_but_read_when_there(tmp_path, real_model, real_dataset, codecs) -> None:
    rows = _rows(real_dataset, 3)
    rows[0]["cool_eff_pct"] = "high"
    report = _score(real_model, codecs, _write(tmp_path / "a.csv", rows), tmp_path / "a.out.csv")
    assert [b.column for b in report.bad] == ["cool_eff_pct"], "a sensor of the reading: a number or empty"

    header = [c for c in HEADER if c != "cool_eff_pct"]
    report = _score(real_model, codecs, _write(tmp_path / "b.csv", rows, header), tmp_path / "b.out.csv")
    assert (report.scored, report.bad) == (3, [])


def test_an_empty_cell_is_a_missing_sensor_scored_and_flagged(
    tmp_path, real_model, real_dataset, codecs
) -> None:
    rows = _rows(real_dataset, 3)
    rows[1]["tsa_temp"] = ""
    rows[2]["fsa_vol_flow"] = "nan"
    _score(real_model, codecs, _write(tmp_path / "in.csv", rows), tmp_path / "out.csv")
    out = _read(tmp_path / "out.csv")
    assert [r["flags"] for r in out] == ["", "missing:tsa_temp", "missing:fsa_vol_flow"]
    assert [r["outcome"] for r in out] == ["scored"] * 3


def test_humility_overrides_and_rejects_come_out_as_the_scorer_emits_them(
    tmp_path, real_model, real_dataset, codecs
) -> None:
    rows = _rows(real_dataset, 4)
    rows[1]["tsa_temp"] = ""
    rows[2]["psa_bar"] = "1000.0"
    rules = HumilityRules(missing_action="override", outlying_action="reject", fallback_label="3")
    report = _score(real_model, codecs, _write(tmp_path / "in.csv", rows), tmp_path / "out.csv", rules)
    out = _read(tmp_path / "out.csv")

    assert out[1]["flags"] == "missing:tsa_temp;override:missing"
    assert (out[1]["predicted_label"], out[1]["outcome"]) == ("3", "scored")
    rejected = out[2]
    assert (rejected["outcome"], rejected["error"]) == ("rejected", "humility:outlying")
    assert rejected["error_detail"].startswith("outlying: psa_bar=1000 outside training range")
    assert rejected["predicted_label"] == rejected["confidence"] == rejected["p_3"] == ""
    assert rejected["model_version"] == real_model.version
    assert (report.scored, report.overridden, report.rejected, report.flagged) == (3, 1, 1, 1)


def test_blank_lines_and_a_byte_order_mark_are_tolerated(tmp_path, real_model, real_dataset, codecs) -> None:
    source = _write(tmp_path / "in.csv", _rows(real_dataset, 2))
    lines = source.read_text().splitlines()
    source.write_bytes(("\ufeff" + "\n".join([lines[0], lines[1], "", lines[2], ""])).encode())
    report = _score(real_model, codecs, source, tmp_path / "out.csv")
    assert (report.rows, report.scored) == (2, 2)
    assert next(iter(_read(tmp_path / "out.csv")[0])) == "cycle"


def test_an_input_column_named_like_an_output_column_is_refused(
    tmp_path, real_model, real_dataset, codecs
) -> None:
    source = _write(tmp_path / "in.csv", _rows(real_dataset, 2), [*HEADER, "predicted_label"])
    with pytest.raises(DataError, match="column predicted_label would be overwritten"):
        _score(real_model, codecs, source, tmp_path / "out.csv")


def test_model_and_deployment_together_are_refused(tmp_path, model_dir) -> None:
    with pytest.raises(ConfigError, match="give one of them"):
        load_model(Settings(), model_dir, model=str(model_dir), deployment="cooler")
    assert (
        load_model(Settings(), tmp_path, model=str(model_dir)).version
        == load_model(Settings(), model_dir).version
    )


def test_model_is_a_folder_or_a_registered_version_or_its_prefix(tmp_path, model_dir) -> None:
    version = ModelStore(tmp_path / "store").register(model_dir, actor="test").version
    settings = Settings(model_store=tmp_path / "store")
    assert load_model(settings, tmp_path, model=version).version == version
    assert load_model(settings, tmp_path, model=version[:6]).version == version
    with pytest.raises(
        ModelError, match="--model no-such-dir: no package folder there, and not a model version"
    ):
        load_model(settings, tmp_path, model="no-such-dir")


def test_cli_scores_reports_bad_rows_and_fails_on_request(tmp_path, model_dir, real_dataset) -> None:
    rows = _rows(real_dataset, 4)
    rows[2]["psb_bar"] = "x"
    source = _write(tmp_path / "in.csv", rows)
    runner = CliRunner()
    args = ["score", str(source), "--model", str(model_dir), "--out", str(tmp_path / "out.csv")]

    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert "bad row: row 3 (line 4): psb_bar='x' is not a number" in ok.stderr
    assert "4 rows of" in ok.stderr and "3 scored" in ok.stderr and "1 bad rows skipped" in ok.stderr
    assert len(_read(tmp_path / "out.csv")) == 3

    quiet = runner.invoke(app, [*args, "--quiet"])
    assert quiet.exit_code == 0 and "rows of" not in quiet.stderr and "1 bad rows skipped" in quiet.stderr

    failed = runner.invoke(app, [*args, "--on-error", "fail"])
    assert failed.exit_code == 2
    assert "error: " in failed.stderr and "row 3 (line 4): psb_bar='x' is not a number" in failed.stderr
