"""The console's route table: who may call what, and the OpenAPI description made from it."""

from __future__ import annotations

import inspect

from services.console.handler import ConsoleHandler
from services.console.openapi import openapi
from services.console.roles import Role
from services.console.routes import API_PREFIX, routes


def _by_name() -> dict[str, object]:
    return {r.name: r for r in routes()}


def test_the_role_table() -> None:
    """viewer: reads and scoring; operator: changes; approver: approvals; admin: force."""
    needed = {r.name: r.role for r in routes()}

    assert {n for n, role in needed.items() if role is None} == {"health", "openapi"}
    assert {n for n, role in needed.items() if role is Role.OPERATOR} == {
        "promote", "rollback", "start_challenge", "end_challenge", "comment_model",
    }  # fmt: skip
    assert {n for n, role in needed.items() if role is Role.APPROVER} == {"approve", "reject"}
    assert needed["score"] is Role.VIEWER
    assert all(r.role in (None, Role.VIEWER) for r in routes() if r.method == "GET")
    assert all(r.role is not None and r.role >= Role.VIEWER for r in routes() if r.method != "GET")
    promote = next(r for r in routes() if r.name == "promote")
    assert dict(promote.elevated) == {"force": Role.ADMIN}


def test_every_route_has_a_handler_and_one_method_per_path() -> None:
    seen = set()
    for route in routes():
        assert route.url.startswith(API_PREFIX + "/")
        assert inspect.iscoroutinefunction(getattr(ConsoleHandler, route.name)), route.name
        assert (route.method, route.path) not in seen
        seen.add((route.method, route.path))
        names = {p.name for p in route.path_params}
        assert names == {part[1:-1] for part in route.path.split("/") if part.startswith("{")}, route.path


def test_openapi_lists_every_route_with_its_role_fields_and_errors() -> None:
    doc = openapi(routes(), "1.2.3")

    assert doc["openapi"] == "3.0.3" and doc["info"]["version"] == "1.2.3"
    operations = {(m, p): op for p, methods in doc["paths"].items() for m, op in methods.items()}
    assert len(operations) == len(routes())
    for route in routes():
        op = operations[(route.method.lower(), route.url)]
        assert op["x-required-role"] == (str(route.role) if route.role else None)
        schemes = [{"bearer": []}, {"ticket": []}] if route.ticket else [{"bearer": []}]
        assert op["security"] == (schemes if route.role else [])
        if route.role is not None:
            assert {"401", "403"} <= set(op["responses"])
        if route.body:
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            assert list(schema["properties"]) == [p.name for p in route.body]
            assert schema["additionalProperties"] is False


def test_openapi_describes_the_readings_from_the_schema() -> None:
    doc = openapi(routes(), "0")
    body = doc["paths"]["/api/v1/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]

    readings = body["properties"]["readings"]["oneOf"]
    item = readings[0]["items"]
    assert readings[1] == item, "one reading or a list of them"
    assert item["required"] == ["rig_id"]
    psa_bar = item["properties"]["psa_bar"]
    assert (psa_bar["type"], psa_bar["nullable"]) == ("number", True)
    promote = doc["paths"]["/api/v1/deployments/{name}/promote"]["post"]
    assert "force" in promote["description"] and "admin" in promote["description"]
    assert promote["requestBody"]["content"]["application/json"]["schema"]["properties"]["reason"]["enum"][
        0
    ] == ("accuracy")
