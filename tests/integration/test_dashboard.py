"""The dashboard against a real PostgreSQL: what the page shows, its filters, escaping, the replay
POST and its cross-site guard, the security headers, and a 503 while the database is away."""

from __future__ import annotations

import html.parser
import re
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from eventflo import rules, ruleversions
from eventflo.config import Config
from tests.integration.test_api import assert_problem, post_event, run_worker_until_idle
from tests.rule_files import DISK_RULES

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/nothing"
REPLAY_HEADERS = {"X-EventFlo-Action": "replay"}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


# -- reading the page ---------------------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class Element:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Element | None) -> None:
        self.tag = tag
        self.attrs = attrs
        self.parent = parent
        self.children: list[Element | str] = []

    def text(self) -> str:
        """The text a person reads: descendants' text with whitespace collapsed."""
        parts = [c if isinstance(c, str) else c.text() for c in self.children]
        return " ".join(" ".join(parts).split())

    def iter(self) -> Any:
        for child in self.children:
            if isinstance(child, Element):
                yield child
                yield from child.iter()

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Element]:
        return [
            e
            for e in self.iter()
            if (tag is None or e.tag == tag)
            and all(e.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def by_id(self, element_id: str) -> Element:
        found = self.find_all(id=element_id)
        assert len(found) == 1, f"{len(found)} elements with id {element_id!r}"
        return found[0]

    def rows(self, container_id: str) -> list[Element]:
        """The body rows of the table inside the element with this id (none without a table)."""
        return [tr for tr in self.by_id(container_id).find_all("tr") if "data-event-id" in tr.attrs]


class _TreeBuilder(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {}, None)
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs), self.current)
        self.current.children.append(element)
        if tag not in VOID:
            self.current = element

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.children.append(Element(tag, dict(attrs), self.current))

    def handle_endtag(self, tag: str) -> None:
        node: Element | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(data)


def parse(response: Any) -> Element:
    builder = _TreeBuilder()
    builder.feed(response.get_data(as_text=True))
    builder.close()
    return builder.root


def page(client: Any, path: str = "/dashboard", **params: str) -> Element:
    response = client.get(path, query_string=params)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/html"
    return parse(response)


def row_ids(document: Element, container_id: str) -> list[str]:
    return [str(tr.attrs["data-event-id"]) for tr in document.rows(container_id)]


def make_failed(conn: psycopg.Connection[Any], event_id: str) -> None:
    """Give a queued sla_breach a payload its rule rejects, so the worker fails it at once."""
    set_payload(conn, event_id, {"minutes_over": "lots"})


def set_payload(conn: psycopg.Connection[Any], event_id: str, payload: dict[str, Any]) -> None:
    conn.execute("UPDATE events SET payload = %s WHERE id = %s", (Jsonb(payload), event_id))


@pytest.fixture
def three(client: Any, config: Config, conn: psycopg.Connection[Any]) -> dict[str, str]:
    """One completed, one failed (a rule error) and one queued event, oldest first."""
    completed = post_event(
        client, {"event_type": "payment_failed", "payload": {"amount": 5000}, "source": "billing"}
    ).get_json()["event_id"]
    failed = post_event(
        client, {"event_type": "sla_breach", "payload": {}, "source": "support"}
    ).get_json()["event_id"]
    make_failed(conn, failed)
    run_worker_until_idle(config)
    queued = post_event(client, {"event_type": "user_signup", "payload": {}}).get_json()["event_id"]
    # It has waited 90 s, as far as the page can tell.
    conn.execute(
        "UPDATE events SET run_at = now() - interval '90 seconds' WHERE id = %s", (queued,)
    )
    return {"completed": completed, "failed": failed, "queued": queued}


# -- what the page shows --------------------------------------------------------------------


def test_the_root_redirects_to_the_dashboard(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard"


def test_the_page_shows_counts_throughput_the_failed_and_the_recent_events(client, three):
    document = page(client)
    counts = {
        s: document.by_id(f"count-{s}").text()
        for s in ("queued", "processing", "completed", "failed")
    }
    assert counts == {"queued": "1", "processing": "0", "completed": "1", "failed": "1"}
    assert document.by_id("oldest-queued").text() in {"90 s", "91 s", "92 s"}
    assert document.by_id("live-worker-count").text() == "0"
    assert "No live workers" in document.by_id("live-workers").text()

    caption = document.by_id("throughput-caption").text()
    assert caption.startswith("1 completed in the last 15 minutes, at most 1 in one minute")
    bars = document.by_id("live-throughput").find_all("rect")
    assert len(bars) == 15
    assert [float(str(b.attrs["height"])) > 0 for b in bars] == [False] * 14 + [True]

    assert row_ids(document, "live-failed") == [three["failed"]]
    (failed_row,) = document.rows("live-failed")
    assert "sla_breach" in failed_row.text()
    assert (
        "rule error: rule sla_breach.major: payload.minutes_over: Must be a finite number."
        in failed_row.text()
    )
    (button,) = failed_row.find_all("button")
    assert (button.text(), button.attrs["data-replay"]) == ("Replay", three["failed"])

    # Newest first, each with its status; the completed one with its severity.
    assert row_ids(document, "live-recent") == [
        three["queued"],
        three["failed"],
        three["completed"],
    ]
    texts = [tr.text() for tr in document.rows("live-recent")]
    assert "user_signup" in texts[0] and "queued" in texts[0]
    assert "failed" in texts[1]
    assert "payment_failed" in texts[2] and "completed" in texts[2] and "CRITICAL" in texts[2]


def test_each_rules_matches_of_the_last_24_hours_with_its_share(client, config, conn):
    assert "No event was judged in the last 24 hours" in page(client).by_id("live-rules").text()
    for amount in (5000, 2000, 10):
        post_event(client, {"event_type": "payment_failed", "payload": {"amount": amount}})
    for event_type in ("user_signup", "page_view", "login", "logout"):
        post_event(client, {"event_type": event_type, "payload": {}})
    old = post_event(client, {"event_type": "system_error", "payload": {}}).get_json()["event_id"]
    run_worker_until_idle(config)
    # A verdict given 25 hours ago is out of the window.
    conn.execute(
        "UPDATE event_processing_results SET processed_at = now() - interval '25 hours'"
        " WHERE event_id = %s",
        (old,),
    )

    document = page(client)
    table = [
        (str(tr.attrs["data-rule-id"]), [td.text() for td in tr.find_all("td")])
        for tr in document.by_id("live-rules").find_all("tr")
        if "data-rule-id" in tr.attrs
    ]
    assert table == [
        ("default", ["default", "4", "57.1%"]),
        ("payment_failed.large", ["payment_failed.large", "2", "28.6%"]),
        ("payment_failed.small", ["payment_failed.small", "1", "14.3%"]),
    ]
    assert "last 24 hours" in document.by_id("rules-heading").text()
    fragment = page(client, "/dashboard/live")
    # The same, less the version's age, which moves between the two requests.
    assert _without_age(fragment.by_id("live-rules").text()) == _without_age(
        document.by_id("live-rules").text()
    )


def _without_age(text: str) -> str:
    return re.sub(r"activated [\d.]+ \w+ ago", "activated … ago", text)


def test_the_rules_section_names_the_active_version_and_follows_an_apply(client, conn):
    shipped = page(client).by_id("rules-version")
    assert shipped.find_all("strong")[0].attrs["data-version"] == "1"
    assert shipped.text().startswith("Active rule version 1 · ")
    assert "by eventflo migration" in shipped.text()

    ruleversions.apply(
        conn,
        rules.load(DISK_RULES),
        message="<b>disk_full</b> at 90 % is CRITICAL",
        created_by="alice",
    )

    document = page(client)
    active = document.by_id("rules-version")
    assert active.find_all("strong")[0].text() == "2"
    # The operator's message is text, not markup.
    assert active.find_all("b") == []
    assert "<b>disk_full</b> at 90 % is CRITICAL" in active.text()
    assert re.search(r"activated \d+\.\d s ago by alice$", active.text()), active.text()
    # The refreshing part carries it too, so an apply shows without reloading the page.
    # (Less the age, which moves between the two requests.)
    live = page(client, "/dashboard/live").by_id("rules-version").text()
    assert _without_age(live) == _without_age(active.text())

    ruleversions.rollback(conn, 1, activated_by="bob")
    rolled_back = page(client).by_id("rules-version").text()
    assert rolled_back.startswith("Active rule version 1 · ")
    assert rolled_back.endswith("by bob")


def test_the_live_fragment_carries_every_part_the_page_refreshes(client, three):
    full = page(client)
    fragment = page(client, "/dashboard/live")
    refreshed = {str(e.attrs["id"]) for e in fragment.find_all() if "data-live" in e.attrs}
    on_page = {str(e.attrs["id"]) for e in full.find_all() if "data-live" in e.attrs}
    assert refreshed == on_page
    assert fragment.by_id("count-failed").text() == "1"
    assert fragment.find_all("html") == []  # a fragment, not a page


def test_filters_narrow_the_recent_list(client, three):
    by_status = page(client, status="failed")
    assert row_ids(by_status, "live-recent") == [three["failed"]]
    assert "with status failed" in by_status.by_id("live-recent").text()
    # The counts and the failed list do not depend on the filter.
    assert by_status.by_id("count-completed").text() == "1"

    by_type = page(client, event_type="payment_failed")
    assert row_ids(by_type, "live-recent") == [three["completed"]]
    selected = [o.text() for o in by_type.find_all("option") if "selected" in o.attrs]
    assert selected == ["payment_failed"]
    offered = [o.text() for o in by_type.find_all("select")[1].find_all("option")]
    assert offered == ["all types", "payment_failed", "sla_breach", "user_signup"]

    assert row_ids(page(client, status="queued", event_type="payment_failed"), "live-recent") == []
    assert row_ids(page(client, "/dashboard/live", status="completed"), "live-recent") == [
        three["completed"]
    ]


def test_an_unknown_status_is_ignored_and_said_so(client, three):
    document = page(client, status="lost")
    assert len(row_ids(document, "live-recent")) == 3
    assert "Unknown status 'lost' ignored" in document.text()


def test_user_data_is_escaped(client, conn):
    event_id = post_event(
        client,
        {"event_type": "user_signup", "payload": {}, "source": "<script>alert('source')</script>"},
    ).get_json()["event_id"]
    conn.execute(
        "UPDATE events SET status = 'failed', error_message = %s WHERE id = %s",
        ("<img src=x onerror=alert('error')>", event_id),
    )
    response = client.get("/dashboard", query_string={"event_type": '"><script>alert(1)</script>'})
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "<script>alert" not in body
    assert "<img src=x" not in body
    assert "&lt;script&gt;alert(&#39;source&#39;)&lt;/script&gt;" in body
    assert "&lt;img src=x onerror=alert(&#39;error&#39;)&gt;" in body
    assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in body
    # What a person reads is the text as stored.
    (row,) = parse(response).rows("live-failed")
    assert "<img src=x onerror=alert('error')>" in row.text()


def test_live_workers_are_listed_and_silent_ones_mentioned(client, conn, config):
    conn.execute(
        """
        INSERT INTO workers (id, host, pid, started_at, last_seen_at, stopped_at, completed, failed)
        VALUES ('web-1:101:aaaa', 'web-1', 101, now() - interval '1 hour', now(), NULL, 1234, 5),
               ('web-2:202:bbbb', 'web-2', 202, now() - interval '1 hour',
                now() - make_interval(secs => %(timeout)s + 10), NULL, 7, 0),
               ('web-3:303:cccc', 'web-3', 303, now() - interval '1 hour', now(), now(), 9, 0)
        """,
        {"timeout": config.worker_timeout},
    )
    document = page(client)
    assert document.by_id("live-worker-count").text() == "1"
    table = document.by_id("live-workers")
    (row,) = table.find_all("tbody")[0].find_all("tr")
    cells = [td.text() for td in row.find_all("td")]
    assert cells[:3] == ["web-1:101:aaaa", "web-1", "101"]
    assert cells[3] == "60 min ago"
    assert cells[5:] == ["1,234", "5"]
    assert "1 registered worker(s) went silent" in table.text()


# -- the replay POST ------------------------------------------------------------------------


def statuses(conn: psycopg.Connection[Any]) -> dict[str, str]:
    return {str(r["id"]): r["status"] for r in conn.execute("SELECT id, status::text FROM events")}


@pytest.fixture
def two_failed(client: Any, config: Config, conn: psycopg.Connection[Any]) -> list[str]:
    ids = []
    for _ in range(2):
        event_id = post_event(client, {"event_type": "sla_breach", "payload": {}}).get_json()[
            "event_id"
        ]
        make_failed(conn, event_id)
        ids.append(event_id)
    run_worker_until_idle(config)
    assert set(statuses(conn).values()) == {"failed"}
    return ids


def test_replay_requeues_exactly_the_failed_event_it_names(client, conn, config, two_failed):
    completed = post_event(client, {"event_type": "user_signup", "payload": {}}).get_json()[
        "event_id"
    ]
    run_worker_until_idle(config)
    response = client.post(
        "/dashboard/replay",
        json={"event_ids": [two_failed[0], completed]},
        headers={**REPLAY_HEADERS, "Origin": "http://localhost"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"requested": 2, "requeued": 1, "skipped": 1}
    # The completed one is not failed: `eventflo replay --id` would leave it alone too.
    assert statuses(conn) == {
        two_failed[0]: "queued",
        two_failed[1]: "failed",
        completed: "completed",
    }
    row = conn.execute(
        "SELECT attempts, error_message FROM events WHERE id = %s", (two_failed[0],)
    ).fetchone()
    assert (row["attempts"], row["error_message"]) == (0, None)

    # A second click finds it no longer failed.
    again = client.post(
        "/dashboard/replay", json={"event_ids": [two_failed[0]]}, headers=REPLAY_HEADERS
    )
    assert again.get_json() == {"requested": 1, "requeued": 0, "skipped": 1}


def test_a_replayed_event_leaves_the_failed_list(client, conn, config, two_failed):
    set_payload(conn, two_failed[1], {"minutes_over": 45})
    client.post("/dashboard/replay", json={"event_ids": [two_failed[1]]}, headers=REPLAY_HEADERS)
    run_worker_until_idle(config)
    document = page(client)
    assert row_ids(document, "live-failed") == [two_failed[0]]
    assert document.by_id("count-completed").text() == "1"


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        pytest.param({}, "X-EventFlo-Action: replay", id="no action header"),
        pytest.param(
            {"X-EventFlo-Action": "delete"}, "X-EventFlo-Action: replay", id="wrong action"
        ),
        pytest.param(
            {**REPLAY_HEADERS, "Origin": "https://evil.example"},
            "evil.example",
            id="foreign origin",
        ),
        pytest.param(
            {**REPLAY_HEADERS, "Origin": "http://localhost.evil.example"},
            "evil",
            id="lookalike origin",
        ),
        pytest.param(
            {**REPLAY_HEADERS, "Origin": "http://localhost:8080"}, "8080", id="other port"
        ),
        pytest.param({**REPLAY_HEADERS, "Origin": "null"}, "'null'", id="opaque origin"),
    ],
)
def test_a_cross_site_replay_is_refused_and_requeues_nothing(
    client, conn, two_failed, headers, why
):
    response = client.post("/dashboard/replay", json={"event_ids": two_failed}, headers=headers)
    body = assert_problem(response, 403)
    assert why in body["detail"] and "nothing was requeued" in body["detail"]
    assert set(statuses(conn).values()) == {"failed"}


def test_a_cross_site_form_post_is_refused(client, conn, two_failed):
    """What a hostile page's <form method=post> sends: a simple body, its Origin, no header."""
    response = client.post(
        "/dashboard/replay",
        data={"event_ids": two_failed[0]},
        headers={"Origin": "https://evil.example"},
    )
    assert_problem(response, 403)
    assert set(statuses(conn).values()) == {"failed"}


def test_a_cors_preflight_is_never_granted(client):
    response = client.options(
        "/dashboard/replay",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-eventflo-action, content-type",
        },
    )
    granted = [name for name, _ in response.headers.items() if name.lower().startswith("access-")]
    assert granted == []


@pytest.mark.parametrize(
    "body",
    [
        None,
        {},
        {"event_ids": []},
        {"event_ids": "x"},
        {"event_ids": ["not-a-uuid"]},
        {"event_ids": [1]},
        {"event_ids": [str(uuid.uuid4())] * 101},
    ],
)
def test_a_malformed_replay_is_400(client, body):
    response = client.post("/dashboard/replay", json=body, headers=REPLAY_HEADERS)
    assert_problem(response, 400)


@pytest.mark.parametrize(
    "raw",
    # A lenient parser would take the last key, and skip NaN: a replay of a failed event.
    ['{"event_ids": [], "event_ids": ["a"]}', '{"event_ids": ["a"], "at": NaN}'],
)
def test_a_replay_body_goes_through_the_strict_json_parser(client, conn, two_failed, raw):
    response = client.post(
        "/dashboard/replay",
        data=raw.replace('"a"', f'"{two_failed[0]}"'),
        headers={**REPLAY_HEADERS, "Content-Type": "application/json"},
    )
    assert_problem(response, 400)
    assert set(statuses(conn).values()) == {"failed"}


# -- headers, assets, failures ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 302),
        ("GET", "/dashboard", 200),
        ("GET", "/dashboard/live", 200),
        ("GET", "/dashboard/static/dashboard.js", 200),
        ("GET", "/dashboard/static/dashboard.css", 200),
        ("POST", "/dashboard/replay", 403),
    ],
)
def test_every_dashboard_response_has_the_security_headers(client, method, path, status):
    with client.open(path, method=method) as response:  # a file response too: close it
        assert response.status_code == status
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value, name
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        if not path.startswith("/dashboard/static/"):
            assert response.headers["Cache-Control"] == "no-store"


def test_the_page_needs_nothing_inline_and_nothing_from_elsewhere(client, three):
    response = client.get("/dashboard")
    document = parse(response)
    scripts = document.find_all("script")
    assert scripts and all(s.attrs.get("src", "").startswith("/dashboard/static/") for s in scripts)
    assert all(not s.text() for s in scripts)
    assert document.find_all("style") == []
    assert [e.tag for e in document.iter() if "style" in e.attrs] == []
    assert not re.search(r"\son\w+=", response.get_data(as_text=True))  # no inline handlers
    for element in document.iter():
        for name in ("src", "href", "action"):
            value = str(element.attrs.get(name) or "")
            assert not value or value.startswith("/"), f"<{element.tag} {name}={value!r}>"
    for asset in ("dashboard.js", "dashboard.css", "favicon.svg"):
        with client.get(f"/dashboard/static/{asset}") as served:
            assert served.status_code == 200 and served.data


def test_database_down_is_a_503_page_and_problem_not_a_traceback(make_app):
    client = make_app(database_url=UNREACHABLE, pool_timeout=1.0).test_client()
    response = client.get("/dashboard")
    assert response.status_code == 503
    assert response.mimetype == "text/html"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    problem = parse(response).by_id("live-problem").text()
    assert problem.startswith("Database unavailable")
    assert "tries again every 5 s" in problem
    assert "Traceback" not in response.get_data(as_text=True)

    assert_problem(client.get("/dashboard/live"), 503)
    replay = client.post(
        "/dashboard/replay", json={"event_ids": [str(uuid.uuid4())]}, headers=REPLAY_HEADERS
    )
    assert_problem(replay, 503)


def test_a_database_without_the_workers_table_is_a_503_saying_migrate(client, conn):
    conn.execute("DROP TABLE workers")
    response = client.get("/dashboard")
    assert response.status_code == 503
    text = parse(response).by_id("live-problem").text()
    assert "Database schema not current" in text and "eventflo migrate" in text
    assert_problem(client.get("/dashboard/live"), 503)


def test_endpoints_are_listed_with_their_health(client, conn):
    assert "No endpoints" in page(client).by_id("live-endpoints").text()
    conn.execute(
        "INSERT INTO endpoints (name, url, format, enabled, disabled_at, disabled_reason,"
        " failure_streak, failing_since, last_success_at) VALUES"
        " ('ok-one', 'https://a.example/', 'slack', true, NULL, NULL, 0, NULL, now()),"
        " ('shaky', 'https://b.example/', 'slack', true, NULL, NULL, 3,"
        "  now() - interval '2 hours', NULL),"
        " ('gone', 'https://c.example/', 'slack', false, now(),"
        "  'the endpoint answered 410 Gone <b>', 0, NULL, NULL)"
    )
    conn.execute(
        "INSERT INTO deliveries (endpoint_id, event_id, result, status)"
        " SELECT id, gen_random_uuid(), '{}', 'failed' FROM endpoints WHERE name = 'shaky'"
    )
    response = client.get("/dashboard")
    table = parse(response).by_id("live-endpoints")
    rows = {
        row.attrs["data-endpoint"]: row
        for row in table.find_all("tr")
        if "data-endpoint" in row.attrs
    }
    assert set(rows) == {"ok-one", "shaky", "gone"}
    assert "ok" in rows["ok-one"].text() and "ago" in rows["ok-one"].text()
    assert "failing: 3 attempt(s) in a row since 2 h" in rows["shaky"].text()
    assert rows["shaky"].find_all("td")[5].text() == "1"  # failed deliveries
    assert rows["shaky"].find_all("button")[0].attrs["data-replay-endpoint"] == "shaky"
    assert rows["ok-one"].find_all("button") == []  # nothing failed, nothing to replay
    assert "disabled: the endpoint answered 410 Gone <b>" in rows["gone"].text()
    assert "410 Gone <b>" not in response.get_data(as_text=True)  # escaped
    assert "https://b.example" not in response.get_data(as_text=True)  # no URL shown


# -- failed deliveries and their replay ----------------------------------------------------------


def delivery_statuses(conn: psycopg.Connection[Any]) -> dict[str, str]:
    rows = conn.execute("SELECT id::text AS id, status::text AS status FROM deliveries")
    return {row["id"]: row["status"] for row in rows}


@pytest.fixture
def deliveries_of_two(conn: psycopg.Connection[Any]) -> dict[str, list[str]]:
    """Endpoints a and b with two failed deliveries each, a pending one and a delivered one."""
    conn.execute(
        "INSERT INTO endpoints (name, url, format) VALUES"
        " ('a', 'https://a.example/', 'slack'), ('b', 'https://b.example/', 'slack')"
    )
    made: dict[str, list[str]] = {}
    for name, status in (
        ("a", "failed"),
        ("a", "failed"),
        ("b", "failed"),
        ("b", "failed"),
        ("a", "pending"),
        ("a", "delivered"),
    ):
        row = conn.execute(
            "INSERT INTO deliveries (endpoint_id, event_id, result, status, attempts,"
            " last_status_code, last_error, delivered_at)"
            " SELECT id, gen_random_uuid(), '{}', %(status)s::delivery_status, 8, 500,"
            "  CASE WHEN %(status)s::delivery_status = 'failed'"
            "   THEN '<script>alert(1)</script> timed out' END,"
            "  CASE WHEN %(status)s::delivery_status = 'delivered' THEN now() END"
            " FROM endpoints WHERE name = %(name)s RETURNING id::text AS id",
            {"name": name, "status": status},
        ).fetchone()
        made.setdefault(f"{name} {status}", []).append(row["id"])
    return made


def test_failed_deliveries_are_listed_newest_first_with_a_replay_each(
    client, conn, deliveries_of_two
):
    response = client.get("/dashboard")
    document = parse(response)
    listed = [
        row.attrs["data-delivery-id"]
        for row in document.by_id("live-endpoints").find_all("tr")
        if "data-delivery-id" in row.attrs
    ]
    failed = deliveries_of_two["a failed"] + deliveries_of_two["b failed"]
    assert listed == sorted(failed, reverse=True)  # uuidv7: newest first
    first = next(
        row
        for row in document.by_id("live-endpoints").find_all("tr")
        if row.attrs.get("data-delivery-id") == listed[0]
    )
    cells = [cell.text() for cell in first.find_all("td")]
    assert cells[1:2] == ["b"] and cells[3:5] == ["8", "500"]
    assert cells[5] == "<script>alert(1)</script> timed out"  # shown as text...
    assert "<script>alert(1)" not in response.get_data(as_text=True)  # ...because escaped
    assert first.find_all("button")[0].attrs["data-replay-delivery"] == listed[0]
    # The live fragment carries them too: a refresh shows a replay's effect.
    live = parse(client.get("/dashboard/live")).by_id("live-endpoints")
    assert sum("data-delivery-id" in row.attrs for row in live.find_all("tr")) == 4


def test_no_failed_delivery_no_list(client, conn, deliveries_of_two):
    conn.execute("DELETE FROM deliveries WHERE status = 'failed'")
    text = page(client).by_id("live-endpoints").text()
    assert "Failed deliveries" not in text and "Replay" not in text


def test_replaying_deliveries_by_id_requeues_only_the_failed_ones(client, conn, deliveries_of_two):
    target = deliveries_of_two["a failed"][0]
    pending = deliveries_of_two["a pending"][0]
    delivered = deliveries_of_two["a delivered"][0]
    response = client.post(
        "/dashboard/deliveries/replay",
        json={"delivery_ids": [target, pending, delivered, str(uuid.uuid4())]},
        headers={**REPLAY_HEADERS, "Origin": "http://localhost"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"requested": 4, "requeued": 1, "skipped": 3}
    now = delivery_statuses(conn)
    assert now[target] == "pending"
    assert now[delivered] == "delivered" and now[pending] == "pending"
    assert [now[i] for i in deliveries_of_two["b failed"]] == ["failed", "failed"]
    row = conn.execute(
        "SELECT attempts, run_at <= now() AS due FROM deliveries WHERE id = %s", (target,)
    ).fetchone()
    assert (row["attempts"], row["due"]) == (0, True)  # a new run, due now


def test_replaying_an_endpoint_requeues_all_its_failed_deliveries_and_no_others(
    client, conn, deliveries_of_two
):
    response = client.post(
        "/dashboard/deliveries/replay", json={"endpoint": "a"}, headers=REPLAY_HEADERS
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"endpoint": "a", "requeued": 2}
    now = delivery_statuses(conn)
    assert {now[i] for i in deliveries_of_two["a failed"]} == {"pending"}
    assert {now[i] for i in deliveries_of_two["b failed"]} == {"failed"}
    again = client.post(
        "/dashboard/deliveries/replay", json={"endpoint": "a"}, headers=REPLAY_HEADERS
    )
    assert again.get_json() == {"endpoint": "a", "requeued": 0}


def test_replaying_an_unknown_endpoint_is_404(client, conn, deliveries_of_two):
    response = client.post(
        "/dashboard/deliveries/replay", json={"endpoint": "nope"}, headers=REPLAY_HEADERS
    )
    assert "nope" in assert_problem(response, 404)["detail"]


@pytest.mark.parametrize(
    "body",
    [
        None,
        {},
        {"delivery_ids": []},
        {"delivery_ids": ["not-a-uuid"]},
        {"delivery_ids": [str(uuid.uuid4())] * 101},
        {"endpoint": ""},
        {"endpoint": ["a"]},
        {"endpoint": "a", "delivery_ids": [str(uuid.uuid4())]},
    ],
)
def test_a_malformed_delivery_replay_is_400_and_requeues_nothing(
    client, conn, deliveries_of_two, body
):
    response = client.post("/dashboard/deliveries/replay", json=body, headers=REPLAY_HEADERS)
    assert_problem(response, 400)
    assert "pending" not in {
        delivery_statuses(conn)[i]
        for i in deliveries_of_two["a failed"] + deliveries_of_two["b failed"]
    }


@pytest.mark.parametrize(
    "headers",
    [{}, {**REPLAY_HEADERS, "Origin": "https://evil.example"}],
    ids=["no action header", "foreign origin"],
)
def test_a_cross_site_delivery_replay_is_refused(client, conn, deliveries_of_two, headers):
    response = client.post("/dashboard/deliveries/replay", json={"endpoint": "a"}, headers=headers)
    assert_problem(response, 403)
    assert {delivery_statuses(conn)[i] for i in deliveries_of_two["a failed"]} == {"failed"}
