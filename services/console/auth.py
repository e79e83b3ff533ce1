"""Who is calling, and whether their role may: bearer tokens checked against the tokens file.

No token is a 401, unless anonymous access was enabled (``--allow-anonymous
ROLE``, loopback only): then a request *without* an ``Authorization`` header
acts as the principal ``anonymous`` with that role. A request with a token is
always judged by it, so a wrong token is a 401 even then.

The event stream also takes a ticket (:mod:`services.console.tickets`) in its
query instead of the header, because a browser's ``EventSource`` cannot send one.
"""

from __future__ import annotations

from rigwatch.exceptions import ConfigError
from services.console.errors import ApiError
from services.console.roles import Role
from services.console.tickets import TTL_S, Tickets
from services.console.tokens import Principal, TokenStore

__all__ = ["ANONYMOUS", "Auth"]

#: The principal of a request without a token, where that is allowed.
ANONYMOUS = "anonymous"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="rigwatch"'}


class Auth:
    """Turn an ``Authorization`` header into a :class:`Principal`, and check roles.

    Parameters
    ----------
    tokens
        The tokens file.
    anonymous
        The role of a request without a token; None: such a request is refused.
    tickets
        The event-stream tickets (new, empty ones when None).

    Examples
    --------
    >>> auth = Auth(TokenStore("/nonexistent/tokens.json"), anonymous=Role.VIEWER)
    >>> auth.principal(None).name, str(auth.principal(None).role)
    ('anonymous', 'viewer')
    >>> auth.require(auth.principal(None), Role.OPERATOR, "promote")
    Traceback (most recent call last):
    ...
    services.console.errors.ApiError: promote needs the operator role; anonymous has viewer
    """

    def __init__(
        self, tokens: TokenStore, anonymous: Role | None = None, tickets: Tickets | None = None
    ) -> None:
        self.tokens, self.anonymous = tokens, anonymous
        self.tickets = tickets if tickets is not None else Tickets()

    def principal(self, authorization: str | None) -> Principal:
        """Who sent a request with this ``Authorization`` header (None: no header).

        Raises
        ------
        ApiError
            401 without a token (and no anonymous role), with a malformed header or an
            unknown token; 503 when the tokens file cannot be read (nobody is let in then).
        """
        if authorization is None or not authorization.strip():
            if self.anonymous is not None:
                return Principal(ANONYMOUS, self.anonymous)
            raise ApiError(
                401,
                "no token: send Authorization: Bearer <token> (`rigwatch console token add`)",
                headers=_CHALLENGE,
            )
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "expected the header Authorization: Bearer <token>", headers=_CHALLENGE)
        try:
            found = self.tokens.verify(token.strip())
        except ConfigError as exc:
            # Fail closed: a tokens file that cannot be read lets nobody in.
            raise ApiError(503, f"the console cannot check tokens: {exc}") from exc
        if found is None:
            raise ApiError(401, "unknown token (revoked, or never issued)", headers=_CHALLENGE)
        return found

    @staticmethod
    def require(principal: Principal, needed: Role, what: str) -> None:
        """Raise a 403 unless *principal*'s role allows what *needed* allows; *what* names the action."""
        if not principal.role.allows(needed):
            raise ApiError(
                403,
                f"{what} needs the {needed} role; {principal.name} has {principal.role}",
                extra={"needed": str(needed), "role": str(principal.role)},
            )

    def redeem(self, ticket: str) -> Principal:
        """Who an event-stream *ticket* stands for; it is spent by this.

        The principal must still hold the token the ticket was asked for with (same
        role, same creation time): a token removed or replaced meanwhile voids it.

        Raises
        ------
        ApiError
            401 for an unknown, spent or expired ticket, or a revoked token; 503 when
            the tokens file cannot be read.
        """
        principal = self.tickets.redeem(ticket)
        if principal is not None and not self._holds(principal):
            principal = None
        if principal is None:
            raise ApiError(
                401,
                f"unknown, spent or expired ticket: a ticket opens one stream within {TTL_S:.0f} s;"
                " ask POST /api/v1/events/ticket for another",
                headers=_CHALLENGE,
            )
        return principal

    def _holds(self, principal: Principal) -> bool:
        if principal.name == ANONYMOUS and principal.created == 0:
            return self.anonymous is not None and self.anonymous == principal.role
        try:
            return principal in self.tokens.principals()
        except ConfigError as exc:
            raise ApiError(503, f"the console cannot check tokens: {exc}") from exc
