"""API errors: what a refused request is answered with, and how rigwatch's exceptions map to it.

Every error is JSON ``{"error": message, "field": name, "value": value}``
(``field`` and ``value`` where one field is to blame), with a 4xx status for
anything the caller can fix and 503 when the broker or the model store is not
there. A 500 means a bug in the console, never bad input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rigwatch.exceptions import (
    ConfigError,
    DataError,
    DeliveryError,
    ModelError,
    RigwatchError,
    StackError,
)
from rigwatch.lifecycle.exceptions import GuardrailsFailed, LifecycleError

__all__ = ["ApiError", "from_exception", "shown"]

#: Longest value echoed back in an error (a pasted file should not come back whole).
_SHOWN_CHARS = 200


def shown(value: Any) -> Any:
    """*value* as an error echoes it: JSON scalars as they are, anything longer cut short.

    Examples
    --------
    >>> shown("12,5"), shown(None), shown(3)
    ('12,5', None, 3)
    >>> len(shown("x" * 1000))
    201
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


class ApiError(Exception):
    """A request answered with *status* and a JSON error.

    Parameters
    ----------
    status
        The HTTP status.
    message
        What is wrong and, where it helps, what was expected.
    field
        The request field to blame (``readings[3].psa_bar``, ``name``), if one is.
    value
        Its value as given (echoed back, cut short); only with *field*.
    extra
        More JSON fields (e.g. the guardrail results of a refused promotion).
    headers
        HTTP headers of the answer (``WWW-Authenticate`` of a 401).

    Examples
    --------
    >>> err = ApiError(400, "psa_bar: expected a number", field="readings[0].psa_bar", value="x")
    >>> err.body()
    {'error': 'psa_bar: expected a number', 'field': 'readings[0].psa_bar', 'value': 'x'}
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        value: Any = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.value = status, message, field, value
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON answer."""
        out: dict[str, Any] = {"error": self.message}
        if self.field is not None:
            out["field"] = self.field
            out["value"] = shown(self.value)
        return out | self.extra


def from_exception(exc: RigwatchError, *, field: str | None = None, value: Any = None) -> ApiError:
    """The answer to an operation that raised *exc*; *field* / *value* name the input it concerned.

    ========================  ======  ==============================================
    GuardrailsFailed          422     the request was understood; the model fails checks
                                      (every result is in ``guardrails``)
    LifecycleError            409     refused in the deployment's present state
                                      (a change pending, nothing to roll back to, ...)
    ModelError                404     no such version (or a prefix of several)
    ConfigError, DataError    400     a setting or value that cannot work
    StackError, DeliveryError 503     the broker did not answer: nothing happened, try again
    ========================  ======  ==============================================

    Examples
    --------
    >>> from_exception(LifecycleError("no previous champion")).status
    409
    >>> from_exception(StackError("no broker")).status
    503
    """
    message = str(exc)
    if isinstance(exc, GuardrailsFailed):
        return ApiError(
            422,
            message,
            field=field,
            value=value,
            extra={"guardrails": [r.to_record() for r in exc.results], "operation": exc.operation},
        )
    if isinstance(exc, LifecycleError):
        return ApiError(409, message, field=field, value=value)
    if isinstance(exc, ModelError):
        return ApiError(404, message, field=field, value=value)
    if isinstance(exc, StackError | DeliveryError):
        return ApiError(503, message)
    if isinstance(exc, ConfigError | DataError):
        return ApiError(400, message, field=field, value=value)
    return ApiError(400, message, field=field, value=value)
