"""The accuracy join on a real Redis: the Lua join inside the window store's batch script, and its expiry."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from rigwatch.model.calibration import ConfidenceCalibration
from rigwatch.schemas import Codecs
from rigwatch.stack import Endpoints
from rigwatch.windowstore import SourceBatch, StaleBatch, WindowStore
from services.accuracy.handler import AccuracyHandler, Pairs
from services.accuracy.join import JOIN_LUA, JOINED, SEP, SWEEP_LUA

pytestmark = pytest.mark.integration

SIZE, LATENESS, IDLE, HORIZON = 10_000, 5_000, 60_000, 60_000
T0 = 1_718_000_000_000  # a window start
CLASSES = ("3", "20", "100")
P, A = "rig.predictions/0", "rig.actuals/0"
#: Keys of the window store itself, beside the windows (``NS:w:...``) and the join state.
BOOKKEEPING = {"offsets", "watermarks", "seen", "open", "unlabelled", "expiry"}

CODECS = Codecs.load()


def _prediction(event_id: str, **fields: Any) -> bytes:
    record: dict[str, Any] = {
        "event_id": event_id,
        "rig_id": "rig-7",
        "cycle": 7,
        "event_time": T0 + 3_500,
        "model_name": "cooler-lgbm",
        "model_version": "v1",
        "role": "champion",
        "probabilities": {"3": 0.125, "20": 0.25, "100": 0.625},
        "predicted_label": "100",
        "confidence": 0.625,
        "scored_time": T0 + 3_600,
        "flags": [],
        "processing_ms": 1.5,
    }
    return CODECS.prediction.encode(record | fields)


def _actual(event_id: str, **fields: Any) -> bytes:
    record = {"event_id": event_id, "rig_id": "rig-7", "label": "100", "observed_time": T0 + 28_500}
    return CODECS.actual.encode(record | fields)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Join:
    """A window store with the join and an accuracy handler on one fresh namespace; feeds batches."""

    def __init__(self, client: Redis) -> None:
        self.redis = client
        self.store = WindowStore(
            client,
            f"test:{uuid.uuid4().hex}",
            size_ms=SIZE,
            lateness_ms=LATENESS,
            idle_ms=IDLE,
            extension=JOIN_LUA,
        )
        self.ns = self.store.ns
        self.handler = AccuracyHandler(
            CODECS.prediction,
            CODECS.actual,
            CLASSES,
            ConfidenceCalibration.identity(),
            namespace=self.ns,
            size_ms=SIZE,
            horizon_ms=HORIZON,
            min_count=1,
        )
        # Registered as AccuracyProcessor does.
        self._sweep = client.register_script(SWEEP_LUA)
        self._next: dict[str, int] = {}

    async def _feed(self, which: str, values: list[bytes], source: str, first: int | None) -> list[int]:
        first = self._next.get(source, 0) if first is None else first
        handle = self.handler.predictions if which == "predictions" else self.handler.actuals
        updates = handle(values, [source] * len(values))
        spans = [SourceBatch(source, first, first + len(values) - 1, updates.max_event_ms.get(source, -1))]
        late, extension = await self.store.apply_batch(spans, updates.updates, 0, (), updates.extension_args)
        assert late == {}
        self._next[source] = first + len(values)
        return [int(x) for x in extension]

    async def predict(self, *values: bytes, source: str = P, first: int | None = None) -> list[int]:
        """Apply one batch of predictions; the join's report ``[joined, dup predictions, dup actuals]``."""
        return await self._feed("predictions", list(values), source, first)

    async def label(self, *values: bytes, source: str = A, first: int | None = None) -> list[int]:
        """Apply one batch of actuals; the join's report."""
        return await self._feed("actuals", list(values), source, first)

    async def sweep(self, watermark: int, limit: int = 5_000) -> list[int]:
        """Expire join state as AccuracyProcessor.expire does: ``[events, unlabelled, orphans]``."""
        result = await self._sweep(
            keys=[f"{self.ns}:expiry", f"{self.ns}:unlabelled"], args=[f"{self.ns}:", watermark, limit]
        )
        return [int(x) for x in result]

    async def items(self, subject: str, start_ms: int) -> list[str]:
        return [item.decode() for item in await self.store.read_items(subject, start_ms)]

    async def fields(self, subject: str, start_ms: int) -> dict[str, str]:
        fields, _ = await self.store.read(subject, start_ms)
        return {k.decode(): v.decode() for k, v in fields.items()}

    async def keys(self) -> set[str]:
        """Every key under the namespace, without the ``NS:`` prefix."""
        return {
            _text(k).removeprefix(f"{self.ns}:") async for k in self.redis.scan_iter(match=f"{self.ns}:*")
        }

    async def join_keys(self) -> set[str]:
        """Keys that are neither a window nor the store's bookkeeping: the join's per-event state."""
        return {k for k in await self.keys() if not k.startswith("w:") and k not in BOOKKEEPING}

    async def item_lists(self) -> set[str]:
        """Windows holding pairs, as ``<start>:<subject>``."""
        return {
            k.removeprefix("w:").removesuffix(":items") for k in await self.keys() if k.endswith(":items")
        }

    async def expiry(self) -> dict[str, float]:
        members = await self.redis.zrange(f"{self.ns}:expiry", 0, -1, withscores=True)
        return {_text(m): float(s) for m, s in members}

    async def unlabelled(self) -> dict[str, int]:
        return {_text(k): int(v) for k, v in (await self.redis.hgetall(f"{self.ns}:unlabelled")).items()}

    async def snapshot(self) -> dict[str, Any]:
        """Every key under the namespace with its value, to compare before and after."""
        out: dict[str, Any] = {}
        for key in await self.keys():
            full = f"{self.ns}:{key}"
            kind = _text(await self.redis.type(full))
            if kind == "hash":
                out[key] = await self.redis.hgetall(full)
            elif kind == "string":
                out[key] = await self.redis.get(full)
            elif kind == "zset":
                out[key] = await self.redis.zrange(full, 0, -1, withscores=True)
            elif kind == "list":
                out[key] = await self.redis.lrange(full, 0, -1)
            else:
                raise AssertionError(f"unexpected {kind} at {full}")
        return out


def _run(url: str, body: Callable[[Join], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        client = Redis.from_url(url)
        try:
            return await body(Join(client))
        finally:
            await client.aclose()

    return asyncio.run(main())


def _item(event_ms: int, observed_ms: int, *, label: int = 2, version_role: str = "champion") -> str:
    """A pair as the join writes it: the prediction payload of ``_prediction``, then the actual's."""
    prediction = SEP.join(["rig-7", str(event_ms), "2", "0.125,0.25,0.625", "0.625", version_role])
    return SEP.join([prediction, str(label), str(observed_ms)])


@pytest.mark.parametrize("first", ["prediction", "actual"])
@pytest.mark.parametrize("delay_ms", [25_000, -2_000], ids=["label_later", "label_stamped_earlier"])
def test_either_side_first_gives_one_pair_in_the_window_of_the_label_time(
    stack: Endpoints, first: str, delay_ms: int
) -> None:
    event_ms = T0 + 3_500
    observed_ms = event_ms + delay_ms
    label_start = max(event_ms, observed_ms) // SIZE * SIZE

    async def body(j: Join) -> None:
        if first == "prediction":
            assert await j.predict(_prediction("e1")) == [0, 0, 0]
            assert await j.item_lists() == set()
            assert await j.label(_actual("e1", observed_time=observed_ms)) == [1, 0, 0]
        else:
            assert await j.label(_actual("e1", observed_time=observed_ms)) == [0, 0, 0]
            assert await j.item_lists() == set()
            assert await j.predict(_prediction("e1")) == [1, 0, 0]

        expected = _item(event_ms, observed_ms)
        assert await j.item_lists() == {f"{label_start}:v1", f"{label_start}:rig:rig-7"}
        for subject in ("v1", "rig:rig-7"):
            assert await j.items(subject, label_start) == [expected]
            fields = await j.fields(subject, label_start)
            assert fields["labelled"] == "1"
            # Predictions count in the window of their event time, with their estimate.
            event_fields = await j.fields(subject, T0)
            assert (event_fields["predictions"], float(event_fields["estimated_correct"])) == ("1", 0.625)
            if label_start != T0:
                assert "predictions" not in fields and "labelled" not in event_fields

        # The handler reads the pair back and scores it.
        items = await j.store.read_items("v1", label_start)
        pairs = Pairs(items, 3)
        assert (pairs.rig, pairs.event_ms.tolist(), pairs.observed_ms.tolist()) == (
            ["rig-7"],
            [event_ms],
            [observed_ms],
        )
        fields, _ = await j.store.read("v1", label_start)
        metrics = j.handler.window("v1", label_start, fields, items, 0, 0)["metrics"]
        assert isinstance(metrics, dict)
        assert (metrics["labelled"], metrics["accuracy"]) == (1.0, 1.0)

        # Join state: the prediction marked joined, the actual kept, both until the later time's horizon.
        assert await j.redis.hgetall(f"{j.ns}:p:e1") == {b"v1": JOINED.encode()}
        assert await j.redis.get(f"{j.ns}:a:e1") == f"2{SEP}{observed_ms}".encode()
        assert await j.expiry() == {"e1": max(event_ms, observed_ms) + HORIZON}

    _run(stack.redis_url, body)


def test_resent_prediction_and_second_actual_are_duplicates_and_make_no_second_pair(stack: Endpoints) -> None:
    async def body(j: Join) -> None:
        assert await j.predict(_prediction("e1")) == [0, 0, 0]
        # Re-sent by a restarted scorer: same event and version, other offsets (even another partition).
        assert await j.predict(_prediction("e1", scored_time=T0 + 9_000), source="rig.predictions/3") == [
            0,
            1,
            0,
        ]
        assert await j.label(_actual("e1")) == [1, 0, 0]
        assert await j.predict(_prediction("e1")) == [0, 1, 0]
        # A second label for the event, another class: the first label wins.
        assert await j.label(_actual("e1", label="3", observed_time=T0 + 29_000)) == [0, 0, 1]

        label_start = T0 + 20_000
        assert await j.item_lists() == {f"{label_start}:v1", f"{label_start}:rig:rig-7"}
        for subject in ("v1", "rig:rig-7"):
            assert await j.items(subject, label_start) == [_item(T0 + 3_500, T0 + 28_500)]
            assert (await j.fields(subject, label_start))["labelled"] == "1"
            assert (await j.fields(subject, T0))["predictions"] == "1"
        assert await j.redis.get(f"{j.ns}:a:e1") == f"2{SEP}{T0 + 28_500}".encode()

        # Duplicates within one batch count the same way.
        assert await j.predict(_prediction("e2"), _prediction("e2")) == [0, 1, 0]
        assert await j.label(_actual("e2"), _actual("e2", label="20")) == [1, 0, 1]
        for subject in ("v1", "rig:rig-7"):
            assert (await j.fields(subject, T0))["predictions"] == "2"
            assert len(await j.items(subject, label_start)) == 2

    _run(stack.redis_url, body)


def test_a_challenger_prediction_for_a_labelled_event_joins_the_kept_actual(stack: Endpoints) -> None:
    challenger = {
        "model_version": "v2",
        "role": "challenger",
        "probabilities": {"3": 0.5, "20": 0.25, "100": 0.25},
        "predicted_label": "3",
        "confidence": 0.5,
    }

    async def body(j: Join) -> None:
        assert await j.predict(_prediction("e1")) == [0, 0, 0]
        assert await j.label(_actual("e1")) == [1, 0, 0]
        assert await j.predict(_prediction("e1", **challenger), source="rig.predictions/1") == [1, 0, 0]

        label_start = T0 + 20_000
        champion_item = _item(T0 + 3_500, T0 + 28_500)
        prediction = SEP.join(["rig-7", str(T0 + 3_500), "0", "0.5,0.25,0.25", "0.5", "challenger"])
        challenger_item = SEP.join([prediction, "2", str(T0 + 28_500)])
        assert await j.items("v1", label_start) == [champion_item]
        assert await j.items("v2", label_start) == [challenger_item]
        assert await j.items("rig:rig-7", label_start) == [champion_item, challenger_item]
        assert (await j.fields("v2", label_start))["labelled"] == "1"
        assert (await j.fields("rig:rig-7", label_start))["labelled"] == "2"
        assert (await j.fields("v2", T0))["predictions"] == "1"
        assert (await j.fields("rig:rig-7", T0))["predictions"] == "2"
        assert await j.redis.hgetall(f"{j.ns}:p:e1") == {b"v1": b"joined", b"v2": b"joined"}

        # Both versions waiting when the label comes: one pair each.
        assert await j.predict(_prediction("e2"), _prediction("e2", **challenger)) == [0, 0, 0]
        assert await j.label(_actual("e2")) == [2, 0, 0]
        assert len(await j.items("v1", label_start)) == len(await j.items("v2", label_start)) == 2
        assert len(await j.items("rig:rig-7", label_start)) == 4

    _run(stack.redis_url, body)


def test_a_replayed_batch_at_an_applied_offset_is_stale_and_joins_nothing(stack: Endpoints) -> None:
    async def body(j: Join) -> None:
        assert await j.predict(_prediction("e1")) == [0, 0, 0]  # offset 0
        assert await j.label(_actual("e2")) == [0, 0, 0]  # offset 0
        before = await j.snapshot()

        # A replay at the applied offset: its prediction would join the waiting actual e2.
        with pytest.raises(StaleBatch) as caught:
            await j.predict(_prediction("e2"), _prediction("e3"), first=0)
        assert (caught.value.source, caught.value.applied) == (P, 0)
        # And an actual batch overlapping its applied offset would join e1.
        with pytest.raises(StaleBatch):
            await j.label(_actual("e1"), first=0)
        assert await j.snapshot() == before
        assert await j.join_keys() == {"p:e1", "a:e2"}
        assert await j.item_lists() == set()

        # The batch after the applied offset joins.
        assert await j.predict(_prediction("e2"), first=1) == [1, 0, 0]
        assert await j.label(_actual("e1"), first=1) == [1, 0, 0]
        assert len(await j.items("v1", T0 + 20_000)) == 2

    _run(stack.redis_url, body)


def test_expiry_counts_unjoined_predictions_and_orphan_actuals_and_drops_join_state(stack: Endpoints) -> None:
    async def body(j: Join) -> None:
        # e1: never labelled. e2: joined. e3: a label no prediction met. e4: unlabelled, later, another rig.
        assert await j.predict(_prediction("e1", rig_id="rig-1", event_time=T0 + 1_000)) == [0, 0, 0]
        assert await j.predict(_prediction("e2", rig_id="rig-1", event_time=T0 + 2_000)) == [0, 0, 0]
        assert await j.label(_actual("e2", rig_id="rig-1", observed_time=T0 + 5_000)) == [1, 0, 0]
        assert await j.label(_actual("e3", observed_time=T0 + 3_000)) == [0, 0, 0]
        later = _prediction("e4", rig_id="rig-2", model_version="v2", event_time=T0 + 50_000)
        assert await j.predict(later) == [0, 0, 0]
        assert await j.expiry() == {
            "e1": T0 + 1_000 + HORIZON,
            "e2": T0 + 5_000 + HORIZON,
            "e3": T0 + 3_000 + HORIZON,
            "e4": T0 + 50_000 + HORIZON,
        }
        assert await j.join_keys() == {"p:e1", "p:e2", "a:e2", "a:e3", "p:e4"}
        windows = {k: v for k, v in (await j.snapshot()).items() if k.startswith("w:")}

        # Nothing is due before its horizon has passed.
        assert await j.sweep(T0 + 1_000 + HORIZON - 1) == [0, 0, 0]
        # The watermark past e1, e2 and e3's horizons (inclusive), short of e4's.
        assert await j.sweep(T0 + 5_000 + HORIZON) == [3, 1, 1]
        assert await j.unlabelled() == {"v1": 1, "rig:rig-1": 1}
        assert await j.join_keys() == {"p:e4"}
        assert await j.expiry() == {"e4": T0 + 50_000 + HORIZON}
        # Windows are the store's business: expiry leaves them as they were.
        assert {k: v for k, v in (await j.snapshot()).items() if k.startswith("w:")} == windows

        assert await j.sweep(T0 + 50_000 + HORIZON - 1) == [0, 0, 0]
        assert await j.sweep(T0 + 50_000 + HORIZON) == [1, 1, 0]
        assert await j.unlabelled() == {"v1": 1, "rig:rig-1": 1, "v2": 1, "rig:rig-2": 1}
        assert await j.join_keys() == set()
        assert await j.expiry() == {}
        assert {k for k in await j.keys() if not k.startswith("w:")} <= BOOKKEEPING

    _run(stack.redis_url, body)


def test_expiry_works_through_in_batches_of_its_limit(stack: Endpoints) -> None:
    async def body(j: Join) -> None:
        values = [_prediction(f"e{k}", event_time=T0 + k) for k in range(7)]
        assert await j.predict(*values) == [0, 0, 0]
        assert await j.label(_actual("e0"), _actual("e1")) == [2, 0, 0]
        # Oldest horizon first: e2..e6 (their event times), then e0, e1 (kept to their label's time).
        watermark = T0 + 28_500 + HORIZON
        assert await j.sweep(watermark, limit=3) == [3, 3, 0]
        assert await j.sweep(watermark, limit=3) == [3, 2, 0]
        assert await j.sweep(watermark, limit=3) == [1, 0, 0]
        assert await j.sweep(watermark, limit=3) == [0, 0, 0]
        assert await j.unlabelled() == {"v1": 5, "rig:rig-7": 5}
        assert await j.join_keys() == set()

    _run(stack.redis_url, body)
