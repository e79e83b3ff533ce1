"""The operations API of a running ``rigwatch console`` against the local broker, over HTTP.

One console process serves the module (it takes ~5 s to join its group and read its
topics); each test works on deployments of its own so their order does not matter.
"""

from __future__ import annotations

import csv
import http.client
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from streams import collect

from rigwatch.config import Settings
from rigwatch.data import SENSOR_COLUMNS
from rigwatch.harness import Process, ProcessHarness, free_port
from rigwatch.kafka import ReliableProducer, create_rig_topics
from rigwatch.lifecycle.operations import create_deployment, register_model, start_challenge
from rigwatch.model import train
from rigwatch.schemas import Codecs
from rigwatch.stack import Endpoints
from services.console.roles import Role
from services.console.routes import routes
from services.console.tokens import TokenStore

pytestmark = pytest.mark.integration

# Strict humility rules (as in test_score_file_streaming) so the rows exercise flags, overrides
# and rejects, and both the console and `rigwatch score` must apply them alike.
RULES = {
    "RIGWATCH_SCORER_OUTLYING_MARGIN": "0",
    "RIGWATCH_SCORER_OUTLYING_ACTION": "reject",
    "RIGWATCH_SCORER_UNCERTAIN_BELOW": "0.999",
    "RIGWATCH_SCORER_UNCERTAIN_ACTION": "override",
    "RIGWATCH_SCORER_FALLBACK_LABEL": "20",
}
#: Principal -> role of the module's tokens.
PEOPLE = {
    "vera": Role.VIEWER,
    "otto": Role.OPERATOR,
    "olga": Role.OPERATOR,
    "apu": Role.APPROVER,
    "ada": Role.ADMIN,
}


class Api:
    """A small HTTP client of the console's API (one connection per call)."""

    def __init__(self, port: int, tokens: dict[str, str]) -> None:
        self.port, self.tokens = port, tokens

    def call(
        self, method: str, path: str, body: Any = None, *, who: str | None = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if who is not None:
            headers["Authorization"] = f"Bearer {self.tokens.get(who, who)}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, data, headers)
            response = conn.getresponse()
            text = response.read()
        finally:
            conn.close()
        if response.getheader("Content-Type", "").startswith("application/json"):
            return response.status, json.loads(text)
        return response.status, text.decode()

    def get(self, path: str, *, who: str | None = None) -> tuple[int, Any]:
        return self.call("GET", "/api/v1" + path, who=who)

    def post(self, path: str, body: Any = None, *, who: str | None = None) -> tuple[int, Any]:
        return self.call("POST", "/api/v1" + path, body, who=who)

    def delete(self, path: str, body: Any = None, *, who: str | None = None) -> tuple[int, Any]:
        return self.call("DELETE", "/api/v1" + path, body, who=who)


@dataclass
class Console:
    settings: Settings
    api: Api
    process: Process
    env: dict[str, str]
    champion: str
    candidate: str


def _wait_ready(api: Api, proc: Process, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"console exited with {proc.returncode}:\n{proc.log.read_text()[-3000:]}")
        try:
            status, body = api.get("/health")
            if status == 200 and body["ready"]:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.2)
    pytest.fail(f"console not ready after {timeout:.0f} s:\n{proc.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def console(
    stack: Endpoints, model_dir: Path, real_dataset: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Console]:
    """A console on fresh topics: deployments ``cooler`` and ``guarded`` (approval required), five tokens."""
    tmp = tmp_path_factory.mktemp("console")
    settings = Settings(
        bootstrap=stack.bootstrap,
        redis_url=stack.redis_url,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        model_dir=model_dir,
        model_store=tmp / "store",
        run_dir=tmp / "run",
    )
    create_rig_topics(stack.bootstrap, settings.topics, partitions=4)
    champion, _ = register_model(settings, model_dir, name="cooler", actor="setup")
    candidate_dir = train(real_dataset, seed=7, num_threads=1).write(tmp / "candidate")
    candidate, _ = register_model(settings, candidate_dir, note="split seed 7", actor="setup")
    create_deployment(settings, "cooler", champion.version, actor="setup")
    create_deployment(settings, "guarded", champion.version, actor="setup", requires_approval=True)
    store = TokenStore(tmp / "tokens.json")
    tokens = {name: store.add(name, role) for name, role in PEOPLE.items()}
    port = free_port()
    env = settings.to_env(
        RIGWATCH_CONSOLE_TOKENS_FILE=str(store.path), RIGWATCH_CONSOLE_PORT=str(port), **RULES
    )
    with ProcessHarness(tmp) as children:
        proc = children.start(["console"], env)
        api = Api(port, tokens)
        _wait_ready(api, proc)
        yield Console(settings, api, proc, env, champion.version, candidate.version)
        outcomes = children.stop_all()
    failed = [o.describe() for o in outcomes if not o.clean]
    assert not failed, f"console did not stop cleanly: {failed}\n{proc.log.read_text()[-3000:]}"


def _until(fetch: Any, done: Any, timeout: float = 20.0) -> Any:
    """Call *fetch* until ``done(result)``; the tables follow the topics within a fetch wait or two."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if done(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def _csv_rows(hydraulic_dir: Path, n: int) -> list[dict[str, str]]:
    """The first *n* real cycles, every 17th with one sensor blank (scored, flagged missing)."""
    with open(hydraulic_dir / "hydraulic_cycles.csv", newline="") as f:
        rows = [row for _, row in zip(range(n), csv.DictReader(f), strict=False)]
    for i, row in enumerate(rows):
        if i % 17 == 3:
            row[SENSOR_COLUMNS[i % 16]] = ""
    return rows


# ---------------------------------------------------------------------------- scoring


def test_score_equals_rigwatch_score_for_the_same_rows(
    console: Console, hydraulic_dir: Path, tmp_path
) -> None:
    rows = _csv_rows(hydraulic_dir, 400)
    with open(tmp_path / "rows.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rigwatch",
            "score",
            str(tmp_path / "rows.csv"),
            "--deployment",
            "cooler",
            "--out",
            str(tmp_path / "scored.csv"),
            "--quiet",
        ],
        env=console.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "scored.csv", newline="") as f:
        scored = list(csv.DictReader(f))
    readings = [
        {"rig_id": "rig-1", "cycle": int(row["cycle"])}
        | {c: (float(row[c]) if row[c] else None) for c in SENSOR_COLUMNS}
        for row in rows
    ]

    status, body = console.api.post(
        "/score", {"deployment": "cooler", "readings": readings, "publish": False}, who="vera"
    )

    assert status == 200, body
    assert body["model_version"] == console.champion and body["published"] == 0
    got: dict[int, dict[str, Any]] = {p["index"]: p for p in body["predictions"]}
    rejected = {r["index"]: r for r in body["rejects"]}
    assert len(got) + len(rejected) == len(rows)
    classes = ("3", "20", "100")
    for i, want in enumerate(scored):
        if want["outcome"] == "rejected":
            assert (rejected[i]["reason"], rejected[i]["detail"]) == (want["error"], want["error_detail"]), i
            continue
        p = got[i]
        assert p["predicted_label"] == want["predicted_label"], i
        # JSON carries repr() of each double, which reads back exactly: equal, not close.
        assert [p["probabilities"][c] for c in classes] == [float(want[f"p_{c}"]) for c in classes], i
        assert p["confidence"] == float(want["confidence"]), i
        assert ";".join(p["flags"]) == want["flags"], i
        assert p["model_version"] == want["model_version"] == console.champion
    kinds = {
        "missing": any(f.startswith("missing:") for p in got.values() for f in p["flags"]),
        "override": any("override:uncertain" in p["flags"] for p in got.values()),
        "reject": any(r["reason"] == "humility:outlying" for r in rejected.values()),
    }
    assert all(kinds.values()), f"every humility path ran: {kinds}"


def test_scored_readings_are_published_with_their_event_ids(console: Console, real_dataset: Any) -> None:
    codecs, topics = Codecs.load(), console.settings.topics
    run = uuid.uuid4().hex[:8]
    readings = [
        {"event_id": f"{run}-0", "rig_id": "rig-a", "cycle": 3, "event_time": 1_700_000_000_000}
        | real_dataset.row(0),
        {"rig_id": "rig-b", "cycle": 4} | real_dataset.row(1),  # no event_id: the console makes one
    ]

    status, body = console.api.post("/score", {"deployment": "cooler", "readings": readings}, who="vera")
    single_status, single = console.api.post(
        "/score", {"deployment": "cooler", "readings": readings[0], "publish": False}, who="vera"
    )

    assert status == 200 and body["published"] == 2, body
    # The strict rules may reject a reading: it is published all the same (the scorer DLQs it).
    ids = [p["event_id"] for p in sorted(body["predictions"] + body["rejects"], key=lambda p: p["index"])]
    assert ids[0] == f"{run}-0" and str(uuid.UUID(ids[1])) == ids[1]
    seen = collect(
        console.settings.bootstrap or "",
        [topics.sensor_readings],
        lambda msgs: {codecs.sensor_reading.decode(m.value())["event_id"] for m in msgs} >= set(ids),
        timeout=30,
    )
    published = {codecs.sensor_reading.decode(m.value())["event_id"]: m for m in seen}
    first = codecs.sensor_reading.decode(published[ids[0]].value())
    assert published[ids[0]].key() == b"rig-a" and published[ids[1]].key() == b"rig-b"
    assert first == readings[0]
    assert single_status == 200 and single["published"] == 0
    assert len(single["predictions"] + single["rejects"]) == 1


# ---------------------------------------------------------------------------- roles


def _audit(console: Console, deployment: str, action: str, change_id: str | None = None) -> dict[str, Any]:
    def events() -> list[dict[str, Any]]:
        return console.api.get(f"/audit?deployment={deployment}", who="vera")[1]["events"]

    found = _until(
        events,
        lambda evs: any(e["action"] == action and change_id in (None, e["change_id"]) for e in evs),
    )
    matches = [e for e in found if e["action"] == action and change_id in (None, e["change_id"])]
    assert matches, f"no {action} of {deployment} on the audit trail: {found}"
    return matches[-1]


def test_without_a_known_token_every_route_but_health_is_refused(console: Console) -> None:
    api = console.api
    assert api.get("/deployments")[0] == 401
    assert api.get("/deployments", who="rwc_not-a-token")[0] == 401
    status, body = api.call("GET", "/api/v1/deployments", raw=None)
    assert status == 401 and "token" in body["error"]
    assert api.post("/score", {"readings": {"rig_id": "r"}})[0] == 401
    assert api.get("/health")[0] == 200 and api.get("/openapi.json")[0] == 200


def test_a_viewer_reads_and_scores_but_changes_nothing(console: Console) -> None:
    api = console.api
    assert api.get("/deployments", who="vera")[0] == 200
    assert api.get("/deployments/cooler", who="vera")[0] == 200
    assert (
        api.post(
            "/score", {"deployment": "cooler", "readings": {"rig_id": "r"}, "publish": False}, who="vera"
        )[0]
        == 200
    )

    refusals = [
        api.post("/deployments/cooler/promote", {"version": console.candidate}, who="vera"),
        api.post("/deployments/cooler/rollback", {}, who="vera"),
        api.post("/deployments/cooler/challenger", {"version": console.candidate}, who="vera"),
        api.delete("/deployments/cooler/challenger", who="vera"),
        api.post("/changes/abc/approve", {}, who="vera"),
        api.post(f"/models/{console.candidate}/comments", {"text": "hi"}, who="vera"),
    ]

    assert [status for status, _ in refusals] == [403] * len(refusals)
    assert {body["needed"] for _, body in refusals} == {"operator", "approver"}
    assert refusals[0][1]["role"] == "viewer"


def test_an_operator_promotes_and_rolls_back_audited_as_the_token_principal(console: Console) -> None:
    api = console.api
    name = f"op-{uuid.uuid4().hex[:6]}"
    create_deployment(console.settings, name, console.champion, actor="setup")

    status, promoted = api.post(
        f"/deployments/{name}/promote", {"version": console.candidate[:6], "reason": "data_drift"}, who="otto"
    )
    assert status == 200, promoted
    assert promoted["change"]["champion"] == console.candidate and promoted["change"]["actor"] == "otto"
    assert all(g["passed"] for g in promoted["guardrails"])
    state = _until(
        lambda: api.get(f"/deployments/{name}", who="vera")[1],
        lambda s: s.get("champion") == console.candidate,
    )
    assert state["champion"] == console.candidate and state["previous_champion"] == console.champion
    status, rolled = api.post(f"/deployments/{name}/rollback", {"reason": "errors"}, who="otto")
    assert status == 200 and rolled["change"]["champion"] == console.champion

    event = _audit(console, name, "promote", promoted["change"]["change_id"])
    assert (event["actor"], event["reason"], event["after"]) == ("otto", "data_drift", console.candidate)
    assert _audit(console, name, "rollback")["actor"] == "otto"


def test_approval_by_another_principal_and_self_approval_refused(console: Console) -> None:
    api = console.api
    status, proposed = api.post("/deployments/guarded/promote", {"version": console.candidate}, who="otto")
    assert status == 202 and proposed["change"]["state"] == "pending", proposed
    change_id = proposed["change"]["change_id"]
    assert api.post(f"/changes/{change_id}/approve", {}, who="olga")[0] == 403, "an operator cannot approve"

    status, approved = api.post(f"/changes/{change_id}/approve", {"comment": "checked"}, who="apu")

    assert status == 200, approved
    assert approved["change"]["champion"] == console.candidate and approved["change"]["actor"] == "apu"
    assert _audit(console, "guarded", "approve", change_id)["actor"] == "apu"

    # The approver proposes the way back, then tries to approve it: four eyes, refused and audited.
    status, own = api.post("/deployments/guarded/promote", {"version": console.champion}, who="apu")
    assert status == 202, own
    own_id = own["change"]["change_id"]
    status, refused = api.post(f"/changes/{own_id}/approve", {}, who="apu")
    assert status == 403 and "four eyes" in refused["error"], refused
    assert _audit(console, "guarded", "approval_refused", own_id)["actor"] == "apu"
    status, rejected = api.post(f"/changes/{own_id}/reject", {"reason": "other"}, who="ada")
    assert status == 200 and rejected["change"]["state"] == "rejected"


def test_force_needs_the_admin_role(console: Console) -> None:
    api = console.api
    name = f"force-{uuid.uuid4().hex[:6]}"
    create_deployment(console.settings, name, console.champion, actor="setup")
    body = {"version": console.candidate, "force": True}

    status, refused = api.post(f"/deployments/{name}/promote", body, who="apu")
    assert status == 403 and refused["needed"] == "admin"
    status, done = api.post(f"/deployments/{name}/promote", body, who="ada")
    assert status == 200 and done["change"]["actor"] == "ada"


def test_an_operator_runs_and_ends_a_challenger_and_comments_a_model(console: Console) -> None:
    api = console.api
    name = f"ch-{uuid.uuid4().hex[:6]}"
    create_deployment(console.settings, name, console.champion, actor="setup")
    body = {"version": console.candidate, "mode": "canary", "percent": 10, "auto_promote": True}

    status, started = api.post(f"/deployments/{name}/challenger", body, who="otto")
    assert status == 200, started
    assert (started["change"]["challenger"], started["change"]["challenger_percent"]) == (
        console.candidate,
        10.0,
    )
    status, ended = api.delete(f"/deployments/{name}/challenger", {"reason": "other"}, who="otto")
    assert status == 200 and ended["change"]["challenger"] is None
    status, again = api.delete(f"/deployments/{name}/challenger", who="otto")
    assert status == 409 and "no challenger" in again["error"]

    status, commented = api.post(
        f"/models/{console.candidate}/comments", {"text": "fine on rig 7"}, who="otto"
    )
    assert status == 200 and commented["audit_event"]["actor"] == "otto"
    model = _until(
        lambda: api.get(f"/models/{console.candidate[:5]}", who="vera")[1],
        lambda m: any(c["comment"] == "fine on rig 7" for c in m.get("comments", [])),
    )
    assert model["version"] == console.candidate and model["comments"][-1]["actor"] == "otto"


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("POST", "/score", {"publish": False}, 400, "readings"),
        ("POST", "/score", {"readings": [{"psa_bar": 1.0}]}, 400, "readings[0].rig_id"),
        (
            "POST",
            "/score",
            {"readings": [{"rig_id": "r"}, {"rig_id": "r", "psa_bar": "12,5"}]},
            400,
            "readings[1].psa_bar",
        ),
        ("POST", "/score", {"readings": {"rig_id": "r", "psa_bar": True}}, 400, "readings[0].psa_bar"),
        ("POST", "/score", {"readings": {"rig_id": "r", "psa_bra": 1.0}}, 400, "readings[0].psa_bra"),
        ("POST", "/score", {"readings": {"rig_id": "r", "cycle": 1.5}}, 400, "readings[0].cycle"),
        ("POST", "/score", {"readings": {"rig_id": "r", "cycle": 10**30}}, 400, "readings[0].cycle"),
        ("POST", "/score", {"readings": []}, 400, "readings"),
        ("POST", "/score", {"deployment": "nope", "readings": {"rig_id": "r"}}, 404, "deployment"),
        ("POST", "/score", [1, 2], 400, "body"),
        ("GET", "/deployments/nope", None, 404, "name"),
        ("POST", "/deployments/nope/promote", {"version": "abcd"}, 404, "name"),
        ("POST", "/deployments/cooler/promote", {}, 400, "version"),
        ("POST", "/deployments/cooler/promote", {"version": 1234}, 400, "version"),
        ("POST", "/deployments/cooler/promote", {"version": "ffffff"}, 404, "version"),
        ("POST", "/deployments/cooler/promote", {"version": "abcd", "reason": "because"}, 400, "reason"),
        ("POST", "/deployments/cooler/challenger", {"version": "abcd", "mode": "sideways"}, 400, "mode"),
        ("POST", "/deployments/cooler/challenger", {"version": "abcd", "mode": "canary"}, 400, "percent"),
        ("POST", "/deployments/cooler/challenger", {"version": "abcd", "percent": "10"}, 400, "percent"),
        ("POST", "/changes/00ff/approve", {}, 404, "change_id"),
        ("GET", "/models/zzzz", None, 400, "version"),
        ("GET", "/windows?since=yesterday", None, 400, "since"),
        ("GET", "/alerts?limit=many", None, 400, "limit"),
        ("GET", "/alerts?state=all", None, 400, "state"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(
    console: Console, method: str, path: str, body: Any, status: int, field: str
) -> None:
    got, answer = console.api.call(method, "/api/v1" + path, body, who="ada")

    assert (got, answer.get("field")) == (status, field), answer
    assert answer["error"].strip()


def test_garbage_on_every_route_is_never_a_500(console: Console) -> None:
    bodies: list[bytes] = [
        b"",
        b"null",
        b"[]",
        b'"x"',
        b"{",
        b'{"a": }',
        b"\xff\xfe",
        b"[" * 50_000,
        b'{"readings": 1e400}',
        json.dumps({"readings": [{"rig_id": "r", "psa_bar": 1e308 * 10}]})
        .encode()
        .replace(b"Infinity", b"1e999"),
        json.dumps(
            {"version": "a" * 5000, "text": None, "percent": -1, "mode": None, "readings": [None]}
        ).encode(),
    ]
    for route in routes():
        if route.stream:
            continue  # an event stream answers 200 and never ends: test_events_* read it
        path = "/api/v1" + route.path.format(name="../x%00", change_id="z" * 40, version="..")
        for raw in bodies:
            status, answer = console.api.call(route.method, path, who="ada", raw=raw)
            assert 200 <= status < 500, (route.method, path, raw[:40], status, answer)
    status, _ = console.api.call("GET", "/api/v1/nowhere", who="ada")
    assert status == 404
    assert console.process.poll() is None


def test_the_page_and_openapi_of_every_route(console: Console) -> None:
    status, page = console.api.call("GET", "/")
    status_doc, doc = console.api.get("/openapi.json")

    assert status == 200 and "/api/v1/openapi.json" in page
    assert status_doc == 200 and doc["openapi"].startswith("3.")
    for route in routes():
        operation = doc["paths"][route.url][route.method.lower()]
        assert operation["operationId"] == route.name
        assert operation["x-required-role"] == (str(route.role) if route.role else None)


# ---------------------------------------------------------------------------- monitoring


def test_alerts_and_windows_from_the_topics(console: Console) -> None:
    codecs, topics = Codecs.load(), console.settings.topics
    producer = ReliableProducer(console.settings.bootstrap or "", {"linger.ms": 0})
    subject = uuid.uuid4().hex[:12]
    now = int(time.time() * 1000)
    alert = {
        "alert_id": f"feature_drift/{subject}",
        "rule": "feature_drift",
        "severity": "critical",
        "state": "firing",
        "metric": "psi_ratio.tsb_temp",
        "value": 21.0,
        "threshold": 1.0,
        "window_end": now,
        "first_seen": now,
        "message": "tsb_temp drifted",
    }
    windows = [
        {
            "kind": "drift",
            "subject": subject,
            "window_start": now - 20_000 + i * 10_000,
            "window_end": now - 10_000 + i * 10_000,
            "count": 300,
            "metrics": {"drift_score": 0.5 + i, "nan_metric": float("nan")},
            "detail": json.dumps({"verdict": "ok"}),
        }
        for i in range(2)
    ]
    producer.produce(topics.alerts, codecs.alert.encode(alert), key=alert["alert_id"])
    for w in windows:
        producer.produce(topics.metrics, codecs.metric_window.encode(w), key=f"drift/{subject}")
    producer.produce(
        topics.metrics, codecs.metric_window.encode(windows[1]), key=f"drift/{subject}"
    )  # a repeat
    producer.flush()

    active = _until(
        lambda: console.api.get("/alerts", who="vera")[1]["alerts"],
        lambda alerts: any(a["alert_id"] == alert["alert_id"] for a in alerts),
    )
    found = _until(
        lambda: console.api.get(f"/windows?kind=drift&subject={subject}", who="vera")[1],
        lambda body: len(body["windows"]) == 2,
    )
    recent = console.api.get(f"/windows?kind=drift&subject={subject}&since={now - 5_000}", who="vera")[1]

    assert [a for a in active if a["alert_id"] == alert["alert_id"]] == [alert]
    assert [w["metrics"]["drift_score"] for w in found["windows"]] == [0.5, 1.5], (
        "oldest first, the repeat once"
    )
    assert (
        found["windows"][0]["detail"] == {"verdict": "ok"}
        and found["windows"][0]["metrics"]["nan_metric"] is None
    )
    assert subject in found["subjects"]["drift"]
    assert [w["metrics"]["drift_score"] for w in recent["windows"]] == [1.5]


def _events(api: Api, path: str, who: str | None) -> tuple[http.client.HTTPConnection, Any]:
    """An open event stream (the connection, and the response to read lines from)."""
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
    headers = {"Authorization": f"Bearer {api.tokens[who]}"} if who else {}
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
    assert response.readline() == b": connected\n"
    return conn, response


def test_events_stream_records_as_they_arrive(console: Console) -> None:
    conn, stream = _events(console.api, "/api/v1/events?kinds=alert,audit", "vera")
    codecs, topics = Codecs.load(), console.settings.topics
    alert_id = f"accuracy/{uuid.uuid4().hex[:8]}"
    alert = {
        "alert_id": alert_id, "rule": "accuracy", "severity": "warning", "state": "firing",
        "metric": "accuracy", "value": 0.7, "threshold": 0.9, "window_end": 1, "first_seen": 1,
        "message": "accuracy 0.70",
    }  # fmt: skip
    producer = ReliableProducer(console.settings.bootstrap or "", {"linger.ms": 0})
    producer.produce(topics.alerts, codecs.alert.encode(alert), key=alert_id)
    producer.flush()
    assert console.api.post(f"/models/{console.champion}/comments", {"text": "sse"}, who="otto")[0] == 200

    events: list[tuple[str, dict[str, Any]]] = []
    kind = None
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            any(k == "alert" and r["alert_id"] == alert_id for k, r in events)
            and any(k == "audit" and r["comment"] == "sse" for k, r in events)
        ):
            line = stream.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind is not None:
                events.append((kind, json.loads(line.removeprefix("data: "))))
    finally:
        conn.close()

    assert ("alert", alert) in events
    assert any(k == "audit" and r["actor"] == "otto" and r["comment"] == "sse" for k, r in events)
    assert {k for k, _ in events} <= {"alert", "audit"}


def test_a_deployment_shows_its_scorers_and_the_latest_comparison(console: Console) -> None:
    codecs, topics = Codecs.load(), console.settings.topics
    name = f"cmp-{uuid.uuid4().hex[:6]}"
    create_deployment(console.settings, name, console.champion, actor="setup")
    start_challenge(console.settings, name, console.candidate, mode="shadow", actor="setup")
    now = int(time.time() * 1000)
    producer = ReliableProducer(console.settings.bootstrap or "", {"linger.ms": 0})
    for scorer_id, version in ((f"{name}-host:1", console.champion), (f"{name}-host:2", console.candidate)):
        beat = {"scorer_id": scorer_id, "deployment": name, "version": version, "group": "g", "started": now,
                "time": now}  # fmt: skip
        producer.produce(topics.scorer_status, codecs.scorer_status.encode(beat), key=scorer_id)
    for end, verdict in ((now - 1000, "inconclusive"), (now, "better")):
        window = {"kind": "comparison", "subject": console.candidate, "window_start": end - 1000,
                  "window_end": end, "count": 300, "metrics": {"n": 300.0, "verdict": 1.0},
                  "detail": json.dumps({"champion": console.champion, "verdict": verdict})}  # fmt: skip
        producer.produce(topics.metrics, codecs.metric_window.encode(window), key=f"comparison/{end}")
    producer.flush()

    state = _until(
        lambda: console.api.get(f"/deployments/{name}", who="vera")[1],
        lambda s: len(s.get("scorers", [])) == 2 and (s.get("comparison") or {}).get("window_end") == now,
    )

    assert state["challenger"] == console.candidate and state["challenger_mode"] == "shadow"
    assert state["versions_served"] == sorted({console.champion, console.candidate})
    assert state["comparison"]["detail"]["verdict"] == "better"


# ---------------------------------------------------------------------------- anonymous access


def test_anonymous_access_only_when_enabled_and_only_on_loopback(console: Console, tmp_path: Path) -> None:
    env = console.env | {
        "RIGWATCH_CONSOLE_PORT": str(free_port()),
        "RIGWATCH_CONSOLE_MAX_BODY_MB": "0.05",
        "RIGWATCH_CONSOLE_MAX_READINGS": "5",
    }
    refused = subprocess.run(
        [sys.executable, "-m", "rigwatch", "console", "--host", "0.0.0.0", "--allow-anonymous", "viewer"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "loopback" in refused.stderr

    with ProcessHarness(tmp_path) as children:
        proc = children.start(["console", "--allow-anonymous", "viewer"], env)
        api = Api(int(env["RIGWATCH_CONSOLE_PORT"]), console.api.tokens)
        _wait_ready(api, proc)
        me = api.get("/me")
        denied = api.post("/deployments/cooler/rollback", {})
        wrong_token = api.get("/me", who="rwc_wrong")
        operator = api.get("/me", who="otto")
        too_big = api.call("POST", "/api/v1/score", raw=b" " * 100_000, who="otto")
        too_many = api.post("/score", {"deployment": "cooler", "readings": [{"rig_id": "r"}] * 6}, who="otto")
        conn, _ = _events(api, "/api/v1/events", None)  # left open: the stop must not wait for it
        started = time.monotonic()
        outcomes = children.stop_all()
        stopping = time.monotonic() - started
        conn.close()
    assert me == (200, {"principal": "anonymous", "role": "viewer", "created": 0})
    assert denied[0] == 403 and denied[1]["needed"] == "operator"
    assert wrong_token[0] == 401, "a token is judged by itself, never downgraded to anonymous"
    assert operator[1]["principal"] == "otto"
    assert too_big[0] == 413 and "RIGWATCH_CONSOLE_MAX_BODY_MB" in too_big[1]["error"]
    assert too_many[0] == 400 and too_many[1]["field"] == "readings"
    assert all(o.clean for o in outcomes), [o.describe() for o in outcomes]
    assert stopping < 15, f"an open event stream held the stop up for {stopping:.1f} s"
