"""Who may do what: the four roles and the one order they are in.

A role allows everything the roles below it allow:

========  ==============================================================
viewer    every ``GET`` and ``POST /score`` (scoring changes nothing)
operator  + promote, rollback, start / end a challenger, comment a model
approver  + approve and reject pending changes (of other people)
admin     + promote with ``force`` (past failed guardrails)
========  ==============================================================
"""

from __future__ import annotations

from enum import IntEnum

from rigwatch.exceptions import ConfigError

__all__ = ["Role"]


class Role(IntEnum):
    """A role; a higher one includes every lower one.

    Examples
    --------
    >>> Role.parse("approver") >= Role.OPERATOR
    True
    >>> Role.VIEWER.allows(Role.OPERATOR)
    False
    >>> str(Role.ADMIN)
    'admin'
    """

    VIEWER = 1
    OPERATOR = 2
    APPROVER = 3
    ADMIN = 4

    def __str__(self) -> str:
        return self.name.lower()

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what *needed* may."""
        return self >= needed

    @classmethod
    def parse(cls, text: str) -> Role:
        """The role named *text* (any case).

        Raises
        ------
        ConfigError
            Not a role; the message lists the roles.
        """
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ConfigError(f"role {text!r}: expected one of {', '.join(str(r) for r in cls)}") from None
