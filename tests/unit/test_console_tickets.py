"""Event-stream tickets: single use, short-lived, for one principal, accepted by the stream only."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from services.console.auth import Auth
from services.console.errors import ApiError
from services.console.roles import Role
from services.console.routes import routes
from services.console.server import Dispatcher
from services.console.tickets import Tickets
from services.console.tokens import Principal, TokenStore

ANA = Principal("ana", Role.APPROVER, created=1)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _route(name: str):
    return next(r for r in routes() if r.name == name)


def test_a_ticket_opens_one_stream_within_its_time() -> None:
    clock = _Clock()
    tickets = Tickets(ttl_s=30, clock=clock)
    first, second = tickets.issue(ANA), tickets.issue(ANA)

    assert first != second and first.startswith("rwt_")
    assert tickets.redeem(first) == ANA
    assert tickets.redeem(first) is None, "single use"
    clock.now += 30.5
    assert tickets.redeem(second) is None, "expired"
    assert tickets.redeem("rwt_never-issued") is None


def test_expired_and_surplus_tickets_are_dropped_not_kept() -> None:
    clock = _Clock()
    tickets = Tickets(ttl_s=10, limit=3, clock=clock)
    old = [tickets.issue(ANA) for _ in range(3)]
    newest = tickets.issue(ANA)

    assert len(tickets) == 3 and tickets.redeem(old[0]) is None, "the oldest made room"
    clock.now += 11
    tickets.issue(ANA)
    assert len(tickets) == 1 and tickets.redeem(newest) is None


def test_a_ticket_stands_for_its_principal_until_the_token_is_removed(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    token = store.add("ana", Role.APPROVER)
    auth = Auth(store)
    ana = auth.principal(f"Bearer {token}")

    assert auth.redeem(auth.tickets.issue(ana)) == ana
    pending = auth.tickets.issue(ana)
    store.remove("ana")
    with pytest.raises(ApiError) as refused:
        auth.redeem(pending)
    assert refused.value.status == 401 and "ticket" in refused.value.message
    with pytest.raises(ApiError):
        auth.redeem("rwt_unknown")


def test_only_the_event_stream_takes_a_ticket_and_the_header_wins(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    token = store.add("vera", Role.VIEWER)
    auth = Auth(store)
    dispatcher = Dispatcher(handler=None, auth=auth)  # type: ignore[arg-type]
    vera = auth.principal(f"Bearer {token}")

    def request(query: dict[str, str], headers: dict[str, str] | None = None) -> SimpleNamespace:
        return SimpleNamespace(headers=headers or {}, query=query)

    assert [r.name for r in routes() if r.ticket] == ["events"]
    assert dispatcher._principal(_route("events"), request({"ticket": auth.tickets.issue(vera)})) == vera
    with pytest.raises(ApiError) as no_token:
        dispatcher._principal(_route("me"), request({"ticket": auth.tickets.issue(vera)}))
    assert no_token.value.status == 401
    by_header = dispatcher._principal(
        _route("events"), request({"ticket": "rwt_bogus"}, {"Authorization": f"Bearer {token}"})
    )
    assert by_header == vera, "a request with a token is judged by it"
