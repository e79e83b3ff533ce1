"""Event-stream tickets: a browser's ``EventSource`` cannot send an ``Authorization`` header.

The console's page asks for a ticket with its token (``POST /api/v1/events/ticket``)
and opens ``GET /api/v1/events?ticket=...``. A ticket stands for the principal
that asked for it, is good for one stream only and for :data:`TTL_S` seconds, and
is accepted by no other route. So the token itself never goes into a URL (where
proxies, browser history and logs keep it), and a ticket seen there is already
spent. Tickets live in memory: a console restart voids them, which costs a page
nothing but a new ticket when it reconnects.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from services.console.tokens import Principal

__all__ = ["TICKET_PREFIX", "TTL_S", "Tickets"]

#: Seconds a ticket is good for: a page opens its stream right after asking for one.
TTL_S = 30.0
#: Every ticket starts with this, so one is not mistaken for a token (``rwc_``).
TICKET_PREFIX = "rwt_"


class Tickets:
    """Single-use, short-lived tickets for principals.

    Parameters
    ----------
    ttl_s
        Seconds a ticket is good for.
    limit
        Most tickets outstanding; beyond it the oldest is dropped (a caller
        asking for tickets in a loop cannot grow the console's memory).
    clock
        Seconds, monotonic (tests pass their own).

    Examples
    --------
    >>> from services.console.roles import Role
    >>> now = [0.0]
    >>> tickets = Tickets(ttl_s=30, clock=lambda: now[0])
    >>> ticket = tickets.issue(Principal("ana", Role.VIEWER))
    >>> tickets.redeem(ticket).name
    'ana'
    >>> tickets.redeem(ticket) is None  # spent
    True
    >>> late = tickets.issue(Principal("ana", Role.VIEWER))
    >>> now[0] = 31.0
    >>> tickets.redeem(late) is None  # expired
    True
    """

    def __init__(
        self, ttl_s: float = TTL_S, limit: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s, self.limit, self.clock = ttl_s, limit, clock
        # Issued in time order, so the expired ones are always at the front.
        self._open: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def issue(self, principal: Principal) -> str:
        """A new ticket standing for *principal*."""
        now = self.clock()
        self._prune(now)
        while len(self._open) >= self.limit:
            self._open.popitem(last=False)
        ticket = TICKET_PREFIX + secrets.token_urlsafe(32)
        self._open[ticket] = (principal, now + self.ttl_s)
        return ticket

    def redeem(self, ticket: str) -> Principal | None:
        """The principal *ticket* stands for, once; None when unknown, spent or expired."""
        found = self._open.pop(ticket, None)
        if found is None:
            return None
        principal, expires = found
        return principal if self.clock() <= expires else None

    def _prune(self, now: float) -> None:
        while self._open:
            _, (_, expires) = next(iter(self._open.items()))
            if expires >= now:
                return
            self._open.popitem(last=False)

    def __len__(self) -> int:
        return len(self._open)
