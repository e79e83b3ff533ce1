"""API tokens: who a bearer token belongs to and which role it has, stored hashed.

The file (``RIGWATCH_CONSOLE_TOKENS_FILE``, JSON, mode 0600) holds one entry per
principal: its name, role, when it was added, and the SHA-256 of its token. The
token itself is printed once by ``rigwatch console token add`` and never stored.

A plain SHA-256 is enough here, unlike for passwords: every token is 256 random
bits made by :func:`new_token`, so there is nothing to guess from its hash, and a
salt or a slow hash would only slow each request down.

::

    {"version": 1, "tokens": [
        {"principal": "ana", "role": "operator", "created": 1764748800000,
         "hash": "sha256:9f86d08..."}]}
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rigwatch.exceptions import ConfigError
from services.console.roles import Role

__all__ = ["TOKEN_PREFIX", "Principal", "TokenStore", "check_principal", "hash_token", "new_token"]

#: Every token starts with this, so a leaked one is recognisable (and secret scanners can match it).
TOKEN_PREFIX = "rwc_"
_FORMAT_VERSION = 1
_ALGORITHM = "sha256"
_PRINCIPAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the name the audit trail records, and the role.

    ``created`` is epoch milliseconds (0 for the anonymous principal).
    """

    name: str
    role: Role
    created: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (no secret: the principal has none)."""
        return {"principal": self.name, "role": str(self.role), "created": self.created}


def new_token() -> str:
    """A fresh random token: :data:`TOKEN_PREFIX` and 256 random bits, URL-safe.

    Examples
    --------
    >>> token = new_token()
    >>> token.startswith(TOKEN_PREFIX), len(token) > 40, token != new_token()
    (True, True, True)
    """
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What the file stores for *token*: ``sha256:<hex digest>``.

    Examples
    --------
    >>> hash_token("rwc_example")
    'sha256:14f342568c59a4ab760291c141abc5d4d58e8c1f65f52a4089bf5be10d91e907'
    """
    return f"{_ALGORITHM}:{hashlib.sha256(token.encode('utf-8')).hexdigest()}"


def check_principal(name: str) -> str:
    """*name* if it can name a principal (letters, digits, ``.``, ``_``, ``@``, ``-``; up to 64).

    Examples
    --------
    >>> check_principal("ana@ops")
    'ana@ops'
    """
    if not _PRINCIPAL.fullmatch(name):
        raise ConfigError(
            f"principal {name!r}: expected letters, digits, '.', '_', '@' or '-' (up to 64, starting"
            " with a letter or digit)"
        )
    return name


class TokenStore:
    """The tokens file at *path*: verify bearer tokens, add, remove and list principals.

    The file is read again when it changes (its size or modification time), so a
    token added or removed with the command line counts at the next request of a
    running console. A file that cannot be read is an error, never "no tokens":
    a console must not go on accepting a token its operator just removed.

    Examples
    --------
    ::

        store = TokenStore(Path(".rigwatch/console-tokens.json"))
        token = store.add("ana", Role.OPERATOR)   # shown once
        store.verify(token)                       # Principal(name='ana', role=<Role.OPERATOR: 2>, ...)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._by_hash: dict[str, Principal] = {}

    # ------------------------------------------------------------------ reading

    def verify(self, token: str) -> Principal | None:
        """The principal *token* belongs to, or None for an unknown token.

        Looked up by its hash: the comparison is of digests, so its timing tells
        nothing about the token.

        Raises
        ------
        ConfigError
            The file exists but cannot be read or is not a tokens file.
        """
        return self._entries().get(hash_token(token))

    def principals(self) -> list[Principal]:
        """Every principal, by name."""
        return sorted(self._entries().values(), key=lambda p: p.name)

    def _entries(self) -> dict[str, Principal]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._by_hash = None, {}
            return self._by_hash
        except OSError as exc:
            raise ConfigError(f"tokens file {self.path}: cannot read it: {exc}") from exc
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._by_hash = {entry["hash"]: _principal(entry, self.path) for entry in self._read()}
            self._stamp = stamp
        return self._by_hash

    def _read(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise ConfigError(f"tokens file {self.path}: not readable as JSON: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
            raise ConfigError(f"tokens file {self.path}: expected an object with a list 'tokens'")
        if data.get("version") != _FORMAT_VERSION:
            raise ConfigError(
                f"tokens file {self.path}: version {data.get('version')!r}, expected {_FORMAT_VERSION}"
            )
        return list(data["tokens"])

    # ------------------------------------------------------------------ writing

    def add(self, name: str, role: Role, *, replace: bool = False) -> str:
        """Give *name* a new token with *role*; the token (the only time it is seen).

        Raises
        ------
        ConfigError
            *name* is not a valid principal, or has a token already and *replace* is not set.
        """
        check_principal(name)
        entries = self._read()
        if any(e.get("principal") == name for e in entries):
            if not replace:
                raise ConfigError(
                    f"principal {name!r} has a token already; `rigwatch console token remove {name}`"
                    " first, or add with --replace"
                )
            entries = [e for e in entries if e.get("principal") != name]
        token = new_token()
        entries.append(
            {
                "principal": name,
                "role": str(role),
                "created": int(time.time() * 1000),
                "hash": hash_token(token),
            }
        )
        self._write(entries)
        return token

    def remove(self, name: str) -> bool:
        """Revoke *name*'s token; whether it had one."""
        entries = self._read()
        kept = [e for e in entries if e.get("principal") != name]
        if len(kept) == len(entries):
            return False
        self._write(kept)
        return True

    def _write(self, entries: list[dict[str, Any]]) -> None:
        """Write the file whole under a temporary name, then rename: a reader never sees half of it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        text = json.dumps({"version": _FORMAT_VERSION, "tokens": entries}, indent=2) + "\n"
        # Created 0600 from the start: hashes are not secrets, but who holds which role is nobody else's.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)


def _principal(entry: Any, path: Path) -> Principal:
    """One entry of the file, checked."""
    if not isinstance(entry, dict) or not {"principal", "role", "hash"} <= set(entry):
        raise ConfigError(f"tokens file {path}: entry {entry!r} needs principal, role and hash")
    digest = str(entry["hash"])
    if not re.fullmatch(rf"{_ALGORITHM}:[0-9a-f]{{64}}", digest):
        raise ConfigError(
            f"tokens file {path}: principal {entry['principal']!r}: hash {digest!r} is not sha256:<hex>"
        )
    return Principal(
        check_principal(str(entry["principal"])), Role.parse(str(entry["role"])), int(entry.get("created", 0))
    )
