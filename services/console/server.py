"""HTTP glue: the route table served by faust's web server, tokens checked, every answer JSON.

For each path of :func:`~services.console.routes.routes` one faust
:class:`~faust.web.View` is registered; a request is answered in this order:
the token (401), the role (403), then the path, query and body fields (400),
then the handler. So a caller without the role learns nothing about what the
route would have accepted. Anything aiohttp refuses by itself (unknown path,
method not allowed, body too large) and any bug is also answered as JSON by
:func:`json_errors`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import faust
from aiohttp import web
from faust.web import Request, Response, View

from services.console.auth import Auth
from services.console.errors import ApiError
from services.console.events import Subscription
from services.console.handler import Call, ConsoleHandler
from services.console.page import register_page
from services.console.roles import Role
from services.console.routes import Route
from services.console.tokens import Principal
from services.console.validation import parse_body, parse_object, parse_query

__all__ = ["dumps", "json_errors", "register"]

log = logging.getLogger("rigwatch.console")

#: Seconds between the comment lines an idle event stream gets, so proxies and browsers keep it open.
KEEPALIVE_S = 15.0


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dumps(value: Any) -> bytes:
    """*value* as strict JSON: NaN and infinities become ``null`` (a browser's ``JSON.parse`` refuses them).

    Examples
    --------
    >>> dumps({"accuracy": float("nan"), "n": 3})
    b'{"accuracy": null, "n": 3}'
    """
    try:
        text = json.dumps(value, allow_nan=False)
    except ValueError:  # a window's metric can be NaN (no labelled pairs): rarely, so only then walked
        text = json.dumps(_finite(value), allow_nan=False)
    return text.encode("utf-8")


def _json(view: View, value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return view.bytes(
        dumps(value), content_type="application/json", status=status, headers=dict(headers or {})
    )


def json_errors(max_body: int) -> Callable[..., Awaitable[web.StreamResponse]]:
    """An aiohttp middleware answering what never reached a route (404, 405, 413) and any bug (500) as JSON.

    *max_body* is the largest body accepted, in bytes (named in the 413).
    """

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            body: dict[str, Any] = {"error": f"{exc.reason}: {request.method} {request.path}"}
            headers = {}
            if isinstance(exc, web.HTTPMethodNotAllowed):
                body["allowed"] = sorted(exc.allowed_methods)
                headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
            elif isinstance(exc, web.HTTPRequestEntityTooLarge):
                body["error"] = f"request body larger than {max_body:,} bytes (RIGWATCH_CONSOLE_MAX_BODY_MB)"
            return web.Response(
                body=dumps(body), status=exc.status, content_type="application/json", headers=headers
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return web.Response(
                body=dumps({"error": "internal error: the console's log has the details"}),
                status=500,
                content_type="application/json",
            )

    return middleware


class Dispatcher:
    """Authenticate, authorise and parse a request for its :class:`Route`, then call the handler."""

    def __init__(self, handler: ConsoleHandler, auth: Auth) -> None:
        self.handler, self.auth = handler, auth

    async def answer(self, view: View, route: Route, request: Any, match: Mapping[str, str]) -> Response:
        principal = None
        try:
            if route.role is not None:
                principal = self._principal(route, request)
                self.auth.require(principal, route.role, f"{request.method} {request.path}")
            path = parse_object(dict(match), route.path_params)
            query = parse_query(_single(request.query), route.query)
            body = parse_body(await request.read(), route.body)
            for flag, needed in route.elevated.items():
                if body.get(flag) and principal is not None:
                    self.auth.require(principal, needed, f"{request.method} {request.path} with {flag}")
            reply = await getattr(self.handler, route.name)(Call(principal, path, query, body))
            if isinstance(reply.body, Subscription):
                return await _stream(request, reply.body)
            self._said(route, request, principal, reply.status)
            return _json(view, reply.body, reply.status)
        except ApiError as exc:
            self._said(route, request, principal, exc.status, exc.message)
            return _json(view, exc.body(), exc.status, exc.headers)

    def _principal(self, route: Route, request: Any) -> Principal:
        """Who calls: the ``Authorization`` header, or on a ticket route a ``ticket`` without one."""
        header = request.headers.get("Authorization")
        if route.ticket and header is None and "ticket" in request.query:
            return self.auth.redeem(request.query["ticket"])
        return self.auth.principal(header)

    @staticmethod
    def _said(route: Route, request: Any, principal: Any, status: int, error: str = "") -> None:
        """One log line per change asked for (the audit trail has the details of what happened)."""
        if route.role is not None and route.role >= Role.OPERATOR:
            who = principal.name if principal is not None else "-"
            log.info("%s %s by %s: %d %s", request.method, request.path, who, status, error)


async def _stream(request: Any, events: Subscription) -> Any:
    """Write *events* as server-sent events until the console stops or the client goes away."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            # A buffering reverse proxy (nginx) would hold events back until its buffer fills.
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    try:
        await response.write(b": connected\n\n")
        while True:
            try:
                event_id, kind, record = await asyncio.wait_for(anext(events), KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            except StopAsyncIteration:
                break
            data = dumps(_shown(kind, record)).decode()
            await response.write(f"id: {event_id}\nevent: {kind}\ndata: {data}\n\n".encode())
    except ConnectionResetError:
        pass  # the client went away
    finally:
        events.close()
    return response


def _shown(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """A record as the JSON routes give it (a window's ``detail`` parsed)."""
    if kind == "window" and isinstance(record.get("detail"), str):
        try:
            return {**record, "detail": json.loads(record["detail"])}
        except ValueError:
            return record
    return record


def _single(query: Any) -> dict[str, str]:
    """Query parameters as one value each; a repeated one is an error rather than a silent pick."""
    out: dict[str, str] = {}
    for key in query:
        values = query.getall(key)
        if len(values) > 1:
            raise ApiError(400, f"{key}: given {len(values)} times, expected once", field=key, value=values)
        out[key] = values[0]
    return out


def _view(methods: Mapping[str, Route], dispatcher: Dispatcher) -> type[View]:
    """A faust view answering *methods* (HTTP method -> route) of one path."""

    async def handle(self: View, request: Request, **match: str) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await dispatcher.answer(self, methods[method], request, match)

    name = "".join(part.title() for part in next(iter(methods.values())).name.split("_")) + "View"
    return type(name, (View,), {m.lower(): handle for m in methods})


def register(app: faust.App, handler: ConsoleHandler, auth: Auth, routes: Sequence[Route]) -> None:
    """Serve *routes* and the console's page (``/``, :mod:`services.console.page`) on *app*'s web server."""
    dispatcher = Dispatcher(handler, auth)
    by_path: dict[str, dict[str, Route]] = {}
    for route in routes:
        by_path.setdefault(route.url, {})[route.method] = route
    for url, methods in by_path.items():
        app.page(url, name=url)(_view(methods, dispatcher))
    register_page(app)
