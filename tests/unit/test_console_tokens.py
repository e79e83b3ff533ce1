"""API tokens of the console: stored hashed, verified, revoked; the Authorization header judged."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from rigwatch.exceptions import ConfigError
from services.console.auth import ANONYMOUS, Auth
from services.console.errors import ApiError
from services.console.roles import Role
from services.console.tokens import TOKEN_PREFIX, TokenStore, hash_token

_ZEROS = "sha256:" + "0" * 64


def test_a_token_is_stored_as_its_hash_only_in_a_private_file(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "sub" / "tokens.json")

    token = store.add("ana", Role.OPERATOR)

    text = store.path.read_text()
    assert token.startswith(TOKEN_PREFIX) and token not in text
    assert hash_token(token) in text and hash_token(token).startswith("sha256:")
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    entry = json.loads(text)["tokens"][0]
    assert (entry["principal"], entry["role"]) == ("ana", "operator")


def test_verify_finds_the_principal_of_a_token_and_nobody_for_others(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    ana, ben = store.add("ana", Role.APPROVER), store.add("ben", Role.VIEWER)

    found = store.verify(ana)

    assert found is not None and (found.name, found.role) == ("ana", Role.APPROVER)
    assert store.verify(ben).name == "ben"  # type: ignore[union-attr]
    assert store.verify(ana + "x") is None and store.verify("") is None
    assert store.verify(hash_token(ana)) is None, "the stored hash is no token"


def test_a_removed_or_replaced_token_stops_working_in_a_running_store(tmp_path: Path) -> None:
    running = TokenStore(tmp_path / "tokens.json")
    cli = TokenStore(tmp_path / "tokens.json")  # what `rigwatch console token` writes with
    old = cli.add("ana", Role.OPERATOR)
    assert running.verify(old) is not None

    new = cli.add("ana", Role.ADMIN, replace=True)

    assert running.verify(old) is None and running.verify(new).role is Role.ADMIN  # type: ignore[union-attr]
    assert cli.remove("ana") and not cli.remove("ana")
    assert running.verify(new) is None and running.principals() == []


def test_adding_a_principal_twice_needs_replace(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    store.add("ana", Role.VIEWER)

    with pytest.raises(ConfigError, match="has a token already"):
        store.add("ana", Role.ADMIN)
    with pytest.raises(ConfigError, match="principal 'a b'"):
        store.add("a b", Role.ADMIN)
    assert [(p.name, p.role) for p in store.principals()] == [("ana", Role.VIEWER)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not readable as JSON"),
        ('{"version": 1}', "list 'tokens'"),
        ('{"version": 9, "tokens": []}', "version 9"),
        ('{"version": 1, "tokens": [{"principal": "ana", "role": "operator", "hash": "md5:00"}]}', "sha256"),
        (
            json.dumps({"version": 1, "tokens": [{"principal": "ana", "role": "boss", "hash": _ZEROS}]}),
            "'boss'",
        ),
    ],
)
def test_a_broken_tokens_file_is_an_error_not_an_empty_one(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content)

    with pytest.raises(ConfigError, match=message):
        TokenStore(path).verify("rwc_anything")


def test_auth_refuses_missing_malformed_and_unknown_tokens(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    token = store.add("ana", Role.OPERATOR)
    auth = Auth(store)

    assert auth.principal(f"Bearer {token}").name == "ana"
    assert auth.principal(f"bearer   {token} ").name == "ana"
    for header in (None, "", "Bearer", f"Basic {token}", "Bearer rwc_unknown"):
        with pytest.raises(ApiError) as refused:
            auth.principal(header)
        assert refused.value.status == 401 and refused.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_anonymous_role_is_only_for_requests_without_a_token(tmp_path: Path) -> None:
    auth = Auth(TokenStore(tmp_path / "tokens.json"), anonymous=Role.OPERATOR)

    assert (auth.principal(None).name, auth.principal(None).role) == (ANONYMOUS, Role.OPERATOR)
    with pytest.raises(ApiError) as refused:
        auth.principal("Bearer rwc_wrong")
    assert refused.value.status == 401


def test_a_role_below_the_needed_one_is_a_403_naming_both(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    viewer = Auth(store).principal(f"Bearer {store.add('vera', Role.VIEWER)}")

    with pytest.raises(ApiError) as refused:
        Auth.require(viewer, Role.OPERATOR, "POST /api/v1/deployments/cooler/promote")

    assert refused.value.status == 403
    assert refused.value.body()["needed"] == "operator" and refused.value.body()["role"] == "viewer"
    Auth.require(viewer, Role.VIEWER, "GET /api/v1/alerts")  # allowed: no exception


def test_an_unreadable_tokens_file_lets_nobody_in(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text("garbage")

    with pytest.raises(ApiError) as refused:
        Auth(TokenStore(path), anonymous=Role.VIEWER).principal("Bearer rwc_x")

    assert refused.value.status == 503


def test_roles_are_ordered_and_parsed_by_name() -> None:
    assert Role.VIEWER < Role.OPERATOR < Role.APPROVER < Role.ADMIN
    assert Role.parse(" Approver ") is Role.APPROVER
    assert Role.ADMIN.allows(Role.APPROVER) and not Role.OPERATOR.allows(Role.APPROVER)
    with pytest.raises(ConfigError, match="viewer, operator, approver, admin"):
        Role.parse("root")
