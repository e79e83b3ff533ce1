"""The API's one table of routes: path, role, fields. The server and the OpenAPI description both read it.

Each :class:`Route` names its handler method (also the OpenAPI ``operationId``),
the least role that may call it, and its path, query and body fields as
:class:`~services.console.validation.Param`; the server checks requests against
exactly what :mod:`services.console.openapi` describes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from rigwatch.lifecycle.audit import REASONS
from rigwatch.lifecycle.deployments import MODES
from rigwatch.lifecycle.store import MIN_PREFIX
from rigwatch.schemas import load_schema
from services.console.roles import Role
from services.console.scoring import reading_params
from services.console.tickets import TTL_S
from services.console.validation import Param

__all__ = ["API_PREFIX", "Route", "routes"]

#: Every API path starts with this.
API_PREFIX = "/api/v1"

_DEPLOYMENT = Param(
    "name", "string", "a deployment, e.g. cooler", required=True, pattern=r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
)
_VERSION_PATTERN = rf"[0-9a-fA-F]{{{MIN_PREFIX},12}}"
_MODEL = Param(
    "version",
    "string",
    "a registered model version, or a unique prefix of at least 4 hex digits",
    required=True,
    pattern=_VERSION_PATTERN,
)
_CHANGE = Param(
    "change_id", "string", "a pending change (or a unique prefix)", required=True, pattern=r"[0-9a-f]{1,32}"
)
_REASON = Param("reason", "string", "why, for the audit trail", enum=REASONS, default="other")
_COMMENT = Param("comment", "string", "free text for the audit trail", nullable=True)
_LIMIT = Param("limit", "integer", "at most this many, the newest", minimum=1, maximum=10_000, default=500)
_SINCE = Param("since", "time", "from then on: epoch ms, a span back from now (10m, 2h, 1d) or an ISO time")


@dataclass(frozen=True)
class Route:
    """One API operation.

    Parameters
    ----------
    method, path
        HTTP method and path under :data:`API_PREFIX`, with ``{name}`` path fields.
    name
        The handler method that answers it, and its OpenAPI ``operationId``.
    role
        The least role that may call it; None: anyone, no token needed.
    summary, description
        For people (OpenAPI).
    path_params, query, body
        The request's fields; ``body`` None: no body.
    elevated
        Body flags that need a higher role when set: ``{"force": Role.ADMIN}``.
    ok
        The status of a success (202 when a change only waits for approval).
    stream
        It answers with server-sent events (``text/event-stream``), not JSON.
    ticket
        It also takes a ``ticket`` query field (``POST /events/ticket``) instead of the
        ``Authorization`` header: a browser's ``EventSource`` cannot send headers.
    errors
        The error statuses it may answer, with what they mean.
    """

    method: str
    path: str
    name: str
    role: Role | None
    summary: str
    description: str = ""
    tag: str = "console"
    path_params: tuple[Param, ...] = ()
    query: tuple[Param, ...] = ()
    body: tuple[Param, ...] | None = None
    elevated: Mapping[str, Role] = field(default_factory=dict)
    ok: Mapping[int, str] = field(default_factory=lambda: {200: "OK"})
    errors: Mapping[int, str] = field(default_factory=dict)
    stream: bool = False
    ticket: bool = False

    @property
    def url(self) -> str:
        """The full path, prefix included."""
        return API_PREFIX + self.path


_NOT_FOUND = {404: "unknown deployment, change or model version (``field`` names it)"}
_OPERATION_ERRORS = {
    400: "bad input: a missing or unknown field, a wrong type or value (``field`` names it)",
    **_NOT_FOUND,
    409: "refused in the present state (a change pending, nothing to roll back to, self-approval)",
    422: "guardrails failed (every result in ``guardrails``); audited",
    503: "the broker did not answer: nothing changed",
}
_CHANGED = {200: "done: the change, its guardrail results and its audit event"}


@functools.cache
def routes() -> tuple[Route, ...]:
    """Every route of the API, in the order the OpenAPI description lists them."""
    return (
        Route(
            "GET",
            "/health",
            "health",
            None,
            "Whether the console has read its topics to their end",
            "No token needed. ``ready`` turns true once every followed partition has been read to the"
            " end it had when the console started; until then lists may be incomplete and scoring"
            " answers 503.",
            tag="meta",
        ),
        Route("GET", "/openapi.json", "openapi", None, "This description (OpenAPI 3)", tag="meta"),
        Route("GET", "/me", "me", Role.VIEWER, "The caller: principal and role", tag="meta"),
        Route(
            "POST",
            "/score",
            "score",
            Role.VIEWER,
            "Score readings with a deployment's champion",
            "The same batch code and humility rules as the streaming scorer. Each reading is also"
            " published to the readings topic (key rig_id, its event_id) so it is monitored like any"
            " other, unless ``publish`` is false; a reading without event_id gets a new uuid4. Scoring"
            " changes nothing, so a viewer may score.",
            tag="scoring",
            body=(
                Param(
                    "deployment",
                    "string",
                    "whose champion scores; default: the only deployment there is",
                    pattern=_DEPLOYMENT.pattern,
                ),
                Param(
                    "readings",
                    "array",
                    "SensorReadings as JSON (one object or a list)",
                    required=True,
                    items=reading_params(load_schema("SensorReading")),
                    one_or_many=True,
                ),
                Param("publish", "boolean", "also publish the readings to the readings topic", default=True),
            ),
            errors={
                400: "bad input (``field`` names it: readings[3].psa_bar)",
                404: "unknown deployment",
                503: "still reading the deployments, the champion does not load, or publishing failed",
            },
        ),
        Route(
            "GET",
            "/deployments",
            "deployments",
            Role.VIEWER,
            "Every deployment: champion, previous, challenger, pending changes",
            tag="deployments",
        ),
        Route(
            "GET",
            "/deployments/{name}",
            "deployment",
            Role.VIEWER,
            "A deployment: its state, the version each running scorer serves, the latest comparison",
            tag="deployments",
            path_params=(_DEPLOYMENT,),
            errors=_NOT_FOUND,
        ),
        Route(
            "POST",
            "/deployments/{name}/promote",
            "promote",
            Role.OPERATOR,
            "Promote a version to champion (or propose it, where approval is required)",
            "Guardrails run first; a failure is refused (422) and audited. ``force`` promotes past"
            " failed guardrails and needs the admin role. On a deployment that requires approval the"
            " answer is 202 with the pending change, which another principal approves.",
            tag="deployments",
            path_params=(_DEPLOYMENT,),
            body=(
                Param("version", "string", _MODEL.description, required=True, pattern=_VERSION_PATTERN),
                _REASON,
                _COMMENT,
                Param("force", "boolean", "promote even if guardrails fail (admin)", default=False),
            ),
            elevated={"force": Role.ADMIN},
            ok={**_CHANGED, 202: "proposed: the pending change awaits another principal's approval"},
            errors=_OPERATION_ERRORS,
        ),
        Route(
            "POST",
            "/deployments/{name}/rollback",
            "rollback",
            Role.OPERATOR,
            "Serve the previous champion again (no approval: it served before)",
            tag="deployments",
            path_params=(_DEPLOYMENT,),
            body=(_REASON, _COMMENT),
            ok=_CHANGED,
            errors=_OPERATION_ERRORS,
        ),
        Route(
            "POST",
            "/deployments/{name}/challenger",
            "start_challenge",
            Role.OPERATOR,
            "Run a version beside the champion, in shadow or as a canary",
            "The label-free guardrails run first. A running challenger is replaced.",
            tag="deployments",
            path_params=(_DEPLOYMENT,),
            body=(
                Param("version", "string", _MODEL.description, required=True, pattern=_VERSION_PATTERN),
                Param(
                    "mode",
                    "string",
                    "shadow: never served; canary: serves percent of rigs",
                    enum=MODES,
                    default="shadow",
                ),
                Param(
                    "percent",
                    "number",
                    "canary: the share of rigs it serves",
                    minimum=0,
                    maximum=100,
                    exclusive=True,
                ),
                Param("auto_promote", "boolean", "the gate promotes it on a better verdict", default=False),
                Param(
                    "min_pairs", "integer", "labelled pairs a verdict needs to act on", minimum=0, default=200
                ),
                _REASON,
                _COMMENT,
            ),
            ok=_CHANGED,
            errors=_OPERATION_ERRORS,
        ),
        Route(
            "DELETE",
            "/deployments/{name}/challenger",
            "end_challenge",
            Role.OPERATOR,
            "Stop the challenger: the champion serves every reading",
            tag="deployments",
            path_params=(_DEPLOYMENT,),
            body=(_REASON, _COMMENT),
            ok=_CHANGED,
            errors=_OPERATION_ERRORS,
        ),
        Route(
            "GET",
            "/changes",
            "changes",
            Role.VIEWER,
            "Changes awaiting approval",
            tag="changes",
            query=(Param("deployment", "string", "only this deployment's"),),
        ),
        Route(
            "POST",
            "/changes/{change_id}/approve",
            "approve",
            Role.APPROVER,
            "Apply a pending change; its proposer may not (four eyes, refused 403 and audited)",
            tag="changes",
            path_params=(_CHANGE,),
            body=(_COMMENT,),
            ok=_CHANGED,
            errors={**_OPERATION_ERRORS, 403: "the caller proposed it (four eyes)"},
        ),
        Route(
            "POST",
            "/changes/{change_id}/reject",
            "reject",
            Role.APPROVER,
            "Refuse a pending change",
            tag="changes",
            path_params=(_CHANGE,),
            body=(_REASON, _COMMENT),
            ok=_CHANGED,
            errors=_OPERATION_ERRORS,
        ),
        Route(
            "GET", "/models", "models", Role.VIEWER, "Registered model versions, oldest first", tag="models"
        ),
        Route(
            "GET",
            "/models/{version}",
            "model",
            Role.VIEWER,
            "A registered version: metadata, metrics, comments, where it serves",
            tag="models",
            path_params=(_MODEL,),
            errors=_NOT_FOUND,
        ),
        Route(
            "POST",
            "/models/{version}/comments",
            "comment_model",
            Role.OPERATOR,
            "Comment a model version (an audit event)",
            tag="models",
            path_params=(_MODEL,),
            body=(Param("text", "string", "the comment", required=True, min_length=1),),
            ok={200: "the audit event"},
            errors=_OPERATION_ERRORS,
        ),
        Route(
            "GET",
            "/alerts",
            "alerts",
            Role.VIEWER,
            "Alerts firing now, or the newest transitions",
            "active: firing now, most severe first; recent: firing and resolved transitions, newest first.",
            tag="monitoring",
            query=(
                Param("state", "string", "active or recent", enum=("active", "recent"), default="active"),
                _LIMIT,
            ),
        ),
        Route(
            "GET",
            "/windows",
            "windows",
            Role.VIEWER,
            "Metric windows by kind and subject over a time range",
            "Windows ending in [since, until], oldest first (the newest ``limit``); kept in memory per"
            " (kind, subject), the newest RIGWATCH_CONSOLE_WINDOWS_PER_SUBJECT of each. Without a kind"
            " or subject: the subjects there are.",
            tag="monitoring",
            query=(
                Param("kind", "string", "drift, health, accuracy or comparison"),
                Param("subject", "string", "a model version, or rig:<rig_id>"),
                _SINCE,
                Param("until", "time", "up to then (as since)"),
                _LIMIT,
            ),
        ),
        Route(
            "GET",
            "/events",
            "events",
            Role.VIEWER,
            "Server-sent events: records as the console reads them",
            "One event per record of the followed topics, as it arrives: ``event:`` the kind (alert,"
            " window, deployment, audit, heartbeat), ``id:`` a sequence number, ``data:`` the record as"
            " JSON (as the other routes give it). A comment line every 15 s keeps idle connections open."
            " Subscribe first, then read the state, to miss nothing in between. A client that falls"
            " 1,000 events behind gets an ``overflow`` event and the stream ends.",
            tag="monitoring",
            query=(
                Param(
                    "kinds",
                    "string",
                    "comma-separated kinds to receive",
                    default="alert,window,deployment,audit",
                    pattern=r"[a-z]+(,[a-z]+)*",
                ),
                Param(
                    "ticket",
                    "string",
                    "instead of the Authorization header (EventSource cannot send one): a ticket from"
                    f" POST /events/ticket, good for one stream within {TTL_S:.0f} s",
                ),
            ),
            ok={200: "an event stream (text/event-stream)"},
            stream=True,
            ticket=True,
        ),
        Route(
            "POST",
            "/events/ticket",
            "events_ticket",
            Role.VIEWER,
            "A ticket that opens one event stream without the Authorization header",
            "For browsers: ``EventSource`` cannot send headers, and a token in a URL would stay in"
            " logs and history. The ticket stands for the caller, opens one ``GET /events?ticket=...``"
            " within ``expires_in_s`` seconds, and is accepted by no other route; a token removed"
            " meanwhile voids it.",
            tag="monitoring",
            ok={200: "``ticket`` and ``expires_in_s``"},
        ),
        Route(
            "GET",
            "/audit",
            "audit",
            Role.VIEWER,
            "The audit trail, oldest first (the newest ``limit``)",
            tag="monitoring",
            query=(
                Param("deployment", "string", "only this deployment's events"),
                Param("model_version", "string", "only events about this version"),
                _SINCE,
                _LIMIT,
            ),
        ),
    )
