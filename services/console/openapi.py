"""The OpenAPI 3 description of the API, generated from the route table (no second copy to drift)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.console.routes import Route
from services.console.validation import object_schema

__all__ = ["openapi"]

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "what is wrong, and what was expected"},
        "field": {"type": "string", "description": "the request field to blame, e.g. readings[3].psa_bar"},
        "value": {"description": "that field's value as given (cut short)"},
    },
}
_AUTH_ERRORS = {
    401: "no token, or an unknown one (``Authorization: Bearer <token>``)",
    403: "the token's role is below the route's (``needed`` names it)",
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "tags": [route.tag],
        "x-required-role": str(route.role) if route.role is not None else None,
    }
    role = f"Role: {route.role} or above." if route.role is not None else "No token needed."
    if route.elevated:
        role += " " + "; ".join(f"with `{flag}`: {needed}" for flag, needed in route.elevated.items()) + "."
    op["description"] = f"{route.description}\n\n{role}".strip()
    params = [
        {"name": p.name, "in": "path", "required": True, "description": p.description, "schema": p.schema()}
        for p in route.path_params
    ] + [
        {
            "name": p.name,
            "in": "query",
            "required": p.required,
            "description": p.description,
            "schema": p.schema(),
        }
        for p in route.query
    ]
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {
            "required": any(p.required for p in route.body),
            "content": {"application/json": {"schema": object_schema(route.body)}},
        }
    responses: dict[str, Any] = {
        str(status): (
            {"description": text, "content": {"text/event-stream": {"schema": {"type": "string"}}}}
            if route.stream
            else _json({"type": "object"}, text)
        )
        for status, text in route.ok.items()
    }
    errors = dict(route.errors)
    if route.role is not None:
        errors = {**_AUTH_ERRORS, **errors}
        op["security"] = [{"bearer": []}, {"ticket": []}] if route.ticket else [{"bearer": []}]
    else:
        op["security"] = []
    if route.body is not None or route.query:
        errors.setdefault(400, "bad input (``field`` names it)")
    for status, text in sorted(errors.items()):
        responses[str(status)] = _json({"$ref": "#/components/schemas/Error"}, text)
    op["responses"] = responses
    return op


def openapi(routes: Sequence[Route], version: str) -> dict[str, Any]:
    """The OpenAPI 3.0 document of *routes*; *version* is the API's (the package's) version.

    Examples
    --------
    >>> from services.console.routes import routes
    >>> doc = openapi(routes(), "0.1.0")
    >>> doc["paths"]["/api/v1/deployments/{name}/promote"]["post"]["x-required-role"]
    'operator'
    """
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.url, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "rigwatch console API",
            "version": version,
            "description": "Scoring, deployments and monitoring of rigwatch. Every route but /health and"
            " /openapi.json needs `Authorization: Bearer <token>` (`rigwatch console token add NAME"
            " --role ROLE`); roles: viewer < operator < approver < admin.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "ticket": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "ticket",
                    "description": "GET /events only: a single-use ticket from POST /events/ticket",
                },
            },
            "schemas": {"Error": _ERROR},
        },
    }
