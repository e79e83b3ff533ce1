"""The model store: every registered package in a folder of its own, named by its version.

::

    <root>/<version>/model.txt, metadata.json, reference.json   the package, as registered
    <root>/<version>/registration.json                           who registered it, when, why

A version is the hash of the model text (:func:`rigwatch.model.model_version`),
so the store is content-addressed: a folder is written once, under a temporary
name in the root, and renamed into place, so a reader never sees half a
package, and it is never overwritten. The root is a plain folder and may live
on shared storage (``RIGWATCH_MODEL_STORE``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rigwatch.exceptions import ModelError
from rigwatch.model.package import METADATA_FILE, MODEL_FILE, REFERENCE_FILE, ModelPackage

__all__ = ["PACKAGE_FILES", "REGISTRATION_FILE", "ModelStore", "Registration"]

log = logging.getLogger("rigwatch.lifecycle")

#: The files a package is made of, copied into the store.
PACKAGE_FILES = (MODEL_FILE, METADATA_FILE, REFERENCE_FILE)
REGISTRATION_FILE = "registration.json"
_VERSION = re.compile(r"[0-9a-f]{12}")
#: The shortest prefix :meth:`ModelStore.get` accepts for a version.
MIN_PREFIX = 4


@dataclass(frozen=True)
class Registration:
    """A version in the store: what the package says about itself and who registered it.

    Examples
    --------
    ::

        reg = ModelStore(Path(".rigwatch/store")).get("3459")
        reg.version, reg.registered_by, reg.test_metrics["accuracy"]
    """

    name: str
    version: str
    features: tuple[str, ...]
    classes: tuple[str, ...]
    #: sha256 of the training rows (``metadata.json`` lineage), None when the package has none.
    training_data_hash: str | None
    params: Mapping[str, Any]
    test_metrics: Mapping[str, float]
    registered_by: str
    #: Epoch milliseconds.
    registered_at: int
    note: str
    path: Path = field(compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``path`` as text)."""
        return {
            "name": self.name,
            "version": self.version,
            "features": list(self.features),
            "classes": list(self.classes),
            "training_data_hash": self.training_data_hash,
            "params": dict(self.params),
            "test_metrics": dict(self.test_metrics),
            "registered_by": self.registered_by,
            "registered_at": self.registered_at,
            "note": self.note,
            "path": str(self.path),
        }


def _digests(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in PACKAGE_FILES}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: not readable: {exc}") from exc
    if not isinstance(value, dict):
        raise ModelError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


class ModelStore:
    """Registered model packages under *root*, one folder per version, never overwritten.

    Parameters
    ----------
    root
        The store's folder (created on the first registration).

    Examples
    --------
    ::

        store = ModelStore(settings.model_store)
        reg = store.register(Path(".rigwatch/models/cooler"), note="first", actor="ana")
        package = store.load(reg.version[:6])     # a unique prefix will do
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r})"

    # ------------------------------------------------------------------ writing

    def register(
        self, path: str | os.PathLike[str], *, name: str | None = None, note: str = "", actor: str
    ) -> Registration:
        """Copy the package at *path* into the store; the registration of its version.

        Registering the identical package again changes nothing and returns the
        existing registration (its name, note and author stay the first ones);
        :meth:`put` tells the two cases apart.

        Raises
        ------
        ModelError
            *path* is not a valid package, or its version is already registered
            with different file contents.
        """
        return self.put(path, name=name, note=note, actor=actor)[0]

    def put(
        self, path: str | os.PathLike[str], *, name: str | None = None, note: str = "", actor: str
    ) -> tuple[Registration, bool]:
        """:meth:`register`, and whether this call added the version (False: it was there, identical)."""
        source = Path(path)
        if not actor:
            raise ModelError("register: actor is empty; say who registers the package")
        self.root.mkdir(parents=True, exist_ok=True)
        incoming = self.root / f".incoming-{uuid.uuid4().hex}"
        incoming.mkdir()
        try:
            for file in PACKAGE_FILES:
                if not (source / file).is_file():
                    raise ModelError(f"{source}: no {file}; a model package needs {', '.join(PACKAGE_FILES)}")
                shutil.copyfile(source / file, incoming / file)
            # Loaded from the copy: what enters the store is what was checked.
            package = ModelPackage.load(incoming)
            registration = {
                "name": name or package.name,
                "version": package.version,
                "registered_by": actor,
                "registered_at": int(time.time() * 1000),
                "note": note,
                "source": str(source.resolve()),
            }
            (incoming / REGISTRATION_FILE).write_text(json.dumps(registration, indent=2) + "\n")
            for file in (*PACKAGE_FILES, REGISTRATION_FILE):
                (incoming / file).chmod(0o444)  # a registered version is not edited in place
            target = self.root / package.version
            if not target.exists():
                try:
                    os.rename(incoming, target)
                    return self._registration(target), True
                except OSError:
                    if not target.exists():
                        raise
                    # Another registration of the same version won the rename: compare with it.
            self._same_files(incoming, target, package.version)
            return self._registration(target), False
        finally:
            if incoming.exists():
                shutil.rmtree(incoming, ignore_errors=True)

    def _same_files(self, incoming: Path, target: Path, version: str) -> None:
        ours, theirs = _digests(incoming), _digests(target)
        differ = [f for f in PACKAGE_FILES if ours[f] != theirs[f]]
        if differ:
            existing = self._registration(target)
            raise ModelError(
                f"model version {version} is already in the store ({target}, registered by"
                f" {existing.registered_by}) with a different {', '.join(differ)}; the store never"
                " overwrites a version (same model text, other metadata: e.g. retrained with the same seed)"
            )

    # ------------------------------------------------------------------ reading

    def resolve(self, version: str) -> str:
        """The full version that *version* (a version or a unique prefix of at least 4 digits) names.

        Raises
        ------
        ModelError
            Not a version, unknown (naming the closest registered ones), or an ambiguous prefix.
        """
        wanted = version.strip().lower()
        if not re.fullmatch(rf"[0-9a-f]{{{MIN_PREFIX},12}}", wanted):
            raise ModelError(
                f"model version {version!r}: expected 12 hex digits (or a unique prefix of at least"
                f" {MIN_PREFIX}), like the versions `rigwatch models list` shows"
            )
        known = self.versions()
        matches = [v for v in known if v.startswith(wanted)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ModelError(
                f"model version prefix {version!r} matches {len(matches)} versions"
                f" ({', '.join(matches)}); give more digits"
            )
        close = difflib.get_close_matches(wanted, known, n=5, cutoff=0.4) or known[-5:]
        listed = f"; close: {', '.join(close)}" if close else "; the store is empty"
        raise ModelError(f"model version {version!r} is not in the store {self.root}{listed}")

    def get(self, version: str) -> Registration:
        """The registration of *version* (or a unique prefix); see :meth:`resolve` for the errors."""
        return self._registration(self.root / self.resolve(version))

    def path(self, version: str) -> Path:
        """The package folder of *version* (or a unique prefix)."""
        return self.root / self.resolve(version)

    def versions(self) -> list[str]:
        """Every registered version, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if _VERSION.fullmatch(p.name) and (p / REGISTRATION_FILE).exists()
        )

    def list(self) -> list[Registration]:
        """Every registration, oldest first; a folder that cannot be read is logged and left out."""
        out = []
        for version in self.versions():
            try:
                out.append(self._registration(self.root / version))
            except ModelError as exc:
                log.warning("model store: %s left out: %s", version, exc)
        return sorted(out, key=lambda r: (r.registered_at, r.version))

    def load(self, version: str) -> ModelPackage:
        """The package of *version* (or a unique prefix).

        Raises
        ------
        ModelError
            Unknown version, or its folder no longer holds a valid package of that version.
        """
        folder = self.path(version)
        package = ModelPackage.load(folder)
        if package.version != folder.name:
            raise ModelError(f"{folder}: holds model version {package.version}, not {folder.name}")
        return package

    def _registration(self, folder: Path) -> Registration:
        meta = _read_json(folder / METADATA_FILE)
        reg = _read_json(folder / REGISTRATION_FILE)
        lineage = meta.get("training_data")
        return Registration(
            name=str(reg.get("name") or meta.get("name", "")),
            version=folder.name,
            features=tuple(meta.get("features", ())),
            classes=tuple(meta.get("classes", ())),
            training_data_hash=lineage.get("sha256") if isinstance(lineage, dict) else None,
            params=dict(meta.get("params", {})),
            test_metrics=dict(meta.get("test_metrics", {})),
            registered_by=str(reg.get("registered_by", "")),
            registered_at=int(reg.get("registered_at", 0)),
            note=str(reg.get("note", "")),
            path=folder,
        )
