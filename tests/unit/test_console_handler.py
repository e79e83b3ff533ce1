"""The console's handler without a broker: scoring through the streaming scorer, and its refusals."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from rigwatch.config import Settings
from rigwatch.exceptions import ConfigError, DeliveryError, ModelError, StackError
from rigwatch.fastcodec import compile_encoder
from rigwatch.lifecycle.exceptions import GuardrailsFailed, LifecycleError
from rigwatch.lifecycle.guardrails import GuardrailResult
from rigwatch.schemas import Codecs
from services.console.errors import ApiError, from_exception
from services.console.handler import Call, ConsoleHandler, ModelCache
from services.console.roles import Role
from services.console.routes import routes
from services.console.server import dumps
from services.console.tables import Tables
from services.console.tokens import Principal
from services.console.validation import parse_object
from services.scorer.handler import Scorer
from services.scorer.humility import HumilityRules

VIEWER = Principal("vera", Role.VIEWER)


async def _inline(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def _handler(
    scorer: Scorer, *, ready: bool = True, deployments: tuple[str, ...] = ("cooler",)
) -> ConsoleHandler:
    tables = Tables()
    for name in deployments:
        tables.add("deployment", {"deployment": name, "state": "active", "champion": scorer.model.version,
                                  "change_id": name})  # fmt: skip
    models = ModelCache(lambda version: scorer, _inline)
    return ConsoleHandler(
        Settings(bootstrap="unused:9092"), tables, models, _inline, publisher=None, ready=lambda: ready,
        openapi={},
    )  # fmt: skip


def _score_body(data: dict[str, Any]) -> dict[str, Any]:
    body = next(r for r in routes() if r.name == "score").body
    assert body is not None
    return parse_object(data, body)


@pytest.fixture(scope="module")
def scorer(real_model: Any) -> Scorer:
    codecs = Codecs.load()
    rules = HumilityRules(uncertain_below=0.999, uncertain_action="override", fallback_label="20")
    return Scorer(real_model, codecs.sensor_reading, codecs.prediction, rules=rules)


def test_score_gives_what_the_streaming_scorer_gives_for_the_same_bytes(
    scorer: Scorer, real_dataset: Any
) -> None:
    readings = [{"event_id": f"e{i}", "rig_id": "rig-1", "cycle": i, "event_time": 7} | real_dataset.row(i)
                for i in range(0, 2000, 10)]  # fmt: skip
    readings[3]["psa_bar"] = None  # scored, flagged missing
    codecs = Codecs.load()

    reply = asyncio.run(_handler(scorer).score(Call(VIEWER, body=_score_body({"readings": readings}))))

    direct = scorer.score([compile_encoder(codecs.sensor_reading)(r) for r in readings], now_ms=0)
    want = [codecs.prediction.decode(v) for _, v in direct.outputs]
    got = reply.body["predictions"]
    strip = ("scored_time", "processing_ms", "index")
    assert [{k: v for k, v in p.items() if k not in strip} for p in got] == [
        {k: v for k, v in p.items() if k not in strip} for p in want
    ]
    assert [p["index"] for p in got] == direct.indices and reply.body["rejects"] == []
    assert any(f.startswith("missing:") for f in got[3]["flags"])
    assert reply.body["deployment"] == "cooler" and reply.body["published"] == 0


def test_readings_without_an_event_id_get_a_fresh_one_each(scorer: Scorer, real_dataset: Any) -> None:
    body = _score_body({"readings": [{"rig_id": "r"} | real_dataset.row(0)] * 2})

    reply = asyncio.run(_handler(scorer).score(Call(VIEWER, body=body)))

    ids = [p["event_id"] for p in reply.body["predictions"]]
    assert len(set(ids)) == 2 and all(len(i) == 36 for i in ids)


@pytest.mark.parametrize(
    ("ready", "deployments", "data", "status", "field"),
    [
        (False, ("cooler",), {"readings": {"rig_id": "r"}}, 503, None),
        (True, ("cooler",), {"deployment": "fan", "readings": {"rig_id": "r"}}, 404, "deployment"),
        (True, ("cooler", "fan"), {"readings": {"rig_id": "r"}}, 400, "deployment"),
        (True, (), {"readings": {"rig_id": "r"}}, 404, "deployment"),
        (True, ("cooler",), {"readings": [{"rig_id": "r"}] * 11}, 400, "readings"),
    ],
)
def test_score_refusals(
    scorer: Scorer, ready: bool, deployments: tuple[str, ...], data: dict, status: int, field: str | None
) -> None:
    handler = _handler(scorer, ready=ready, deployments=deployments)
    handler.max_readings = 10

    with pytest.raises(ApiError) as refused:
        asyncio.run(handler.score(Call(VIEWER, body=_score_body(data))))

    assert (refused.value.status, refused.value.field) == (status, field)


def test_a_champion_that_does_not_load_is_a_503(scorer: Scorer) -> None:
    handler = _handler(scorer)

    def broken(version: str) -> Scorer:
        raise ModelError(f"{version}: model.txt is not a LightGBM model")

    handler.model_cache = ModelCache(broken, _inline)
    with pytest.raises(ApiError) as refused:
        asyncio.run(handler.score(Call(VIEWER, body=_score_body({"readings": {"rig_id": "r"}}))))
    assert refused.value.status == 503 and "does not load" in refused.value.message


def test_model_cache_loads_a_version_once_and_keeps_the_most_recent() -> None:
    loads: list[str] = []

    async def slow(fn: Callable[..., Any], *args: Any) -> Any:
        await asyncio.sleep(0.01)
        return fn(*args)

    def load(version: str) -> Any:
        loads.append(version)
        return f"scorer-{version}"

    async def scenario() -> list[Any]:
        cache = ModelCache(load, slow, size=2)
        first = await asyncio.gather(*(cache.get("a") for _ in range(5)))
        await cache.get("b")
        await cache.get("a")
        await cache.get("c")  # evicts b, the least recently used
        return [first, cache.loaded()]

    first, loaded = asyncio.run(scenario())
    assert first == ["scorer-a"] * 5 and loads == ["a", "b", "c"] and loaded == ["a", "c"]


def test_exceptions_map_to_4xx_or_503_never_500() -> None:
    failed = GuardrailsFailed("abc", [GuardrailResult("same_features", False, "feature 'x' missing")])

    assert from_exception(failed).status == 422
    assert from_exception(failed).body()["guardrails"][0]["name"] == "same_features"
    assert from_exception(LifecycleError("has no previous champion")).status == 409
    assert from_exception(ModelError("not in the store"), field="version", value="ffff").body() == {
        "error": "not in the store", "field": "version", "value": "ffff",
    }  # fmt: skip
    assert from_exception(ConfigError("bad")).status == 400
    assert from_exception(StackError("no broker")).status == 503
    assert from_exception(DeliveryError("lost")).status == 503


def test_json_answers_are_strict_json() -> None:
    assert (
        dumps({"a": [float("nan"), float("inf"), 1.5], "b": None}) == b'{"a": [null, null, 1.5], "b": null}'
    )
