"""The model store: registration copies a checked package, never overwrites, finds versions by prefix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rigwatch.exceptions import ModelError
from rigwatch.lifecycle.store import REGISTRATION_FILE, ModelStore
from rigwatch.model import ModelPackage


@pytest.fixture
def package_dir(tmp_path: Path, real_model: ModelPackage) -> Path:
    return real_model.write(tmp_path / "package")


def test_register_copies_the_package_and_records_who_when_and_why(
    tmp_path: Path, package_dir: Path, real_model: ModelPackage
) -> None:
    store = ModelStore(tmp_path / "store")

    reg = store.register(package_dir, name="cooler", note="first model", actor="ana")

    assert reg.version == real_model.version
    assert reg.path == tmp_path / "store" / real_model.version
    assert (reg.name, reg.registered_by, reg.note) == ("cooler", "ana", "first model")
    assert reg.registered_at > 0
    assert reg.features == real_model.features and reg.classes == ("3", "20", "100")
    assert reg.training_data_hash == real_model.metadata["training_data"]["sha256"]
    assert reg.params["num_leaves"] == 4 and reg.test_metrics["accuracy"] > 0.99
    assert store.load(reg.version).version == real_model.version
    assert [r.version for r in store.list()] == [real_model.version]
    assert not [p for p in (tmp_path / "store").iterdir() if p.name.startswith(".")], "temporary folder left"


def test_registering_the_identical_package_again_changes_nothing(tmp_path: Path, package_dir: Path) -> None:
    store = ModelStore(tmp_path / "store")
    first, added = store.put(package_dir, note="first", actor="ana")

    again, added_again = store.put(package_dir, note="second", actor="ben")

    assert added and not added_again
    assert again == first and (again.note, again.registered_by) == ("first", "ana")
    assert store.versions() == [first.version]


def test_the_same_version_with_other_files_is_refused_and_the_stored_one_kept(
    tmp_path: Path, package_dir: Path
) -> None:
    store = ModelStore(tmp_path / "store")
    reg = store.register(package_dir, actor="ana")
    stored = (reg.path / "metadata.json").read_bytes()
    retrained = tmp_path / "retrained"
    shutil.copytree(package_dir, retrained)
    metadata = json.loads((retrained / "metadata.json").read_text())
    (retrained / "metadata.json").write_text(
        json.dumps(metadata | {"created_at": "2030-01-01T00:00:00+00:00"})
    )

    with pytest.raises(ModelError) as info:
        store.register(retrained, actor="ben")

    message = str(info.value)
    assert reg.version in message and "metadata.json" in message and "never overwrites" in message
    assert (reg.path / "metadata.json").read_bytes() == stored
    assert store.get(reg.version).registered_by == "ana"


def test_an_invalid_package_does_not_enter_the_store(tmp_path: Path, package_dir: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(package_dir, broken)
    (broken / "model.txt").write_text("not a model")
    store = ModelStore(tmp_path / "store")

    with pytest.raises(ModelError, match="not a LightGBM model"):
        store.register(broken, actor="ana")
    (broken / "reference.json").unlink()
    with pytest.raises(ModelError, match=r"reference\.json"):
        store.register(broken, actor="ana")

    assert store.versions() == [] and list((tmp_path / "store").iterdir()) == []


def test_a_registered_version_is_read_only(tmp_path: Path, package_dir: Path) -> None:
    reg = ModelStore(tmp_path / "store").register(package_dir, actor="ana")
    for name in ("model.txt", "metadata.json", "reference.json", REGISTRATION_FILE):
        assert (reg.path / name).stat().st_mode & 0o222 == 0, name


def test_a_unique_prefix_finds_the_version(tmp_path: Path, package_dir: Path) -> None:
    store = ModelStore(tmp_path / "store")
    reg = store.register(package_dir, actor="ana")

    assert store.get(reg.version[:4]).version == reg.version
    assert store.get(reg.version.upper()).version == reg.version
    assert store.load(reg.version[:6]).version == reg.version


def _fake_version(store: ModelStore, version: str) -> None:
    folder = store.root / version
    folder.mkdir(parents=True)
    (folder / REGISTRATION_FILE).write_text("{}")


def test_an_unknown_version_is_named_with_the_closest_registered_ones(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    for version in ("3459619ba192", "3459619ba1ff", "a535c1cb9d05"):
        _fake_version(store, version)

    with pytest.raises(ModelError) as info:
        store.get("3459619ba193")
    message = str(info.value)
    assert "'3459619ba193' is not in the store" in message
    assert "3459619ba192" in message and "3459619ba1ff" in message

    with pytest.raises(ModelError, match=r"prefix '3459' matches 2 versions .*give more digits"):
        store.get("3459")
    with pytest.raises(ModelError, match=r"model version 'v1': expected 12 hex digits"):
        store.get("v1")
    with pytest.raises(ModelError, match="the store is empty"):
        ModelStore(tmp_path / "empty").get("3459619ba192")
