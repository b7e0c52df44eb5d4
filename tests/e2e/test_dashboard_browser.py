"""The dashboard and /docs in a real headless browser (Debian's chromium, driven by Playwright).

The API runs under gunicorn and a real worker processes the events; the
assertions are on what a person sees. Each test saves a screenshot in its
tmp dir and, when EVENTFLO_SCREENSHOT_DIR is set, there too (the README's
docs/img/dashboard.png and docs/img/docs.png come from
``EVENTFLO_SCREENSHOT_DIR=docs/img pytest tests/e2e/test_dashboard_browser.py``).
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from psycopg.types.json import Jsonb

from eventflo import endpoints
from tests.e2e.conftest import (
    Api,
    eventflo,
    make_api_key,
    start_worker,
    status_counts,
    wait_for,
    wait_listening,
)
from tests.receiver import Answer, Receiver

pytestmark = pytest.mark.e2e

# Debian's chromium package; Playwright's own browser downloads are not used.
CHROMIUM = os.environ.get("EVENTFLO_CHROMIUM", "/usr/bin/chromium")
# Longer than the dashboard's 5 s refresh, with room for a slow machine.
REFRESHED = 15_000

RULE_ERROR = "rule error: rule sla_breach.major: payload.minutes_over: Must be a finite number."


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not pathlib.Path(CHROMIUM).exists():
        message = f"no chromium at {CHROMIUM} (apt-get install chromium, or set EVENTFLO_CHROMIUM)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


REFUSED = re.compile(r"Failed to load resource: .* status of 40[13] ")


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh page; console errors and uncaught exceptions (CSP violations too) fail the test.

    A test marked ``refusals_expected`` may see 401/403 answers (a refused key).
    """
    context = browser.new_context(viewport={"width": 1360, "height": 1000}, locale="en-US")
    opened = context.new_page()
    problems: list[str] = []
    refusals_expected = request.node.get_closest_marker("refusals_expected") is not None

    def on_console(message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        # /docs (flask-smorest's page) links no icon, so the browser's guess is a 404.
        if message.location["url"].endswith("/favicon.ico"):
            return
        if refusals_expected and REFUSED.search(message.text):
            return
        problems.append(f"console error: {message.text} ({message.location['url']})")

    opened.on("console", on_console)
    opened.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    try:
        yield opened
        assert problems == [], problems
    finally:
        context.close()


def save_screenshot(
    page: Page, tmp_path: pathlib.Path, name: str, *, full_page: bool, publish: bool = True
) -> None:
    """Into the test's tmp dir and, if ``publish`` and EVENTFLO_SCREENSHOT_DIR is set, there too."""
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=full_page)
    target = os.environ.get("EVENTFLO_SCREENSHOT_DIR")
    if publish and target:
        pathlib.Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, pathlib.Path(target) / name)


def insert_unjudgeable_sla_breach(conn: Any) -> str:
    """Straight into the table (the API would store it too): minutes_over is text, a rule error."""
    row = conn.execute(
        "INSERT INTO events (event_type, source, payload) VALUES ('sla_breach', 'support', %s)"
        " RETURNING id",
        (Jsonb({"minutes_over": "an hour"}),),
    ).fetchone()
    return str(row["id"])


def worker_totals(conn: Any) -> tuple[int, int]:
    row = conn.execute("SELECT sum(completed) AS c, sum(failed) AS f FROM workers").fetchone()
    return (int(row["c"] or 0), int(row["f"] or 0))


def live_workers(conn: Any) -> int:
    row = conn.execute(
        "SELECT count(*) AS n FROM workers WHERE stopped_at IS NULL"
        " AND last_seen_at >= now() - interval '30 seconds'"
    ).fetchone()
    return int(row["n"])


SAMPLES = [
    ("payment_failed", {"amount": 1500}, "billing"),
    ("payment_failed", {"amount": 200}, "billing"),
    ("sla_breach", {"minutes_over": 45}, "support"),
    ("system_error", {"component": "db"}, "platform"),
    ("user_signup", {"user_id": 42}, "web"),
    ("user_signup", {"user_id": 43}, "web"),
]


def test_an_operator_sees_the_queue_and_replays_a_failed_event(
    api: Api, children: Any, conn: Any, page: Page, tmp_path: pathlib.Path
) -> None:
    # Frequent heartbeats: the worker's totals in the registry keep up with its work.
    start_worker(children, EVENTFLO_HEARTBEAT_SECONDS="0.5")
    wait_listening(conn, 1)
    wait_for(lambda: live_workers(conn) == 1, timeout=30, what="the worker to register")
    for event_type, payload, source in SAMPLES:
        assert api.post_event(event_type, payload, source).status_code == 202
    failed_id = insert_unjudgeable_sla_breach(conn)
    wait_for(
        lambda: status_counts(conn) == {"completed": 6, "failed": 1},
        timeout=30,
        what=lambda: f"6 completed and 1 failed (now {status_counts(conn)})",
    )
    wait_for(lambda: worker_totals(conn) == (6, 1), timeout=10, what="the worker's heartbeat")

    page.goto(f"{api.base_url}/")  # redirects to /dashboard, which asks for a key first
    expect(page).to_have_url(f"{api.base_url}/dashboard/login")
    sign_in(page, api.api_key)
    expect(page).to_have_url(f"{api.base_url}/dashboard")
    expect(page).to_have_title("EventFlo dashboard")
    expect(page.locator(".who")).to_contain_text("(e2e tests, admin)")

    # The counts, as cards.
    for status, count in (
        ("queued", "0"),
        ("processing", "0"),
        ("completed", "6"),
        ("failed", "1"),
    ):
        card = page.get_by_role("link", name=re.compile(rf"^{status}\b", re.IGNORECASE))
        expect(card).to_be_visible()
        expect(card).to_contain_text(count)
    expect(page.locator("#oldest-queued")).to_have_text("none")

    # The live worker, with its host, and its count.
    expect(page.locator("#live-worker-count")).to_have_text("1")
    workers = page.locator("#live-workers tbody tr")
    expect(workers).to_have_count(1)
    expect(workers).to_contain_text(socket.gethostname())
    cells = workers.first.locator("td")
    expect(cells.nth(5)).to_have_text("6")  # completed
    expect(cells.nth(6)).to_have_text("1")  # failed

    # The throughput chart: fifteen minutes, this one with six completions.
    chart = page.get_by_role("img", name="Completed events per minute over the last 15 minutes")
    expect(chart).to_be_visible()
    expect(chart.locator("rect")).to_have_count(15)
    expect(page.locator("#throughput-caption")).to_contain_text(
        "6 completed in the last 15 minutes"
    )
    current_minute = chart.locator("rect").last.bounding_box()
    assert current_minute is not None and current_minute["height"] > 20

    # The failed event with its error and a Replay button.
    failed_section = page.locator("#live-failed")
    failed_row = failed_section.locator("tr", has_text=failed_id)
    expect(failed_row).to_be_visible()
    expect(failed_row).to_contain_text("sla_breach")
    expect(failed_row).to_contain_text(RULE_ERROR)
    expect(failed_row.get_by_role("button", name="Replay")).to_be_enabled()

    # The recent list: all seven, newest first (the failed one was inserted last).
    recent = page.locator("#live-recent tbody tr")
    expect(recent).to_have_count(7)
    expect(recent.first).to_contain_text(failed_id)

    # Filters narrow the recent list; the page reloads with them in the URL.
    page.get_by_label("Status").select_option("failed")
    expect(page).to_have_url(re.compile(r"status=failed"))
    expect(recent).to_have_count(1)
    expect(recent.first).to_contain_text(failed_id)
    expect(page.locator("#live-recent")).to_contain_text("with status failed")

    page.get_by_label("Status").select_option("")
    expect(page).not_to_have_url(re.compile(r"status=failed"))
    page.get_by_label("Type").select_option("payment_failed")
    expect(page).to_have_url(re.compile(r"event_type=payment_failed"))
    expect(recent).to_have_count(2)
    for i in range(2):
        expect(recent.nth(i)).to_contain_text("payment_failed")
    expect(recent.first).to_contain_text("HIGH")  # amount 200, posted after the 1500
    expect(recent.last).to_contain_text("CRITICAL")

    page.get_by_role("link", name="Clear filters").click()
    expect(page).to_have_url(f"{api.base_url}/dashboard")
    expect(recent).to_have_count(7)
    save_screenshot(page, tmp_path, "dashboard.png", full_page=True)

    # Auto-refresh: a new event shows up without a reload (the marker survives).
    page.evaluate("window.stillTheSamePage = true")
    assert api.post_event("user_signup", {"user_id": 44}, "web").status_code == 202
    expect(page.locator("#count-completed")).to_have_text("7", timeout=REFRESHED)
    expect(recent).to_have_count(8)
    assert page.evaluate("window.stillTheSamePage") is True

    # Fix the payload, replay from the page: the event leaves the failed list and completes.
    conn.execute(
        "UPDATE events SET payload = %s WHERE id = %s", (Jsonb({"minutes_over": 45}), failed_id)
    )
    failed_row.get_by_role("button", name="Replay").click()
    expect(page.get_by_role("status")).to_contain_text(f"Event {failed_id} requeued")
    expect(failed_section.locator("tr", has_text=failed_id)).to_have_count(0, timeout=REFRESHED)
    expect(failed_section).to_contain_text("No failed events.")
    expect(page.locator("#count-failed")).to_have_text("0", timeout=REFRESHED)
    expect(page.locator("#count-completed")).to_have_text("8", timeout=REFRESHED)
    row = conn.execute(
        "SELECT e.status::text AS status, r.severity::text AS severity FROM events AS e"
        " JOIN event_processing_results AS r ON r.event_id = e.id WHERE e.id = %s",
        (failed_id,),
    ).fetchone()
    assert (row["status"], row["severity"]) == ("completed", "HIGH")
    assert page.evaluate("window.stillTheSamePage") is True
    save_screenshot(page, tmp_path, "dashboard-after-replay.png", full_page=True, publish=False)


def delivery_row(conn: Any) -> dict[str, Any]:
    row = conn.execute(
        "SELECT id::text AS id, status::text AS status, last_status_code FROM deliveries"
    ).fetchone()
    return dict(row) if row else {}


def test_an_operator_replays_a_failed_delivery_and_it_is_sent_again(
    api: Api, children: Any, conn: Any, page: Page
) -> None:
    """A real worker writes the delivery, a real deliverer fails it, the page's Replay sends it."""
    with Receiver([Answer(500), Answer(204)]).running() as rx:
        endpoints.create(conn, name="ops-pager", url=rx.url, allow_private=True)
        start_worker(children)
        children.start(
            "deliverer",
            "-m",
            "eventflo",
            "deliver",
            env={
                "EVENTFLO_ALLOW_PRIVATE_ENDPOINTS": "on",
                "EVENTFLO_DELIVERY_RETRY_SCHEDULE": "0",  # one attempt, then failed
            },
        )
        assert api.post_event("payment_failed", {"amount": 1500}, "billing").status_code == 202
        wait_for(
            lambda: delivery_row(conn).get("status") == "failed",
            timeout=30,
            what=lambda: f"the delivery failed after one attempt (now {delivery_row(conn)})",
        )
        delivery_id = delivery_row(conn)["id"]

        page.goto(f"{api.base_url}/dashboard")
        sign_in(page, api.api_key)
        endpoint = page.locator("#live-endpoints tr", has_text="ops-pager").first
        expect(endpoint).to_contain_text("failing: 1 attempt(s) in a row")
        expect(endpoint.get_by_role("button", name="Replay failed")).to_be_enabled()
        failed = page.locator("#live-endpoints tr", has_text=delivery_id)
        expect(failed).to_contain_text("ops-pager")
        expect(failed).to_contain_text("500")
        expect(failed.get_by_role("button", name="Replay")).to_be_enabled()

        failed.get_by_role("button", name="Replay").click()
        expect(page.get_by_role("status")).to_contain_text(f"Delivery {delivery_id} requeued")
        wait_for(
            lambda: delivery_row(conn)["status"] == "delivered",
            timeout=30,
            what=lambda: f"the replayed delivery delivered (now {delivery_row(conn)})",
        )
        expect(page.locator("#live-endpoints tr", has_text=delivery_id)).to_have_count(
            0, timeout=REFRESHED
        )
        expect(endpoint).to_contain_text("ok", timeout=REFRESHED)
    ids = [got.headers["webhook-id"] for got in rx.requests]
    assert ids == [delivery_id, delivery_id], "sent twice, under its one webhook-id"


def sign_in(page: Page, key: str | None) -> None:
    """Type the key into the sign-in form, as an operator pastes it."""
    assert key is not None, "the API of this test runs with auth on"
    expect(page.get_by_role("heading", name="Sign in with an API key")).to_be_visible()
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


@pytest.mark.refusals_expected
def test_a_read_key_sees_the_dashboard_but_cannot_replay_and_revoking_it_signs_out(
    api: Api, conn: Any, page: Page
) -> None:
    failed_id = insert_unjudgeable_sla_breach(conn)
    conn.execute(
        "UPDATE events SET status = 'failed', error_message = 'rule error: boom' WHERE id = %s",
        (failed_id,),
    )
    ingest_key = make_api_key(api.database_url, scope="ingest", name="producer")
    read_key = make_api_key(api.database_url, scope="read", name="night shift")

    page.goto(f"{api.base_url}/dashboard")
    expect(page).to_have_url(f"{api.base_url}/dashboard/login")
    page.get_by_label("API key").fill("efk_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#login-message")).to_contain_text("not valid")
    sign_in(page, ingest_key)
    expect(page.locator("#login-message")).to_contain_text("has scope ingest")
    sign_in(page, read_key)
    expect(page).to_have_url(f"{api.base_url}/dashboard")
    expect(page.locator(".who")).to_contain_text("(night shift, read)")
    failed_row = page.locator("#live-failed tr", has_text=failed_id)
    expect(failed_row.get_by_role("button", name="Replay")).to_be_disabled()
    # The page's script cannot reach the key: the cookie is HttpOnly.
    assert "efk_" not in page.evaluate("document.cookie")

    # Revoked: the next refresh finds out and the browser is back at the sign-in form.
    cli_env = {**os.environ, "EVENTFLO_DATABASE_URL": api.database_url}
    eventflo(cli_env, "keys", "revoke", read_key[:12])
    expect(page.locator("#login-message")).to_contain_text("has been revoked", timeout=REFRESHED)
    expect(page.get_by_role("heading", name="Sign in with an API key")).to_be_visible()


def test_swagger_ui_renders_the_operations_from_local_assets(
    api: Api, page: Page, tmp_path: pathlib.Path
) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{api.base_url}/docs")

    def operation(method: str, path: str) -> Any:
        summary = page.locator(f".opblock-{method.lower()} .opblock-summary")
        return summary.filter(
            has=page.locator(".opblock-summary-path", has_text=re.compile(rf"^{re.escape(path)}$"))
        )

    for method, path in (
        ("POST", "/events"),
        ("GET", "/events"),
        ("GET", "/events/{event_id}"),
        ("POST", "/events/batch"),
        ("GET", "/readyz"),
    ):
        expect(operation(method, path)).to_be_visible()
        expect(operation(method, path)).to_contain_text(method)
    expect(page.get_by_role("heading", name=re.compile("^EventFlo"))).to_be_visible()
    save_screenshot(page, tmp_path, "docs.png", full_page=False)

    # Try it out: GET /healthz against this server.
    operation("GET", "/healthz").click()
    block = page.locator(".opblock-get").filter(
        has=page.locator(".opblock-summary-path", has_text=re.compile(r"^/healthz$"))
    )
    block.get_by_role("button", name="Try it out").click()
    block.get_by_role("button", name="Execute").click()
    expect(block.locator(".live-responses-table tbody .response-col_status").first).to_have_text(
        "200"
    )
    expect(block.locator(".live-responses-table")).to_contain_text('"status": "ok"')

    # Authorize with a key, then Try it out on an operation that needs one.
    assert api.api_key is not None
    page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".modal-ux")
    dialog.locator("input").fill(api.api_key)
    dialog.get_by_role("button", name="Apply credentials").click()
    expect(dialog.get_by_role("button", name="Remove authorization")).to_be_visible()
    dialog.locator("button.btn-done").click()
    operation("GET", "/events").click()
    listing = page.locator(".opblock-get").filter(
        has=page.locator(".opblock-summary-path", has_text=re.compile(r"^/events$"))
    )
    listing.get_by_role("button", name="Try it out").click()
    listing.get_by_role("button", name="Execute").click()
    expect(listing.locator(".live-responses-table tbody .response-col_status").first).to_have_text(
        "200"
    )

    # Everything came from this server: no CDN.
    assert requested and all(url.startswith(api.base_url) for url in requested), [
        url for url in requested if not url.startswith(api.base_url)
    ]


def test_a_page_from_another_origin_cannot_replay(
    api: Api, browser: Browser, conn: Any, tmp_path: pathlib.Path
) -> None:
    """localhost and 127.0.0.1 are different sites: from one, attack the other's replay.

    The operator is signed in with an admin key, so the browser holds the
    dashboard's cookie; it must not lend it to another site's requests.
    """
    row = conn.execute(
        "INSERT INTO events (event_type, payload, status, error_message)"
        " VALUES ('sla_breach', '{}', 'failed', 'rule error: boom') RETURNING id"
    ).fetchone()
    event_id = str(row["id"])
    target = f"{api.base_url}/dashboard/replay"
    foreign = api.base_url.replace("127.0.0.1", "localhost")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{api.base_url}/dashboard/login")
        sign_in(page, api.api_key)
        expect(page).to_have_url(f"{api.base_url}/dashboard")
        page.goto(f"{foreign}/healthz")

        # With the header: the browser asks first (CORS preflight), is not granted, never posts.
        outcome = page.evaluate(
            """async ([url, id]) => {
                try {
                    const response = await fetch(url, {
                        method: "POST",
                        headers: {
                            "Content-Type": "application/json",
                            "X-EventFlo-Action": "replay",
                        },
                        body: JSON.stringify({event_ids: [id]}),
                    });
                    return "answered " + response.status;
                } catch (error) {
                    return "blocked";
                }
            }""",
            [target, event_id],
        )
        assert outcome == "blocked"

        # Without it (what needs no preflight): the request goes out, and the server refuses it.
        page.evaluate(
            """async ([url, id]) => {
                const body = JSON.stringify({event_ids: [id]});
                await fetch(url, {method: "POST", mode: "no-cors", body: body});
            }""",
            [target, event_id],
        )

        # A plain cross-site form, the classic CSRF.
        with page.expect_navigation():
            page.evaluate(
                """([url, id]) => {
                    const form = document.createElement("form");
                    form.method = "POST";
                    form.action = url;
                    form.enctype = "text/plain";
                    const field = document.createElement("input");
                    field.name = '{"event_ids": ["' + id + '"], "x": "';
                    field.value = '"}';
                    form.appendChild(field);
                    document.body.appendChild(form);
                    form.submit();
                }""",
                [target, event_id],
            )
        # SameSite=Strict: the browser left the signed-in cookie out of another site's form post.
        expect(page.locator("body")).to_contain_text("Authentication required")
    finally:
        context.close()
    status = conn.execute("SELECT status::text FROM events WHERE id = %s", (event_id,)).fetchone()
    assert status["status"] == "failed"
