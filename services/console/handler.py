"""What each API route does, once the request is authenticated and its fields checked.

One coroutine per route of :func:`~services.console.routes.routes` (by its
``name``), taking a :class:`Call` and returning a :class:`Reply`. Reads come
from the :class:`~services.console.tables.Tables`; changes call the lifecycle's
own operations (:mod:`rigwatch.lifecycle.operations`, the command line's too)
with the caller's principal as the actor. Those block on the broker and the
model store for up to seconds, so they go through *run*, which the app binds to a
thread pool: the event loop keeps serving and following the topics meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rigwatch.config import Settings
from rigwatch.exceptions import ModelError, RigwatchError
from rigwatch.fastcodec import compile_encoder
from rigwatch.lifecycle import operations
from rigwatch.lifecycle.deployments import pending_changes, read_deployments
from rigwatch.lifecycle.operations import Change
from rigwatch.lifecycle.store import ModelStore
from rigwatch.schemas import Codecs
from services.console.errors import ApiError, from_exception
from services.console.events import Hub
from services.console.publish import Publisher
from services.console.scoring import complete, score_readings
from services.console.tables import KINDS, Tables
from services.console.tickets import Tickets
from services.console.tokens import Principal
from services.scorer.handler import Scorer

__all__ = ["Call", "ConsoleHandler", "ModelCache", "Reply", "Runner"]

T = TypeVar("T")
#: Runs a blocking call off the event loop: ``await run(fn, *args)``.
Runner = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Call:
    """A checked request: who calls (None on the routes that need no token) and its fields."""

    principal: Principal | None
    path: dict[str, Any] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def actor(self) -> str:
        """The audit trail's actor: the token's principal."""
        if self.principal is None:
            raise ApiError(401, "this route needs a token")
        return self.principal.name


@dataclass(frozen=True)
class Reply:
    """A JSON answer."""

    body: Any
    status: int = 200


class ModelCache:
    """Scorers by model version, loaded once (off the loop) and kept for the next requests.

    Parameters
    ----------
    load
        Blocking: the :class:`Scorer` of a version (it loads the package from the store).
    run
        Runs *load* off the event loop.
    size
        Versions kept; the least recently used goes first.
    """

    def __init__(self, load: Callable[[str], Scorer], run: Runner, size: int = 4) -> None:
        self.load, self.run, self.size = load, run, size
        self._scorers: OrderedDict[str, Scorer] = OrderedDict()
        self._loading: dict[str, asyncio.Future[Scorer]] = {}

    async def get(self, version: str) -> Scorer:
        """The scorer of *version*; concurrent first requests share one load."""
        scorer = self._scorers.get(version)
        if scorer is not None:
            self._scorers.move_to_end(version)
            return scorer
        loading = self._loading.get(version)
        if loading is None:
            loading = self._loading[version] = asyncio.ensure_future(self.run(self.load, version))
            loading.add_done_callback(lambda _: self._loading.pop(version, None))
        scorer = await asyncio.shield(loading)
        self._scorers[version] = scorer
        while len(self._scorers) > self.size:
            self._scorers.popitem(last=False)
        return scorer

    def loaded(self) -> list[str]:
        """The versions loaded now, least recently used first."""
        return list(self._scorers)


def _change(change: Change) -> Reply:
    """The answer to an operation: 202 when it only proposed a change, else 200."""
    body = {
        "change": change.record,
        "guardrails": [g.to_record() for g in change.guardrails],
        "audit_event": change.event,
    }
    return Reply(body, 202 if change.record.get("state") == "pending" else 200)


def _window(window: dict[str, Any]) -> dict[str, Any]:
    """A MetricWindow as JSON: its ``detail`` parsed (it is JSON text on the wire)."""
    try:
        detail = json.loads(window["detail"]) if window.get("detail") else None
    except ValueError:
        detail = window["detail"]
    return {**window, "detail": detail}


def _registration(reg: Any) -> dict[str, Any]:
    out: dict[str, Any] = reg.to_dict()
    out.pop("path", None)  # where the store keeps it on the server's disk is nobody's business here
    return out


class ConsoleHandler:
    """The API's operations over the tables, the model store and the lifecycle.

    Parameters
    ----------
    settings
        Broker (bound), topics and model store.
    tables
        What the console's agents have read.
    models
        Scorers of the champions, by version.
    run
        Runs blocking calls off the event loop.
    publisher
        Where scored readings go (the readings topic); None: nowhere (tests).
    ready
        Whether the tables have caught up with the topics.
    openapi
        The OpenAPI document served as it is.
    max_readings
        Most readings per ``POST /score``.
    codecs
        The record codecs (loaded when None).
    hub
        Where ``GET /events`` subscribes (the tables' listener); None: no events.
    tickets
        Where ``POST /events/ticket`` issues tickets (the server redeems them); None: none.
    """

    def __init__(
        self,
        settings: Settings,
        tables: Tables,
        models: ModelCache,
        run: Runner,
        *,
        publisher: Publisher | None,
        ready: Callable[[], bool],
        openapi: dict[str, Any],
        max_readings: int = 10_000,
        codecs: Codecs | None = None,
        hub: Hub | None = None,
        tickets: Tickets | None = None,
    ) -> None:
        self.max_readings, self.hub, self.tickets = max_readings, hub, tickets
        self.settings, self.tables, self.model_cache, self.run = settings, tables, models, run
        self.publisher, self.ready, self._openapi = publisher, ready, openapi
        self.codecs = codecs or Codecs.load()
        self.store = ModelStore(settings.model_store)
        self._encode = compile_encoder(self.codecs.sensor_reading)

    # ------------------------------------------------------------------ meta

    async def health(self, call: Call) -> Reply:
        # No token needed here (a liveness probe), so nothing but whether the tables are whole.
        return Reply({"ready": self.ready(), "records": dict(self.tables.counts)})

    async def openapi(self, call: Call) -> Reply:
        return Reply(self._openapi)

    async def me(self, call: Call) -> Reply:
        assert call.principal is not None
        return Reply(call.principal.to_dict())

    # ------------------------------------------------------------------ scoring

    async def score(self, call: Call) -> Reply:
        """Score the readings with the champion; publish them (unless ``publish`` is false)."""
        if len(call.body["readings"]) > self.max_readings:
            raise ApiError(
                400,
                f"readings: {len(call.body['readings'])} readings, at most {self.max_readings} per request"
                " (RIGWATCH_CONSOLE_MAX_READINGS)",
                field="readings",
                value=f"{len(call.body['readings'])} readings",
            )
        name = self._scoring_deployment(call.body["deployment"])
        champion = self.tables.deployments()[name]["champion"]
        try:
            scorer = await self.model_cache.get(champion)
        except RigwatchError as exc:
            raise ApiError(503, f"deployment {name!r}: its champion {champion} does not load: {exc}") from exc
        now_ms = int(time.time() * 1000)
        readings = [complete(r, now_ms) for r in call.body["readings"]]
        # On the loop, not in a thread: it is CPU work under the GIL either way (~0.5 ms a request
        # plus ~10 µs a reading; max_readings bounds it), and a Scorer is not made for concurrent calls.
        scored = score_readings(scorer, self._encode, self.codecs.prediction.decode, readings, now_ms)
        published = 0
        if call.body["publish"] and self.publisher is not None:
            records = [(r["rig_id"], v) for r, v in zip(readings, scored.values, strict=True)]
            try:
                await self.publisher.send(self.settings.topics.sensor_readings, records)
            except RigwatchError as exc:
                raise ApiError(
                    503,
                    f"scored, but the readings could not be published to"
                    f" {self.settings.topics.sensor_readings}: {exc}",
                    extra={"event_ids": [r["event_id"] for r in readings]},
                ) from exc
            published = len(records)
        return Reply(
            {
                "deployment": name,
                "model_name": scorer.model.name,
                "model_version": scorer.model.version,
                "predictions": scored.predictions,
                "rejects": scored.rejects,
                "published": published,
            }
        )

    def _scoring_deployment(self, name: str | None) -> str:
        """The deployment a score request names, or the only one; it must exist."""
        if not self.ready():
            raise ApiError(503, "the console is still reading rig.deployments; try again in a moment")
        known = self.tables.deployments()
        if name is None:
            if len(known) == 1:
                return next(iter(known))
            if not known:
                raise ApiError(
                    404, "no deployment exists yet: `rigwatch deploy create NAME VERSION`", field="deployment"
                )
            raise ApiError(
                400,
                f"deployment: missing, and there are {len(known)} ({', '.join(sorted(known))}): name one",
                field="deployment",
                value=None,
            )
        if name not in known:
            raise ApiError(
                404,
                f"deployment {name!r} does not exist (deployments: {', '.join(sorted(known)) or 'none yet'})",
                field="deployment",
                value=name,
            )
        return name

    # ------------------------------------------------------------------ deployments (reads)

    def _state(self, name: str, now_ms: int) -> dict[str, Any]:
        state = dict(self.tables.deployments()[name])
        running = self.tables.scorers(name, now_ms)
        comparison = None
        if state.get("challenger"):
            found = self.tables.comparison(state["champion"], state["challenger"])
            comparison = _window(found) if found is not None else None
        return {
            **state,
            "pending": self.tables.pending_changes(name),
            "scorers": running,
            "versions_served": sorted({b["version"] for b in running if b.get("version")}),
            "comparison": comparison,
        }

    async def deployments(self, call: Call) -> Reply:
        now_ms = int(time.time() * 1000)
        return Reply(
            {
                "ready": self.ready(),
                "deployments": [self._state(n, now_ms) for n in sorted(self.tables.deployments())],
            }
        )

    async def deployment(self, call: Call) -> Reply:
        name = call.path["name"]
        if name not in self.tables.deployments():
            if not self.ready():
                raise ApiError(503, "the console is still reading rig.deployments; try again in a moment")
            known = ", ".join(sorted(self.tables.deployments())) or "none yet"
            raise ApiError(
                404, f"deployment {name!r} does not exist (deployments: {known})", field="name", value=name
            )
        return Reply(self._state(name, int(time.time() * 1000)))

    async def changes(self, call: Call) -> Reply:
        return Reply({"pending": self.tables.pending_changes(call.query["deployment"])})

    # ------------------------------------------------------------------ deployments (changes)

    async def _known_deployment(self, name: str) -> None:
        """A 404 naming ``name`` unless *name* exists (the broker decides if the tables do not know it)."""
        if name in self.tables.deployments():
            return
        known = await self._call(read_deployments, self.settings)
        if name not in known:
            listed = ", ".join(sorted(known)) or "none yet"
            raise ApiError(
                404, f"deployment {name!r} does not exist (deployments: {listed})", field="name", value=name
            )

    async def _known_version(self, version: str, field_name: str = "version") -> str:
        """The full version *version* (or a unique prefix) names; 404 / 400 naming *field_name*."""
        versions = await self._call(self.store.versions)
        wanted = version.strip().lower()
        matches = [v for v in versions if v.startswith(wanted)]
        if not matches:
            raise ApiError(
                404,
                f"model version {version!r} is not in the store (`GET /api/v1/models` lists them)",
                field=field_name,
                value=version,
            )
        if len(matches) > 1:
            raise ApiError(
                400,
                f"model version prefix {version!r} matches {len(matches)} versions ({', '.join(matches)});"
                " give more digits",
                field=field_name,
                value=version,
            )
        return matches[0]

    async def _pending_change(self, change_id: str) -> dict[str, Any]:
        """The pending change *change_id* (or a unique prefix) names; 404 / 400 naming ``change_id``."""

        def matching(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [c for c in changes if c["change_id"].startswith(change_id)]

        found = matching(self.tables.pending_changes())
        if len(found) != 1:  # the tables may lag: the broker decides
            found = matching(list((await self._call(pending_changes, self.settings)).values()))
        if not found:
            raise ApiError(404, f"no pending change {change_id!r}", field="change_id", value=change_id)
        if len(found) > 1:
            ids = ", ".join(c["change_id"] for c in found)
            raise ApiError(
                400, f"change id {change_id!r} matches {ids}: give more", field="change_id", value=change_id
            )
        return found[0]

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """*fn* off the loop; a rigwatch error becomes its API answer."""
        try:
            return await self.run(fn, *args, **kwargs)  # type: ignore[no-any-return]
        except RigwatchError as exc:
            raise from_exception(exc) from exc

    async def promote(self, call: Call) -> Reply:
        name, body = call.path["name"], call.body
        await self._known_deployment(name)
        version = await self._known_version(body["version"])
        change = await self._call(
            operations.promote,
            self.settings,
            name,
            version,
            reason=body["reason"],
            comment=body["comment"],
            actor=call.actor,
            force=body["force"],
        )
        return _change(change)

    async def rollback(self, call: Call) -> Reply:
        name, body = call.path["name"], call.body
        await self._known_deployment(name)
        change = await self._call(
            operations.rollback,
            self.settings,
            name,
            reason=body["reason"],
            comment=body["comment"],
            actor=call.actor,
        )
        return _change(change)

    async def start_challenge(self, call: Call) -> Reply:
        name, body = call.path["name"], call.body
        await self._known_deployment(name)
        if body["mode"] == "canary" and body["percent"] is None:
            raise ApiError(
                400, "percent: a canary needs the share of rigs it serves (0-100)", field="percent"
            )
        if body["mode"] == "shadow" and body["percent"] is not None:
            raise ApiError(
                400,
                "percent: only a canary serves a share (shadow serves none)",
                field="percent",
                value=body["percent"],
            )
        version = await self._known_version(body["version"])
        change = await self._call(
            operations.start_challenge,
            self.settings,
            name,
            version,
            mode=body["mode"],
            percent=body["percent"],
            auto_promote=body["auto_promote"],
            min_pairs=body["min_pairs"],
            reason=body["reason"],
            comment=body["comment"],
            actor=call.actor,
        )
        return _change(change)

    async def end_challenge(self, call: Call) -> Reply:
        name, body = call.path["name"], call.body
        await self._known_deployment(name)
        change = await self._call(
            operations.end_challenge,
            self.settings,
            name,
            reason=body["reason"],
            comment=body["comment"],
            actor=call.actor,
        )
        return _change(change)

    async def approve(self, call: Call) -> Reply:
        change = await self._pending_change(call.path["change_id"])
        try:
            done = await self.run(
                operations.approve,
                self.settings,
                change["change_id"],
                actor=call.actor,
                comment=call.body["comment"],
            )
        except RigwatchError as exc:
            answer = from_exception(exc)
            if change["actor"] == call.actor and answer.status == 409:
                answer.status = 403  # four eyes: refused because of who asks (and audited as such)
            raise answer from exc
        return _change(done)

    async def reject(self, call: Call) -> Reply:
        change = await self._pending_change(call.path["change_id"])
        done = await self._call(
            operations.reject,
            self.settings,
            change["change_id"],
            actor=call.actor,
            reason=call.body["reason"],
            comment=call.body["comment"],
        )
        return _change(done)

    # ------------------------------------------------------------------ models

    async def models(self, call: Call) -> Reply:
        return Reply({"models": [_registration(r) for r in await self._call(self.store.list)]})

    async def model(self, call: Call) -> Reply:
        version = await self._known_version(call.path["version"])
        try:
            reg = await self.run(self.store.get, version)
        except ModelError as exc:
            raise from_exception(exc, field="version", value=call.path["version"]) from exc
        serves = [
            {"deployment": name, "as": role}
            for name, state in sorted(self.tables.deployments().items())
            for role in ("champion", "challenger", "previous_champion")
            if state.get(role) == version
        ]
        comments = self.tables.audit_events(model_version=version, actions=("comment",))
        return Reply({**_registration(reg), "serves": serves, "comments": comments})

    async def comment_model(self, call: Call) -> Reply:
        version = await self._known_version(call.path["version"])
        event = await self._call(
            operations.comment_model, self.settings, version, call.body["text"], actor=call.actor
        )
        return Reply({"audit_event": event})

    # ------------------------------------------------------------------ monitoring

    async def alerts(self, call: Call) -> Reply:
        state, limit = call.query["state"], call.query["limit"]
        if state == "active":
            return Reply({"state": state, "alerts": self.tables.active_alerts()[:limit]})
        return Reply({"state": state, "alerts": self.tables.recent_alerts(limit)})

    async def windows(self, call: Call) -> Reply:
        q = call.query
        found = self.tables.window_list(q["kind"], q["subject"], q["since"], q["until"], q["limit"])
        return Reply({"windows": [_window(w) for w in found], "subjects": self.tables.subjects()})

    async def events(self, call: Call) -> Reply:
        """A :class:`~services.console.events.Subscription`, which the server streams as events."""
        kinds = call.query["kinds"].split(",")
        if unknown := [k for k in kinds if k not in KINDS]:
            raise ApiError(
                400,
                f"kinds: {', '.join(unknown)} unknown; expected some of {', '.join(KINDS)}",
                field="kinds",
                value=call.query["kinds"],
            )
        if self.hub is None:
            raise ApiError(503, "this console serves no events")
        return Reply(self.hub.subscribe(kinds))

    async def events_ticket(self, call: Call) -> Reply:
        """A ticket for one ``GET /events`` of the caller (for a browser's ``EventSource``)."""
        if self.hub is None or self.tickets is None:
            raise ApiError(503, "this console serves no events")
        assert call.principal is not None
        return Reply({"ticket": self.tickets.issue(call.principal), "expires_in_s": self.tickets.ttl_s})

    async def audit(self, call: Call) -> Reply:
        q = call.query
        events = self.tables.audit_events(q["deployment"], q["since"], q["model_version"])
        return Reply({"events": events[-q["limit"] :]})
