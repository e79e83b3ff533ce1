"""Training on the real data, the model package and its reference profile."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rigwatch.data import CLASS_LABELS, FEATURES, Dataset, simulate
from rigwatch.exceptions import DataError, ModelError
from rigwatch.model import ModelPackage, assign_bins, stratified_split, train, train_and_write
from rigwatch.model.package import METADATA_FILE, MODEL_FILE, REFERENCE_FILE


@pytest.fixture(scope="module")
def written(real_model, tmp_path_factory) -> Path:
    return real_model.write(tmp_path_factory.mktemp("pkg") / "cooler")


# --- quality on the real data ------------------------------------------------------


def test_model_meets_the_targets_on_the_held_out_test_rows(real_model):
    scores = real_model.metadata["test_metrics"]
    assert scores["log_loss"] <= 0.01
    assert scores["accuracy"] >= 0.995
    assert scores["mcc"] >= 0.99


def test_metadata_is_complete(real_model, real_dataset):
    meta = real_model.metadata
    assert meta["name"] == real_model.name == "cooler-lgbm"
    assert meta["features"] == list(FEATURES) == list(real_model.features)
    assert meta["classes"] == ["3", "20", "100"] == list(real_model.classes)
    assert meta["target"] == "cool_cond_y"
    assert meta["training_data"]["sha256"] == real_dataset.sha256()
    assert meta["training_data"]["source"] == real_dataset.source
    assert meta["row_counts"] == {"train": 1323, "validation": 440, "test": 442}
    assert meta["split"]["seed"] == 42
    assert meta["params"]["objective"] == "multiclass"
    assert meta["params"]["deterministic"] is True
    assert 0 < meta["best_iteration"] < meta["max_rounds"]
    assert (
        set(meta["test_metrics"])
        == set(meta["validation_metrics"])
        == {
            "log_loss",
            "accuracy",
            "mcc",
        }
    )
    assert meta["lightgbm_version"]
    assert meta["created_at"].endswith("+00:00")
    assert meta["version"] == real_model.version and len(real_model.version) == 12


def test_same_data_and_seed_give_the_same_version(real_dataset, real_model):
    again = train(real_dataset, seed=42, num_threads=1)
    assert again.version == real_model.version
    assert train(real_dataset, seed=7, num_threads=1).version != real_model.version


# --- package files ------------------------------------------------------------------


def test_write_then_load_gives_identical_probabilities_and_version(real_model, written, real_dataset):
    assert sorted(p.name for p in written.iterdir()) == [METADATA_FILE, MODEL_FILE, REFERENCE_FILE]
    loaded = ModelPackage.load(written)
    x = real_dataset.features()
    assert loaded.version == real_model.version
    assert loaded.metadata == real_model.metadata
    assert loaded.reference == real_model.reference
    np.testing.assert_array_equal(loaded.predict_proba(x), real_model.predict_proba(x))


def test_predict_proba_shapes_missing_values_and_float32(real_model, real_dataset):
    x = real_dataset.features()[:5]
    proba = real_model.predict_proba(x)
    assert proba.shape == (5, 3) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(real_model.predict_proba(x.astype(np.float32)), proba, atol=1e-4)
    assert real_model.predict_proba(x[0]).shape == (1, 3)
    holes = x.copy()
    holes[:, 3] = np.nan
    assert np.isfinite(real_model.predict_proba(holes)).all()
    assert real_model.predict_proba(np.empty((0, 16))).shape == (0, 3)
    with pytest.raises(DataError, match=r"expected \(n, 16\)"):
        real_model.predict_proba(np.zeros((2, 17)))


def test_load_of_missing_files_names_the_file(written, tmp_path):
    with pytest.raises(ModelError, match="not a folder"):
        ModelPackage.load(tmp_path / "none")
    for name in (MODEL_FILE, METADATA_FILE, REFERENCE_FILE):
        copy = tmp_path / name.replace(".", "_")
        copy.mkdir()
        for path in written.iterdir():
            if path.name != name:
                (copy / path.name).write_bytes(path.read_bytes())
        with pytest.raises(ModelError, match=f"{name}: missing"):
            ModelPackage.load(copy)


def _copy(written: Path, target: Path) -> Path:
    target.mkdir()
    for path in written.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def test_load_rejects_features_that_differ_from_the_booster(written, tmp_path):
    copy = _copy(written, tmp_path / "pkg")
    meta = json.loads((copy / METADATA_FILE).read_text())
    meta["features"] = list(reversed(meta["features"]))
    (copy / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"features .* differ from model\.txt"):
        ModelPackage.load(copy)


def test_load_rejects_a_model_from_another_training(written, tmp_path, real_dataset):
    copy = _copy(written, tmp_path / "pkg")
    other = train(simulate(300, seed=1), seed=1, num_threads=1)
    other.write(tmp_path / "other")
    (copy / MODEL_FILE).write_bytes((tmp_path / "other" / MODEL_FILE).read_bytes())
    with pytest.raises(ModelError, match="different models"):
        ModelPackage.load(copy)


def test_load_rejects_invalid_json_naming_the_file(written, tmp_path):
    copy = _copy(written, tmp_path / "pkg")
    (copy / REFERENCE_FILE).write_text("{not json")
    with pytest.raises(ModelError, match=r"reference\.json: not readable JSON"):
        ModelPackage.load(copy)


# --- reference profile ---------------------------------------------------------------


def test_reference_profile_is_small_strict_json(written):
    assert (written / REFERENCE_FILE).stat().st_size < 200_000
    json.dumps(json.loads((written / REFERENCE_FILE).read_text()), allow_nan=False)


def test_reference_profile_content(real_model, real_dataset):
    ref = real_model.reference
    n_train, n_test = 1323, 442
    assert ref["training_rows"] == n_train
    assert list(ref["features"]) == list(FEATURES)
    for name, profile in ref["features"].items():
        edges = profile["inner_edges"]
        assert 1 <= len(edges) <= 9 and edges == sorted(set(edges)), name
        assert len(profile["counts"]) == len(edges) + 1
        assert sum(profile["counts"]) == n_train
        assert profile["min"] <= edges[0] and edges[-1] <= profile["max"]
        column = real_dataset.features()[:, FEATURES.index(name)]
        assert column.min() <= profile["min"] and profile["max"] <= column.max()
    # A feature without ties gets ten bins of about a tenth of the rows each.
    assert len(ref["features"]["tsa_temp"]["counts"]) == 10
    assert max(ref["features"]["tsa_temp"]["fractions"]) < 0.11
    sample = ref["sample"]
    assert sample["rows"] == 1000 and len(sample["labels"]) == 1000
    assert all(len(v) == 1000 for v in sample["values"].values())
    assert set(ref["class_priors"]) == set(CLASS_LABELS)
    assert sum(ref["class_priors"].values()) == pytest.approx(1.0)
    test = ref["test_predictions"]
    assert sum(test["predicted_class"]["counts"].values()) == n_test
    assert sum(test["confidence_counts"]) == n_test
    assert len(test["confidence_edges"]) == len(test["confidence_counts"]) + 1
    importance = ref["feature_importance"]["values"]
    assert list(importance) == list(FEATURES)
    assert sum(importance.values()) == pytest.approx(1.0)


def test_assign_bins_is_right_closed_with_open_outer_bins():
    edges = [0.0, 1.0, 2.0]
    values = np.array([-np.inf, -1.0, 0.0, 0.5, 1.0, 2.0, 2.5, 1e9])
    assert assign_bins(values, edges).tolist() == [0, 0, 0, 1, 1, 2, 3, 3]


# --- split, other data, errors ------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(counts=st.lists(st.integers(5, 60), min_size=2, max_size=4), seed=st.integers(0, 10**6))
def test_stratified_split_partitions_rows_and_keeps_class_shares(counts, seed):
    y = np.repeat(np.arange(len(counts)), counts)
    parts = stratified_split(y, seed=seed)
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(len(y)))
    for cls, n in enumerate(counts):
        sizes = [int((y[p] == cls).sum()) for p in parts]
        assert sizes[0] == round(0.6 * n) and sizes[1] == round(0.2 * n)
    assert all(np.array_equal(a, b) for a, b in zip(parts, stratified_split(y, seed=seed), strict=True))


def test_training_on_simulated_data_works_without_the_real_data():
    package = train(simulate(600, seed=4), seed=4, num_threads=1)
    assert package.metadata["training_data"]["source"].startswith("simulator(")
    assert package.metadata["test_metrics"]["accuracy"] > 0.9


def test_training_rejects_unknown_classes_and_missing_classes():
    ds = simulate(100, seed=0)
    labels = ds.labels.copy()
    labels[0, 0] = 50
    with pytest.raises(DataError, match=r"cool_cond_y has values \[50\]"):
        train(Dataset(ds.cycle, ds.sensors, labels, "bad"))
    only_two = ds.take(np.flatnonzero(ds.cool_cond != 100))
    with pytest.raises(DataError, match="at least 10 rows of every class"):
        train(only_two)


def test_train_and_write_reports_source_metrics_and_version(hydraulic_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RIGWATCH_DATA", raising=False)
    package = train_and_write(hydraulic_dir / "hydraulic_cycles.csv", tmp_path / "pkg")
    out = capsys.readouterr().out
    assert "csv:" in out and "2205 rows" in out
    assert "best iteration" in out and "log loss" in out and "MCC" in out
    assert package.version in out and str(tmp_path / "pkg") in out
    assert ModelPackage.load(tmp_path / "pkg").version == package.version
