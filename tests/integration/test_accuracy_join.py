"""The accuracy join on a real Redis: the Lua join inside the window store's batch script, and its expiry."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis

from rigwatch.model.calibration import ConfidenceCalibration
from rigwatch.runtime.checkpoint import SourceSpan, StaleBatch
from rigwatch.schemas import Codecs
from rigwatch.stack import Endpoints
from rigwatch.windowstore import WindowStore
from services.accuracy.handler import AccuracyHandler, Pairs
from services.accuracy.join import JOIN_LUA, JOINED, SEP, SWEEP_LUA, event_key

pytestmark = pytest.mark.integration

SIZE, LATENESS, IDLE, HORIZON = 10_000, 5_000, 60_000, 60_000
T0 = 1_718_000_000_000  # a window start
CLASSES = ("3", "20", "100")
P, A = "rig.predictions/0", "rig.actuals/0"
#: Keys of the window store itself, beside the windows (``NS:w:...``) and the join state.
BOOKKEEPING = {"offsets", "watermarks", "seen", "open", "unlabelled", "expiry"}

CODECS = Codecs.load()
#: The event ids of the join's keys (:func:`event_key`) the tests made, to read its state back.
EVENT_IDS: dict[str, str] = {}


def _event(event_id: str) -> str:
    EVENT_IDS[event_key(event_id)] = event_id
    return event_id


def _prediction(event_id: str, **fields: Any) -> bytes:
    record: dict[str, Any] = {
        "event_id": _event(event_id),
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
    record = {"event_id": _event(event_id), "rig_id": "rig-7", "label": "100", "observed_time": T0 + 28_500}
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
        # Registered as AccuracyService does.
        self._sweep = client.register_script(SWEEP_LUA)
        self._next: dict[str, int] = {}

    def _feed(self, which: str, values: list[bytes], source: str, first: int | None) -> list[int]:
        first = self._next.get(source, 0) if first is None else first
        handle = self.handler.predictions if which == "predictions" else self.handler.actuals
        updates = handle(values, [source] * len(values))
        spans = [SourceSpan(source, first, first + len(values) - 1, updates.max_event_ms.get(source, -1))]
        args = self.handler.join_args(updates.extension)
        late, extension = self.store.apply_batch(spans, updates.updates, 0, (), args)
        assert late == {}
        self._next[source] = first + len(values)
        return [int(x) for x in extension]

    def checkpoint(self, predictions: list[bytes], actuals: list[bytes]) -> tuple[dict[str, int], list[int]]:
        """Apply predictions and actuals in one call, as a service's checkpoint does: ``(late, report)``."""
        p, a = (
            self.handler.predictions(predictions, [P] * len(predictions)),
            self.handler.actuals(actuals, [A] * len(actuals)),
        )
        spans = []
        for source, values, updates in ((P, predictions, p), (A, actuals, a)):
            if values:
                first = self._next.get(source, 0)
                spans.append(
                    SourceSpan(source, first, first + len(values) - 1, updates.max_event_ms.get(source, -1))
                )
                self._next[source] = first + len(values)
        args = self.handler.join_args(p.extension | a.extension)
        late, extension = self.store.apply_batch(spans, [], 0, (), args)
        return late, [int(x) for x in extension]

    def predict(self, *values: bytes, source: str = P, first: int | None = None) -> list[int]:
        """Apply one batch of predictions; the join's report ``[joined, dup predictions, dup actuals]``."""
        return self._feed("predictions", list(values), source, first)

    def label(self, *values: bytes, source: str = A, first: int | None = None) -> list[int]:
        """Apply one batch of actuals; the join's report."""
        return self._feed("actuals", list(values), source, first)

    def sweep(self, watermark: int, limit: int = 5_000) -> list[int]:
        """Expire join state as AccuracyService.expire does: ``[events, unlabelled, orphans]``."""
        result = self._sweep(
            keys=[f"{self.ns}:expiry", f"{self.ns}:unlabelled"], args=[f"{self.ns}:", watermark, limit]
        )
        return [int(x) for x in result]

    def items(self, subject: str, start_ms: int) -> list[str]:
        return [item.decode() for item in self.store.read_items(subject, start_ms)]

    def fields(self, subject: str, start_ms: int) -> dict[str, str]:
        fields, _ = self.store.read(subject, start_ms)
        return {k.decode(): v.decode() for k, v in fields.items()}

    def all_keys(self) -> set[str]:
        """Every key under the namespace, without the ``NS:`` prefix."""
        return {_text(k).removeprefix(f"{self.ns}:") for k in self.redis.scan_iter(match=f"{self.ns}:*")}

    def join_keys(self) -> set[str]:
        """The events with join state (``NS:e:<event key>``); no other key but windows and bookkeeping."""
        keys = {k for k in self.all_keys() if not k.startswith("w:") and k not in BOOKKEEPING}
        assert all(k.startswith("e:") for k in keys), keys
        return {EVENT_IDS[k.removeprefix("e:")] for k in keys}

    def event(self, event_id: str) -> dict[bytes, bytes]:
        """An event's join state: its actual (field ``b""``) and its versions' predictions."""
        return self.redis.hgetall(f"{self.ns}:e:{event_key(event_id)}")  # type: ignore[return-value]

    def item_lists(self) -> set[str]:
        """Windows holding pairs, as ``<start>:<subject>``."""
        return {k.removeprefix("w:").removesuffix(":items") for k in self.all_keys() if k.endswith(":items")}

    def expiry(self) -> dict[str, float]:
        members: list[tuple[bytes, float]] = self.redis.zrange(f"{self.ns}:expiry", 0, -1, withscores=True)  # type: ignore[assignment]
        return {EVENT_IDS[_text(m)]: float(s) for m, s in members}

    def unlabelled(self) -> dict[str, int]:
        return {_text(k): int(v) for k, v in (self.redis.hgetall(f"{self.ns}:unlabelled")).items()}

    def snapshot(self) -> dict[str, Any]:
        """Every key under the namespace with its value, to compare before and after."""
        out: dict[str, Any] = {}
        for key in self.all_keys():
            full = f"{self.ns}:{key}"
            kind = _text(self.redis.type(full))
            if kind == "hash":
                out[key] = self.redis.hgetall(full)
            elif kind == "string":
                out[key] = self.redis.get(full)
            elif kind == "zset":
                out[key] = self.redis.zrange(full, 0, -1, withscores=True)
            elif kind == "list":
                out[key] = self.redis.lrange(full, 0, -1)
            else:
                raise AssertionError(f"unexpected {kind} at {full}")
        return out


@pytest.fixture
def j(stack: Endpoints) -> Iterator[Join]:
    client = Redis.from_url(stack.redis_url)
    yield Join(client)
    client.close()


def _payload(event_ms: int, role: str = "champion") -> str:
    """The join's payload of a ``_prediction`` at *event_ms*."""
    return SEP.join(["rig-7", str(event_ms), "2", "0.125,0.25,0.625", "0.625", role])


def _item(event_ms: int, observed_ms: int, *, label: int = 2, version_role: str = "champion") -> str:
    """A pair as the join writes it: the prediction payload of ``_prediction``, then the actual's."""
    return SEP.join([_payload(event_ms, version_role), str(label), str(observed_ms)])


@pytest.mark.parametrize("first", ["prediction", "actual"])
@pytest.mark.parametrize("delay_ms", [25_000, -2_000], ids=["label_later", "label_stamped_earlier"])
def test_either_side_first_gives_one_pair_in_the_window_of_the_label_time(
    j: Join, first: str, delay_ms: int
) -> None:
    event_ms = T0 + 3_500
    observed_ms = event_ms + delay_ms
    label_start = max(event_ms, observed_ms) // SIZE * SIZE

    if first == "prediction":
        assert j.predict(_prediction("e1")) == [0, 0, 0]
        assert j.item_lists() == set()
        assert j.label(_actual("e1", observed_time=observed_ms)) == [1, 0, 0]
    else:
        assert j.label(_actual("e1", observed_time=observed_ms)) == [0, 0, 0]
        assert j.item_lists() == set()
        assert j.predict(_prediction("e1")) == [1, 0, 0]

    expected = _item(event_ms, observed_ms)
    assert j.item_lists() == {f"{label_start}:v1", f"{label_start}:rig:rig-7"}
    for subject in ("v1", "rig:rig-7"):
        assert j.items(subject, label_start) == [expected]
        fields = j.fields(subject, label_start)
        assert fields["labelled"] == "1"
        # Predictions count in the window of their event time, with their estimate.
        event_fields = j.fields(subject, T0)
        assert (event_fields["predictions"], float(event_fields["estimated_correct"])) == ("1", 0.625)
        if label_start != T0:
            assert "predictions" not in fields and "labelled" not in event_fields

    # The handler reads the pair back and scores it.
    items = j.store.read_items("v1", label_start)
    pairs = Pairs(items, 3)
    assert (pairs.rig, pairs.event_ms.tolist(), pairs.observed_ms.tolist()) == (
        ["rig-7"],
        [event_ms],
        [observed_ms],
    )
    raw_fields, _ = j.store.read("v1", label_start)
    metrics = j.handler.window("v1", label_start, raw_fields, items, 0, 0)["metrics"]
    assert isinstance(metrics, dict)
    assert (metrics["labelled"], metrics["accuracy"]) == (1.0, 1.0)

    # Join state: the prediction marked joined, the actual kept, both until the later time's horizon.
    joined = JOINED + _payload(event_ms)
    assert j.event("e1") == {b"v1": joined.encode(), b"": f"2{SEP}{observed_ms}".encode()}
    assert j.expiry() == {"e1": max(event_ms, observed_ms) + HORIZON}


def test_resent_prediction_and_second_actual_are_duplicates_and_make_no_second_pair(j: Join) -> None:
    assert j.predict(_prediction("e1")) == [0, 0, 0]
    # Re-sent by a restarted scorer: same event and version, other offsets (even another partition).
    assert j.predict(_prediction("e1", scored_time=T0 + 9_000), source="rig.predictions/3") == [
        0,
        1,
        0,
    ]
    assert j.label(_actual("e1")) == [1, 0, 0]
    assert j.predict(_prediction("e1")) == [0, 1, 0]
    # A second label for the event, another class: the first label wins.
    assert j.label(_actual("e1", label="3", observed_time=T0 + 29_000)) == [0, 0, 1]

    label_start = T0 + 20_000
    assert j.item_lists() == {f"{label_start}:v1", f"{label_start}:rig:rig-7"}
    for subject in ("v1", "rig:rig-7"):
        assert j.items(subject, label_start) == [_item(T0 + 3_500, T0 + 28_500)]
        assert (j.fields(subject, label_start))["labelled"] == "1"
        assert (j.fields(subject, T0))["predictions"] == "1"
    assert j.event("e1")[b""] == f"2{SEP}{T0 + 28_500}".encode()

    # Duplicates within one batch count the same way.
    assert j.predict(_prediction("e2"), _prediction("e2")) == [0, 1, 0]
    assert j.label(_actual("e2"), _actual("e2", label="20")) == [1, 0, 1]
    for subject in ("v1", "rig:rig-7"):
        assert (j.fields(subject, T0))["predictions"] == "2"
        assert len(j.items(subject, label_start)) == 2


def test_a_challenger_prediction_for_a_labelled_event_joins_the_kept_actual(j: Join) -> None:
    challenger = {
        "model_version": "v2",
        "role": "challenger",
        "probabilities": {"3": 0.5, "20": 0.25, "100": 0.25},
        "predicted_label": "3",
        "confidence": 0.5,
    }

    assert j.predict(_prediction("e1")) == [0, 0, 0]
    assert j.label(_actual("e1")) == [1, 0, 0]
    assert j.predict(_prediction("e1", **challenger), source="rig.predictions/1") == [1, 0, 0]

    label_start = T0 + 20_000
    champion_item = _item(T0 + 3_500, T0 + 28_500)
    prediction = SEP.join(["rig-7", str(T0 + 3_500), "0", "0.5,0.25,0.25", "0.5", "challenger"])
    challenger_item = SEP.join([prediction, "2", str(T0 + 28_500)])
    assert j.items("v1", label_start) == [champion_item]
    assert j.items("v2", label_start) == [challenger_item]
    assert j.items("rig:rig-7", label_start) == [champion_item, challenger_item]
    assert (j.fields("v2", label_start))["labelled"] == "1"
    assert (j.fields("rig:rig-7", label_start))["labelled"] == "2"
    assert (j.fields("v2", T0))["predictions"] == "1"
    assert (j.fields("rig:rig-7", T0))["predictions"] == "2"
    assert j.event("e1") == {
        b"v1": (JOINED + _payload(T0 + 3_500)).encode(),
        b"": f"2{SEP}{T0 + 28_500}".encode(),
        b"v2": (JOINED + prediction).encode(),
    }

    # Both versions waiting when the label comes: one pair each.
    assert j.predict(_prediction("e2"), _prediction("e2", **challenger)) == [0, 0, 0]
    assert j.label(_actual("e2")) == [2, 0, 0]
    assert len(j.items("v1", label_start)) == len(j.items("v2", label_start)) == 2
    assert len(j.items("rig:rig-7", label_start)) == 4


def test_a_replayed_batch_at_an_applied_offset_is_stale_and_joins_nothing(j: Join) -> None:
    assert j.predict(_prediction("e1")) == [0, 0, 0]  # offset 0
    assert j.label(_actual("e2")) == [0, 0, 0]  # offset 0
    before = j.snapshot()

    # A replay at the applied offset: its prediction would join the waiting actual e2.
    with pytest.raises(StaleBatch) as caught:
        j.predict(_prediction("e2"), _prediction("e3"), first=0)
    assert (caught.value.source, caught.value.applied) == (P, 0)
    # And an actual batch overlapping its applied offset would join e1.
    with pytest.raises(StaleBatch):
        j.label(_actual("e1"), first=0)
    assert j.snapshot() == before
    assert j.join_keys() == {"e1", "e2"}
    assert j.item_lists() == set()

    # The batch after the applied offset joins.
    assert j.predict(_prediction("e2"), first=1) == [1, 0, 0]
    assert j.label(_actual("e1"), first=1) == [1, 0, 0]
    assert len(j.items("v1", T0 + 20_000)) == 2


def test_expiry_counts_unjoined_predictions_and_orphan_actuals_and_drops_join_state(j: Join) -> None:
    # e1: never labelled. e2: joined. e3: a label no prediction met. e4: unlabelled, later, another rig.
    assert j.predict(_prediction("e1", rig_id="rig-1", event_time=T0 + 1_000)) == [0, 0, 0]
    assert j.predict(_prediction("e2", rig_id="rig-1", event_time=T0 + 2_000)) == [0, 0, 0]
    assert j.label(_actual("e2", rig_id="rig-1", observed_time=T0 + 5_000)) == [1, 0, 0]
    assert j.label(_actual("e3", observed_time=T0 + 3_000)) == [0, 0, 0]
    later = _prediction("e4", rig_id="rig-2", model_version="v2", event_time=T0 + 50_000)
    assert j.predict(later) == [0, 0, 0]
    assert j.expiry() == {
        "e1": T0 + 1_000 + HORIZON,
        "e2": T0 + 5_000 + HORIZON,
        "e3": T0 + 3_000 + HORIZON,
        "e4": T0 + 50_000 + HORIZON,
    }
    assert j.join_keys() == {"e1", "e2", "e3", "e4"}
    windows = {k: v for k, v in (j.snapshot()).items() if k.startswith("w:")}

    # Nothing is due before its horizon has passed.
    assert j.sweep(T0 + 1_000 + HORIZON - 1) == [0, 0, 0]
    # The watermark past e1, e2 and e3's horizons (inclusive), short of e4's.
    assert j.sweep(T0 + 5_000 + HORIZON) == [3, 1, 1]
    assert j.unlabelled() == {"v1": 1, "rig:rig-1": 1}
    assert j.join_keys() == {"e4"}
    assert j.expiry() == {"e4": T0 + 50_000 + HORIZON}
    # Windows are the store's business: expiry leaves them as they were.
    assert {k: v for k, v in (j.snapshot()).items() if k.startswith("w:")} == windows

    assert j.sweep(T0 + 50_000 + HORIZON - 1) == [0, 0, 0]
    assert j.sweep(T0 + 50_000 + HORIZON) == [1, 1, 0]
    assert j.unlabelled() == {"v1": 1, "rig:rig-1": 1, "v2": 1, "rig:rig-2": 1}
    assert j.join_keys() == set()
    assert j.expiry() == {}
    assert {k for k in j.all_keys() if not k.startswith("w:")} <= BOOKKEEPING


def test_expiry_works_through_in_batches_of_its_limit(j: Join) -> None:
    values = [_prediction(f"e{k}", event_time=T0 + k) for k in range(7)]
    assert j.predict(*values) == [0, 0, 0]
    assert j.label(_actual("e0"), _actual("e1")) == [2, 0, 0]
    # Oldest horizon first: e2..e6 (their event times), then e0, e1 (kept to their label's time).
    watermark = T0 + 28_500 + HORIZON
    assert j.sweep(watermark, limit=3) == [3, 3, 0]
    assert j.sweep(watermark, limit=3) == [3, 2, 0]
    assert j.sweep(watermark, limit=3) == [1, 0, 0]
    assert j.sweep(watermark, limit=3) == [0, 0, 0]
    assert j.unlabelled() == {"v1": 5, "rig:rig-7": 5}
    assert j.join_keys() == set()


def test_one_checkpoint_leaves_what_its_records_leave_applied_one_at_a_time(stack: Endpoints) -> None:
    """The join gathers a call's window updates and writes them per window at the end: nothing may change."""
    client = Redis.from_url(stack.redis_url)
    batched, single = Join(client), Join(client)
    challenger = {"model_version": "v2", "role": "challenger", "predicted_label": "3", "confidence": 0.5}
    for j in (batched, single):
        j.store.seal_before(T0)  # windows before T0 are closed: their records count as late
        # Waiting before the checkpoint: a prediction (e2) and a label (e3).
        assert j.checkpoint([_prediction("e2", confidence=0.75)], [_actual("e3")]) == ({}, [0, 0, 0])

    predictions = [
        _prediction("e1"),
        _prediction("e1", **challenger),
        _prediction("e1", scored_time=T0 + 9_000),  # re-sent: a duplicate
        _prediction("e3", confidence=0.8125),  # joins the kept label at once
        # In the window of that pair: the window got "labelled" before "predictions".
        _prediction("e8", event_time=T0 + 21_000, confidence=0.65),
        _prediction("e4", event_time=T0 - 5_000, confidence=0.9),  # a closed window: late
        _prediction("e5", rig_id="rig-2", event_time=T0 + 14_000, confidence=0.7),
        _prediction("e6", event_time=T0 + 3_700, confidence=0.6),
    ]
    actuals = [
        _actual("e1"),  # joins both versions' predictions of this checkpoint
        _actual("e2", label="20"),
        _actual("e1", label="3"),  # a second label: a duplicate
        _actual("e4", observed_time=T0 - 4_000),  # its pair's window is closed too: late
        _actual("e5", observed_time=T0 + 14_500),
        _actual("e7"),  # no prediction (yet)
    ]
    late, report = batched.checkpoint(predictions, actuals)
    one_by_one: dict[str, int] = {}
    totals = [0, 0, 0]
    calls: list[tuple[list[bytes], list[bytes]]] = [([p], []) for p in predictions]
    calls += [([], [a]) for a in actuals]
    for call in calls:
        part, counts = single.checkpoint(*call)
        for subject, n in part.items():
            one_by_one[subject] = one_by_one.get(subject, 0) + n
        totals = [x + y for x, y in zip(totals, counts, strict=True)]

    assert report == totals == [6, 1, 1]
    # The late prediction and the late pair, once for the version and once for the rig.
    assert late == one_by_one == {"v1": 2, "rig:rig-7": 2}

    def exact(snapshot: dict[str, Any]) -> dict[str, Any]:
        # Hash fields in Redis' order, so the order a window's fields were created in counts too.
        # Except the digits of estimated_correct: one checkpoint adds a window's estimates summed
        # in doubles, one record at a time Redis sums them in long double, so the two can differ
        # in the 17th digit (2.7875000000000001 against 2.78749999999999998). Compared to 12.
        def value(field: bytes, v: bytes) -> bytes | float:
            return round(float(v), 12) if field == b"estimated_correct" else v

        return {
            k: [(f, value(f, x)) for f, x in v.items()] if isinstance(v, dict) else v
            for k, v in snapshot.items()
        }

    assert exact(batched.snapshot()) == exact(single.snapshot())
    # Nothing trivial was compared: windows with pairs and with summed estimates exist.
    assert batched.item_lists() == {
        f"{T0 + 20_000}:v1",
        f"{T0 + 20_000}:v2",
        f"{T0 + 20_000}:rig:rig-7",
        f"{T0 + 20_000}:cmp:v1/v2",
        f"{T0 + 10_000}:v1",
        f"{T0 + 10_000}:rig:rig-2",
    }
    assert float(batched.fields("v1", T0)["estimated_correct"]) == pytest.approx(0.625 + 0.75 + 0.8125 + 0.6)
    client.close()


CHALLENGER = {
    "model_version": "v2",
    "role": "challenger",
    "probabilities": {"3": 0.5, "20": 0.25, "100": 0.25},
    "predicted_label": "3",
    "confidence": 0.5,
}


@pytest.mark.parametrize(
    "order",
    [
        ("champion", "challenger", "actual"),
        ("champion", "actual", "challenger"),
        ("challenger", "champion", "actual"),
        ("challenger", "actual", "champion"),
        ("actual", "champion", "challenger"),
        ("actual", "challenger", "champion"),
        ("together",),
    ],
)
def test_champion_and_challenger_of_an_event_are_compared_once_whatever_comes_first(
    j: Join, order: tuple[str, ...]
) -> None:
    records = {
        "champion": ([_prediction("e1")], []),
        "challenger": ([_prediction("e1", **CHALLENGER)], []),
        "actual": ([], [_actual("e1")]),
    }
    if order == ("together",):
        j.checkpoint([_prediction("e1"), _prediction("e1", **CHALLENGER)], [_actual("e1")])
    for name in order if order != ("together",) else ():
        j.checkpoint(*records[name])
        # Re-sent: duplicates compare nothing again.
        j.checkpoint(*records[name])

    label_start = T0 + 20_000
    champion = _payload(T0 + 3_500)
    challenger = SEP.join(["rig-7", str(T0 + 3_500), "0", "0.5,0.25,0.25", "0.5", "challenger"])
    assert j.items("cmp:v1/v2", label_start) == [SEP.join([champion, challenger, "2", str(T0 + 28_500)])]
    assert j.fields("cmp:v1/v2", label_start)["labelled"] == "1"
    fields = j.fields("cmp:v1/v2", T0)
    assert (fields["compared"], fields["agreements"]) == ("1", "0")
    assert (float(fields["estimated_champion"]), float(fields["estimated_challenger"])) == (0.625, 0.5)


def test_two_predictions_of_the_same_role_are_not_compared_and_agreement_counts_equal_labels(j: Join) -> None:
    # Two champions of one event (a promotion between a prediction and its replay): no comparison.
    j.checkpoint([_prediction("e1"), _prediction("e1", model_version="v3")], [_actual("e1")])
    assert not any(k.startswith("cmp:") for k in {s.split(":", 1)[1] for s in j.item_lists()})
    # A challenger agreeing with the champion.
    agreeing = CHALLENGER | {"predicted_label": "100", "probabilities": {"3": 0.1, "20": 0.1, "100": 0.8}}
    j.checkpoint([_prediction("e2"), _prediction("e2", **agreeing)], [])
    fields = j.fields("cmp:v1/v2", T0)
    assert (fields["compared"], fields["agreements"]) == ("1", "1")
    assert j.item_lists() - {f"{T0 + 20_000}:v1", f"{T0 + 20_000}:v3", f"{T0 + 20_000}:rig:rig-7"} == set()
