"""The console's page in a real headless browser (Debian's chromium, driven by Playwright).

One ``rigwatch console`` serves the module, on fresh topics, with deployment ``cooler``
(approval required) and tokens for a viewer, an operator and an approver. Each test
opens pages (tabs, each with its own sessionStorage and so its own token) and then
changes the topics underneath them: the pages must follow without a reload.

``playwright install`` cannot download browsers here, so Playwright drives
``/usr/bin/chromium`` (``make test`` installs it where it can). Without it, or
without the playwright package, the browser tests are skipped with the reason (the
event stream's ticket is still checked over plain HTTP).
"""

from __future__ import annotations

import http.client
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rigwatch.config import Settings
from rigwatch.harness import Process, ProcessHarness, free_port
from rigwatch.kafka import ReliableProducer, create_rig_topics
from rigwatch.lifecycle.audit import AuditLog
from rigwatch.lifecycle.deployments import read_deployments
from rigwatch.lifecycle.operations import create_deployment, promote, register_model
from rigwatch.model import train
from rigwatch.schemas import Codecs
from rigwatch.stack import Endpoints
from services.console.roles import Role
from services.console.tokens import TokenStore

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Milliseconds a page gets to show what the console read: a fetch wait (1.5 s) or two, on a busy machine.
WAIT_MS = 30_000
PEOPLE = {"vera": Role.VIEWER, "otto": Role.OPERATOR, "apu": Role.APPROVER}


def _chromium() -> str | None:
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")


def _not_runnable() -> str | None:
    """Why the browser test cannot run here, or None."""
    if _chromium() is None:
        return (
            "no chromium: Debian's `apt-get install chromium` (which `make test` runs as root) gives the"
            " browser Playwright drives; `playwright install` cannot download one here"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"the playwright package does not import ({exc}): pip install -e '.[dev]'"
    return None


pytestmark = pytest.mark.e2e
# Decided at collection, so a machine without the browser does not train a model for nothing.
needs_browser = pytest.mark.skipif(_not_runnable() is not None, reason=str(_not_runnable()))


def _call(port: int, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        if response.getheader("Content-Type", "").startswith("text/event-stream"):
            return response.status, response.readline()  # the stream's first line; it never ends
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _wait_ready(port: int, proc: Process, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"console exited with {proc.returncode}:\n{proc.log.read_text()[-3000:]}")
        try:
            status, body = _call(port, "GET", "/api/v1/health")
            if status == 200 and body["ready"]:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.2)
    pytest.fail(f"console not ready after {timeout:.0f} s:\n{proc.log.read_text()[-3000:]}")


@dataclass
class Console:
    settings: Settings
    port: int
    tokens: dict[str, str]
    champion: str
    candidate: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


@pytest.fixture(scope="module")
def console(
    stack: Endpoints, model_dir: Path, real_dataset: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Console]:
    tmp = tmp_path_factory.mktemp("console-page")
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
    create_deployment(settings, "cooler", champion.version, actor="setup", requires_approval=True)
    store = TokenStore(tmp / "tokens.json")
    tokens = {name: store.add(name, role) for name, role in PEOPLE.items()}
    port = free_port()
    env = settings.to_env(RIGWATCH_CONSOLE_TOKENS_FILE=str(store.path), RIGWATCH_CONSOLE_PORT=str(port))
    with ProcessHarness(tmp) as children:
        proc = children.start(["console"], env)
        _wait_ready(port, proc)
        yield Console(settings, port, tokens, champion.version, candidate.version)
        outcomes = children.stop_all()
    failed = [o.describe() for o in outcomes if not o.clean]
    assert not failed, f"console did not stop cleanly: {failed}\n{proc.log.read_text()[-3000:]}"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless chromium with a fresh profile (a browser context; each of its pages is a tab)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=_chromium(),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


class Tab:
    """One person's tab on the console, signed in with their token; it records uncaught script errors."""

    def __init__(self, browser: Any, console: Console, name: str) -> None:
        from playwright.sync_api import expect

        self.name, self.errors = name, []
        self.page = browser.new_page()
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.goto(console.url)
        self.page.fill("#token", console.tokens[name])
        self.page.click("#signin-form button[type=submit]")
        expect(self.page.locator("#principal")).to_have_text(name, timeout=WAIT_MS)
        expect(self.page.locator("#role")).to_have_text(str(PEOPLE[name]))
        # Live: subscribed to the event stream and the state read, so what follows arrives as events.
        expect(self.page.locator("#live")).to_have_text("live", timeout=WAIT_MS)
        # A reload would lose this: check_in_place() proves the page was updated where it stood.
        self.page.evaluate("window.__sinceOpened = true")

    def locator(self, selector: str) -> Any:
        return self.page.locator(selector)

    def card(self, deployment: str) -> Any:
        return self.page.locator(f'.deployment[data-deployment="{deployment}"]')

    def check_in_place(self) -> None:
        assert self.page.evaluate("window.__sinceOpened === true"), f"{self.name}'s page was reloaded"
        assert not self.errors, f"script errors on {self.name}'s page: {self.errors}"

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def tabs(browser: Any, console: Console) -> Iterator[dict[str, Tab]]:
    """A signed-in tab for each of the console's people."""
    opened = {name: Tab(browser, console, name) for name in PEOPLE}
    yield opened
    for tab in opened.values():
        tab.close()


def _produce(settings: Settings, topic: str, codec: Any, records: list[tuple[str, dict[str, Any]]]) -> None:
    producer = ReliableProducer(settings.bootstrap or "", {"linger.ms": 0})
    for key, record in records:
        producer.produce(topic, codec.encode(record), key=key)
    producer.flush()


def _alert(alert_id: str, severity: str, state: str, value: float) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "alert_id": alert_id, "rule": alert_id.split("/")[0], "severity": severity, "state": state,
        "metric": "drift_score", "value": value, "threshold": 0.25, "window_end": now,
        "first_seen": now - 60_000,
        "message": f"<b>drift</b> {value:.2f} on {alert_id}",  # markup must show as text, not as HTML
    }  # fmt: skip


# ---------------------------------------------------------------------------- the event stream's ticket


def test_the_event_stream_takes_a_single_use_ticket_instead_of_a_header(console: Console) -> None:
    bearer = {"Authorization": f"Bearer {console.tokens['vera']}"}
    status, issued = _call(console.port, "POST", "/api/v1/events/ticket", bearer)
    assert status == 200 and issued["expires_in_s"] == 30, issued
    ticket = issued["ticket"]

    assert _call(console.port, "GET", f"/api/v1/events?kinds=alert&ticket={ticket}") == (
        200,
        b": connected\n",
    )
    spent, body = _call(console.port, "GET", f"/api/v1/events?kinds=alert&ticket={ticket}")
    assert spent == 401 and "ticket" in body["error"]
    other = _call(console.port, "POST", "/api/v1/events/ticket", bearer)[1]["ticket"]
    elsewhere, body = _call(console.port, "GET", f"/api/v1/me?ticket={other}")
    assert elsewhere == 401, "no other route takes a ticket for a token"
    assert _call(console.port, "POST", "/api/v1/events/ticket")[0] == 401, "a ticket needs a token"


# ---------------------------------------------------------------------------- alerts and charts


@needs_browser
def test_alerts_appear_in_their_colour_and_resolve_without_a_reload(
    console: Console, tabs: dict[str, Tab]
) -> None:
    from playwright.sync_api import expect

    codecs, topics = Codecs.load(), console.settings.topics
    run = uuid.uuid4().hex[:8]
    critical, warning = f"drift/{run}", f"latency/{run}"
    _produce(
        console.settings,
        topics.alerts,
        codecs.alert,
        [
            (critical, _alert(critical, "critical", "firing", 0.61)),
            (warning, _alert(warning, "warning", "firing", 0.3)),
        ],
    )

    for tab in tabs.values():
        shown = tab.locator(f'#alerts li[data-alert-id="{critical}"]')
        expect(shown).to_have_class("alert critical", timeout=WAIT_MS)
        expect(shown.locator(".message")).to_have_text(f"<b>drift</b> 0.61 on {critical}")
        expect(tab.locator(f'#alerts li[data-alert-id="{warning}"]')).to_have_class("alert warning")
    apu = tabs["apu"]
    ours = apu.locator(f'#alerts li[data-alert-id$="/{run}"]')
    assert ours.first.get_attribute("data-alert-id") == critical, "most severe first"
    assert apu.locator("#alerts li b").count() == 0, "record text never becomes markup"
    red = apu.locator(f'#alerts li[data-alert-id="{critical}"]').evaluate(
        "e => getComputedStyle(e).borderLeftColor"
    )
    assert red == "rgb(198, 40, 40)"

    _produce(
        console.settings, topics.alerts, codecs.alert, [(critical, _alert(critical, "ok", "resolved", 0.1))]
    )

    for tab in tabs.values():
        expect(tab.locator(f'#alerts li[data-alert-id="{critical}"]')).to_have_count(0, timeout=WAIT_MS)
        expect(tab.locator(f'#alerts li[data-alert-id="{warning}"]')).to_have_count(1)
        tab.check_in_place()


@needs_browser
def test_windows_draw_the_champions_charts_as_they_arrive(console: Console, tabs: dict[str, Tab]) -> None:
    from playwright.sync_api import expect

    codecs, topics = Codecs.load(), console.settings.topics
    champion = read_deployments(console.settings)["cooler"]["champion"]
    now = int(time.time() * 1000)
    windows = []
    for i in range(3):
        end = now - (2 - i) * 10_000
        for kind, metrics in (
            ("drift", {"drift_score": 0.1 * (i + 1)}),
            ("accuracy", {"accuracy": 0.97, "estimated_accuracy": 0.95}),
            ("health", {"latency_ms.p99": 40.0 + i}),
        ):
            window = {"kind": kind, "subject": champion, "window_start": end - 10_000, "window_end": end,
                      "count": 100, "metrics": metrics, "detail": None}  # fmt: skip
            windows.append((f"{kind}/{champion}", window))
    _produce(console.settings, topics.metrics, codecs.metric_window, windows)

    card = tabs["vera"].card("cooler")
    for chart, series in (
        ("drift", "champion:drift_score"),
        ("accuracy", "champion:accuracy"),
        ("accuracy", "champion:estimated_accuracy"),
        ("health", "champion:latency_ms.p99"),
    ):
        path = card.locator(f'figure[data-chart="{chart}"] path[data-series="{series}"]')
        expect(path).to_have_count(1, timeout=WAIT_MS)
    # Three windows, three points: M x,y L x,y L x,y.
    drawn = card.locator('path[data-series="champion:drift_score"]').get_attribute("d")
    assert drawn is not None and drawn.count("L") == 2, drawn
    expect(card.locator('figure[data-chart="drift"] .legend')).to_contain_text("champion 0.3")
    tabs["vera"].check_in_place()


# ---------------------------------------------------------------------------- roles and the approver's click


@needs_browser
def test_an_approvers_click_promotes_a_pending_change_and_a_viewer_has_no_buttons(
    console: Console, tabs: dict[str, Tab], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    settings = console.settings
    assert read_deployments(settings)["cooler"]["champion"] == console.champion
    proposed = promote(
        settings,
        "cooler",
        console.candidate,
        reason="accuracy",
        comment="retrained on split seed 7",
        actor="otto",
    )
    change_id = proposed.record["change_id"]
    assert proposed.record["state"] == "pending"

    rows = {name: tab.locator(f'#changes tr[data-change-id="{change_id}"]') for name, tab in tabs.items()}
    for row in rows.values():
        expect(row).to_have_count(1, timeout=WAIT_MS)
    vera, otto, apu = tabs["vera"], tabs["otto"], tabs["apu"]
    # The viewer: nothing to click anywhere; the operator: promote and roll back, but no approval.
    expect(vera.locator("#app button")).to_have_count(0)
    expect(vera.locator(".deployment input")).to_have_count(0)
    expect(rows["otto"].locator("button")).to_have_count(0)
    expect(otto.card("cooler").locator("button.promote")).to_be_enabled()
    expect(otto.card("cooler").locator("button.rollback")).to_have_count(1)
    expect(rows["apu"].locator("button.reject")).to_be_enabled()
    apu.page.screenshot(path=str(tmp_path / "approver-before.png"), full_page=True)

    rows["apu"].locator("button.approve").click()

    expect(apu.locator("#changes-result")).to_have_text(
        f"Approved change {change_id[:8]}: cooler now serves {console.candidate}.", timeout=WAIT_MS
    )
    assert read_deployments(settings)["cooler"]["champion"] == console.candidate
    approvals = [e for e in AuditLog(settings).read("cooler") if e["action"] == "approve"]
    assert [(e["actor"], e["change_id"], e["after"]) for e in approvals] == [
        ("apu", change_id, console.candidate)
    ]
    # Every page follows: the new champion, the change gone, the approval on top of the trail.
    for tab in tabs.values():
        card = tab.card("cooler")
        expect(card.locator("code.champion")).to_have_text(console.candidate, timeout=WAIT_MS)
        expect(card.locator("code.previous")).to_have_text(console.champion)
        expect(tab.locator(f'#changes tr[data-change-id="{change_id}"]')).to_have_count(0)
        top = tab.locator("#audit tbody tr").first
        expect(top).to_have_attribute("data-action", "approve", timeout=WAIT_MS)
        expect(top.locator("td.actor")).to_have_text("apu")
        proposal = tab.locator('#audit tr[data-action="propose"]')
        expect(proposal.locator("td.actor")).to_have_text("otto")
        expect(proposal.locator("td.comment")).to_have_text("retrained on split seed 7")
        tab.check_in_place()
    apu.page.screenshot(path=str(tmp_path / "approver-after.png"), full_page=True)
