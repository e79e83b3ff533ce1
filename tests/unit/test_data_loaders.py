"""Loaders, the Dataset container, download verification and data resolution."""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rigwatch.data import (
    FEATURES,
    LABEL_COLUMNS,
    SENSOR_COLUMNS,
    UCI_FILES,
    Dataset,
    download,
    load_csv,
    load_uci,
    mean_per_cycle,
    read_profile,
    resolve_data,
    write_csv,
)
from rigwatch.exceptions import DataError

ONE_HZ = ("CE", "CP", "SE", "TS1", "TS2", "TS3", "TS4", "VS1")
HIGH_RATE = tuple(stem for stem in UCI_FILES.values() if stem not in ONE_HZ)
COLUMN_OF = {stem: column for column, stem in UCI_FILES.items()}


def _write_constant_rows(path: Path, means: np.ndarray, width: int = 2) -> None:
    # Every row repeats its mean, so the row mean is that value bit for bit.
    with open(path, "w") as handle:
        for m in means.tolist():
            handle.write("\t".join([repr(m)] * width) + "\n")


def _uci_folder(folder: Path, shared: Path, real) -> Path:
    """A UCI folder: the real 1 Hz files and labels, constant stand-ins for the rest."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (*[f"{s}.txt" for s in ONE_HZ], "profile.txt"):
        (folder / name).symlink_to(shared / "raw_1hz" / name)
    for stem in HIGH_RATE:
        j = SENSOR_COLUMNS.index(COLUMN_OF[stem])
        _write_constant_rows(folder / f"{stem}.txt", real.sensors[:, j])
    return folder


def _zip_folder(folder: Path, target: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, prefix + path.name)
    return target


def _small_uci(folder: Path, n: int = 4, seed: int = 0) -> tuple[Path, np.ndarray]:
    """A tiny synthetic UCI folder; returns it and the expected sensor means."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    means = rng.uniform(1, 100, size=(n, len(SENSOR_COLUMNS)))
    for j, column in enumerate(SENSOR_COLUMNS):
        _write_constant_rows(folder / f"{UCI_FILES[column]}.txt", means[:, j], width=4)
    with open(folder / "profile.txt", "w") as handle:
        for _ in range(n):
            handle.write("3\t100\t0\t130\t1\n")
    return folder, means


@pytest.fixture(scope="module")
def uci_folder(tmp_path_factory, hydraulic_dir, real_dataset) -> Path:
    return _uci_folder(tmp_path_factory.mktemp("uci") / "data", hydraulic_dir, real_dataset)


# --- raw files against the per-cycle CSV -------------------------------------------


@pytest.mark.parametrize("stem", ONE_HZ)
def test_mean_per_cycle_of_each_1hz_file_reproduces_its_csv_column(stem, hydraulic_dir, real_dataset):
    means = mean_per_cycle(hydraulic_dir / "raw_1hz" / f"{stem}.txt")
    column = real_dataset.sensors[:, SENSOR_COLUMNS.index(COLUMN_OF[stem])]
    assert means.shape == (2205,)
    np.testing.assert_allclose(means, column, rtol=1e-9, atol=0)


def test_profile_reproduces_the_label_columns_exactly(hydraulic_dir, real_dataset):
    labels = read_profile(hydraulic_dir / "raw_1hz" / "profile.txt")
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, real_dataset.labels)


@pytest.mark.parametrize(("file", "column"), [("FS1", "fsa_vol_flow"), ("PS2", "psb_bar")])
def test_high_rate_samples_reproduce_rows_0_and_1_of_the_csv(file, column, hydraulic_dir, real_dataset):
    means = mean_per_cycle(hydraulic_dir / "raw_highrate_sample" / f"{file}_first2rows.txt")
    expected = real_dataset.sensors[:2, SENSOR_COLUMNS.index(column)]
    np.testing.assert_allclose(means, expected, rtol=1e-9, atol=0)


def test_real_csv_has_the_documented_shape_and_class_counts(real_dataset):
    assert len(real_dataset) == 2205
    assert real_dataset.cycle.tolist() == list(range(2205))
    assert np.bincount(real_dataset.cool_cond)[[3, 20, 100]].tolist() == [732, 732, 741]
    assert real_dataset.source.startswith("csv:")


# --- mean_per_cycle on streams and bad input ---------------------------------------


def test_mean_per_cycle_reads_binary_and_text_streams_alike():
    text = "1\t2\t3\n4\t5\t7.5\n"
    from_bytes = mean_per_cycle(io.BytesIO(text.encode()))
    from_text = mean_per_cycle(io.StringIO(text))
    np.testing.assert_array_equal(from_bytes, [2.0, 5.5])
    np.testing.assert_array_equal(from_text, from_bytes)


def test_mean_per_cycle_of_crlf_file_matches_lf(tmp_path):
    path = tmp_path / "X.txt"
    path.write_bytes(b"1\t2\r\n3\t4\r\n")
    np.testing.assert_array_equal(mean_per_cycle(path), [1.5, 3.5])


def test_mean_per_cycle_spans_many_chunks_in_order():
    rows = np.arange(1000, dtype=np.float64)
    stream = io.StringIO("".join(f"{r}\t{r + 1}\n" for r in rows))
    np.testing.assert_array_equal(mean_per_cycle(stream), rows + 0.5)


def test_ragged_rows_raise_data_error_naming_the_file():
    stream = io.BytesIO(b"1\t2\n" * 200 + b"1\t2\t3\n")
    with pytest.raises(DataError, match=r"PS9\.txt: row 201 has 3 values, expected 2"):
        mean_per_cycle(stream, name="PS9.txt")


def test_non_numeric_value_raises_data_error_naming_file_and_rows():
    with pytest.raises(DataError, match=r"FS7\.txt: row 2: 'x' is not a number"):
        mean_per_cycle(io.BytesIO(b"1\t2\n1\tx\n"), name="FS7.txt")


def test_empty_file_raises_data_error(tmp_path):
    empty = tmp_path / "TS9.txt"
    empty.write_text("")
    with pytest.raises(DataError, match=r"TS9\.txt: no rows"):
        mean_per_cycle(empty)


def test_missing_file_raises_data_error_naming_it(tmp_path):
    with pytest.raises(DataError, match=r"nope\.txt"):
        mean_per_cycle(tmp_path / "nope.txt")


def test_profile_with_wrong_column_count_is_rejected():
    with pytest.raises(DataError, match=r"profile\.txt: 4 columns, expected 5"):
        read_profile(io.BytesIO(b"3\t100\t0\t130\n"), name="profile.txt")


def test_profile_with_fractional_label_is_rejected():
    with pytest.raises(DataError, match=r"valve_cond_y=99\.5"):
        read_profile(io.BytesIO(b"3\t99.5\t0\t130\t1\n"), name="profile.txt")


# --- load_uci -------------------------------------------------------------------------


def _assert_matches_csv(dataset: Dataset, real: Dataset) -> None:
    np.testing.assert_array_equal(dataset.labels, real.labels)
    np.testing.assert_array_equal(dataset.cycle, np.arange(len(real)))
    np.testing.assert_allclose(dataset.sensors, real.sensors, rtol=1e-9, atol=0)


def test_load_uci_folder_reproduces_the_csv(uci_folder, real_dataset):
    seen: list[str] = []
    dataset = load_uci(uci_folder, progress=seen.append)
    _assert_matches_csv(dataset, real_dataset)
    assert dataset.source == f"uci:{uci_folder}"
    assert seen[0] == "profile.txt"
    assert sorted(seen[1:]) == sorted(f"{s}.txt" for s in UCI_FILES.values())


def test_load_uci_zip_with_subfolder_reproduces_the_csv(uci_folder, real_dataset, tmp_path):
    archive = _zip_folder(uci_folder, tmp_path / "data.zip", prefix="hydraulic/")
    _assert_matches_csv(load_uci(archive), real_dataset)


def test_load_uci_finds_a_zip_nested_in_a_zip(tmp_path):
    folder, means = _small_uci(tmp_path / "small")
    inner = _zip_folder(folder, tmp_path / "data.zip")
    outer = tmp_path / "download.zip"
    with zipfile.ZipFile(outer, "w") as archive:
        archive.write(inner, "data.zip")
        archive.writestr("__MACOSX/._data.zip", b"junk")
    np.testing.assert_array_equal(load_uci(outer).sensors, means)


def test_load_uci_missing_file_names_it(tmp_path):
    folder, _ = _small_uci(tmp_path / "small")
    (folder / "EPS1.txt").unlink()
    with pytest.raises(DataError, match=r"missing EPS1\.txt"):
        load_uci(folder)


def test_load_uci_row_count_mismatch_names_the_file_and_counts(tmp_path):
    folder, means = _small_uci(tmp_path / "small", n=4)
    _write_constant_rows(folder / "FS2.txt", means[:3, 0])
    with pytest.raises(DataError, match=r"FS2\.txt: 3 rows, but profile\.txt has 4"):
        load_uci(folder)


def test_load_uci_of_a_missing_path_says_so(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_uci(tmp_path / "absent")


# --- load_csv / write_csv ---------------------------------------------------------


def _csv(tmp_path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path = tmp_path / "cycles.csv"
    lines = [",".join(header)] + [",".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_load_csv_missing_column_names_the_column_and_file(tmp_path):
    header = ["cycle", *SENSOR_COLUMNS, *LABEL_COLUMNS]
    header.remove("tsc_temp")
    path = _csv(tmp_path, header, [[0] * len(header)])
    with pytest.raises(DataError, match=r"cycles\.csv: missing column\(s\) tsc_temp"):
        load_csv(path)


def test_load_csv_non_numeric_value_names_line_and_column(tmp_path):
    header = ["cycle", *SENSOR_COLUMNS, *LABEL_COLUMNS]
    row: list[object] = [0] * len(header)
    row[header.index("vs_vib")] = "n/a"
    path = _csv(tmp_path, header, [row])
    with pytest.raises(DataError, match=r"line 2 vs_vib='n/a', expected a number"):
        load_csv(path)


def test_load_csv_accepts_any_column_order_and_no_cycle(tmp_path):
    header = [*reversed(LABEL_COLUMNS), *reversed(SENSOR_COLUMNS), "extra"]
    rows = [[100, 90, 0, 100, 20, *range(17), "x"], [100, 90, 0, 100, 3, *range(17), "y"]]
    dataset = load_csv(_csv(tmp_path, header, rows))
    assert dataset.cycle.tolist() == [0, 1]
    assert dataset.cool_cond.tolist() == [20, 3]
    assert dataset.row(0)["psa_bar"] == 16.0


@settings(max_examples=25, deadline=None)
@given(
    sensors=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 5), st.just(17)),
        elements=st.floats(-1e300, 1e300, allow_nan=False),
    )
)
def test_write_csv_then_load_csv_is_bit_exact(tmp_path_factory, sensors):
    n = len(sensors)
    labels = np.tile([3, 100, 0, 130, 1], (n, 1))
    original = Dataset(np.arange(n) + 7, sensors, labels, "test")
    path = write_csv(original, tmp_path_factory.mktemp("csv") / "cycles.csv")
    loaded = load_csv(path)
    assert loaded.sha256() == original.sha256()
    np.testing.assert_array_equal(loaded.cycle, original.cycle)


# --- Dataset ---------------------------------------------------------------------------


def test_dataset_features_drop_cool_eff_pct_in_order(real_dataset):
    x = real_dataset.features()
    assert x.shape == (2205, 16)
    for j, name in enumerate(FEATURES):
        np.testing.assert_array_equal(x[:, j], real_dataset.sensors[:, SENSOR_COLUMNS.index(name)])


def test_dataset_is_read_only_and_validates_shapes():
    ds = Dataset(np.arange(2), np.zeros((2, 17)), np.zeros((2, 5)), "t")
    with pytest.raises(ValueError, match="read-only"):
        ds.sensors[0, 0] = 1.0
    with pytest.raises(DataError, match=r"Dataset\.sensors: expected shape \(2, 17\)"):
        Dataset(np.arange(2), np.zeros((2, 16)), np.zeros((2, 5)), "t")


def test_dataset_sha256_changes_with_any_value():
    ds = Dataset(np.arange(2), np.zeros((2, 17)), np.zeros((2, 5)), "t")
    labels = np.zeros((2, 5))
    labels[1, 4] = 1
    assert ds.sha256() != Dataset(ds.cycle, ds.sensors, labels, "t").sha256()
    assert ds.sha256() == Dataset(ds.cycle, ds.sensors, ds.labels, "other").sha256()


# --- download verification (no network: file:// URLs) --------------------------------


def test_download_archive_fetches_verifies_and_renames(uci_folder, tmp_path):
    archive = _zip_folder(uci_folder, tmp_path / "served.zip")
    dest = tmp_path / "cache" / download.ARCHIVE_NAME
    assert download.download_archive(dest, url=archive.as_uri()) == dest
    assert dest.is_file()
    assert not dest.with_name(dest.name + ".part").exists()


def test_download_of_a_different_archive_names_the_bad_member(uci_folder, tmp_path):
    folder = tmp_path / "tampered"
    folder.mkdir()
    for path in uci_folder.iterdir():
        (folder / path.name).symlink_to(path.resolve())
    (folder / "CE.txt").unlink()
    (folder / "CE.txt").write_text("1\t2\n")
    archive = _zip_folder(folder, tmp_path / "served.zip")
    dest = tmp_path / "cache" / download.ARCHIVE_NAME
    with pytest.raises(DataError, match=r"member CE\.txt has sha256"):
        download.download_archive(dest, url=archive.as_uri())
    assert not dest.exists()
    assert not dest.with_name(dest.name + ".part").exists()


def test_unreachable_url_raises_download_error(tmp_path):
    missing = (tmp_path / "nowhere.zip").as_uri()
    with pytest.raises(download.DownloadError, match="could not download"):
        download.download_archive(tmp_path / "a.zip", url=missing)


# --- resolve_data -----------------------------------------------------------------------


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    monkeypatch.delenv("RIGWATCH_DATA", raising=False)
    monkeypatch.setenv("RIGWATCH_CACHE_DIR", str(tmp_path / "env-cache"))

    def offline(*args, **kwargs):
        raise download.DownloadError("could not download test: <urlopen error offline>")

    # No test may reach the network, whatever it asks for.
    monkeypatch.setattr(download, "download_archive", offline)


def test_resolve_explicit_csv_path(no_env, hydraulic_dir):
    dataset = resolve_data(hydraulic_dir / "hydraulic_cycles.csv")
    assert dataset.source == f"csv:{hydraulic_dir / 'hydraulic_cycles.csv'}"


def test_resolve_folder_with_the_csv_reads_the_csv(no_env, hydraulic_dir):
    assert resolve_data(str(hydraulic_dir)).source.endswith("hydraulic_cycles.csv")


def test_resolve_reads_rigwatch_data_env(no_env, monkeypatch, hydraulic_dir):
    monkeypatch.setenv("RIGWATCH_DATA", str(hydraulic_dir / "hydraulic_cycles.csv"))
    assert len(resolve_data()) == 2205


def test_resolve_explicit_uci_folder(no_env, uci_folder, real_dataset):
    dataset = resolve_data(uci_folder)
    assert dataset.source.startswith("uci:")
    _assert_matches_csv(dataset, real_dataset)


def test_resolve_explicit_missing_path_is_an_error_not_a_fallback(no_env, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        resolve_data(tmp_path / "missing.csv")


def test_resolve_offline_without_download_falls_back_to_the_simulator(no_env, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="rigwatch.data.resolve"):
        dataset = resolve_data(cache_dir=tmp_path / "empty", allow_download=False)
    assert dataset.source.startswith("simulator(seed=0")
    assert len(dataset) == 2205
    assert "downloading is disabled" in caplog.text
    assert "RIGWATCH_DATA" in caplog.text


def test_resolve_download_failure_warns_with_the_reason_then_simulates(no_env, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="rigwatch.data.resolve"):
        dataset = resolve_data(cache_dir=tmp_path / "empty")
    assert dataset.source.startswith("simulator(")
    assert "offline" in caplog.text
    assert "set RIGWATCH_DATA" in caplog.text


def test_resolve_uses_a_cached_archive_then_its_cached_means(no_env, uci_folder, real_dataset, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    _zip_folder(uci_folder, cache / download.ARCHIVE_NAME)
    first = resolve_data(cache_dir=cache)
    assert first.source.startswith("uci:")
    _assert_matches_csv(first, real_dataset)
    second = resolve_data(cache_dir=cache)
    assert second.source.startswith("csv:")
    assert second.sha256() == first.sha256()


def test_resolve_rejects_a_cached_archive_with_a_bad_member(no_env, tmp_path):
    folder, _ = _small_uci(tmp_path / "small")
    cache = tmp_path / "cache"
    cache.mkdir()
    _zip_folder(folder, cache / download.ARCHIVE_NAME)
    with pytest.raises(DataError, match=r"member profile\.txt has sha256"):
        resolve_data(cache_dir=cache)
