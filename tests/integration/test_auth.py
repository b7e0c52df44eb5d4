"""API keys at the door: 401 without one, 403 with the wrong scope, revocation at once.

The apps here run with EVENTFLO_AUTH on (the default); the rest of the
integration suite turns it off to test everything else.
"""

from __future__ import annotations

import uuid
from typing import Any

import flask
import pytest

from eventflo import auth, create_app, keys
from eventflo.config import Config
from tests.integration.conftest import assert_clean_exit, cli_env
from tests.integration.test_api import PAYMENT, assert_problem, count_events, run_worker_once

BATCH = {"events": [PAYMENT, PAYMENT]}


@pytest.fixture
def app(make_app: Any) -> flask.Flask:
    return make_app(auth=True)


@pytest.fixture
def key_of(conn: Any) -> dict[str, str]:
    """One key per scope, made as `eventflo keys create` makes them."""
    return {scope: keys.create(conn, name=f"{scope} key", scope=scope)[1] for scope in keys.SCOPES}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def replay_body(event_id: str) -> dict[str, Any]:
    return {"json": {"event_ids": [event_id]}, "headers": {"X-EventFlo-Action": "replay"}}


@pytest.fixture
def failed_event(conn: Any) -> str:
    row = conn.execute(
        "INSERT INTO events (event_type, payload, status, error_message)"
        " VALUES ('sla_breach', '{}', 'failed', 'rule error: boom') RETURNING id"
    ).fetchone()
    return str(row["id"])


# -- which route needs what ----------------------------------------------------------------

EXPECTED_SCOPES = {
    "events.create_event": "ingest",
    "events.create_events_batch": "ingest",
    "events.get_event": "read",
    "events.list_events": "read",
    "rules.get_rules": "read",
    "rules.simulate_rules": "admin",
    "endpoints.list_endpoints": "admin",
    "endpoints.add_endpoint": "admin",
    "endpoints.show_endpoint": "admin",
    "endpoints.disable_endpoint": "admin",
    "endpoints.enable_endpoint": "admin",
    "endpoints.rotate_endpoint_secret": "admin",
    "endpoints.remove_endpoint": "admin",
    "dashboard.page": "read",
    "dashboard.live": "read",
    "dashboard.replay": "admin",
    "dashboard.replay_deliveries": "admin",
    "dashboard.index": auth.PUBLIC,
    "dashboard.favicon": auth.PUBLIC,
    "dashboard.login_form": auth.PUBLIC,
    "dashboard.login": auth.PUBLIC,
    "dashboard.logout": auth.PUBLIC,
    "dashboard.static": auth.PUBLIC,
    "health.healthz": auth.PUBLIC,
    "health.readyz": auth.PUBLIC,
    "metrics.metrics": auth.PUBLIC,
    "api-docs.openapi_json": auth.PUBLIC,
    "api-docs.openapi_swagger_ui": auth.PUBLIC,
    "docs_assets.asset": auth.PUBLIC,
    "static": auth.PUBLIC,
}


def test_every_route_needs_exactly_the_scope_the_readme_names():
    """A new route must be placed here on purpose (unmarked, it would need admin)."""
    app = create_app(Config(database_url="postgresql://spec-only@localhost/none"))
    found = {
        rule.endpoint: auth.required_scope(app, rule.endpoint) for rule in app.url_map.iter_rules()
    }
    assert found == EXPECTED_SCOPES


def test_an_unmarked_view_needs_admin():
    app = flask.Flask(__name__)
    app.add_url_rule("/new", "new", lambda: "")
    assert auth.required_scope(app, "new") == "admin"


# -- 401 ----------------------------------------------------------------------------------

PROTECTED = [
    ("POST", "/events", {"json": PAYMENT}),
    ("POST", "/events/batch", {"json": BATCH}),
    ("GET", "/events", {}),
    ("GET", f"/events/{uuid.UUID(int=1)}", {}),
    ("GET", "/dashboard/live", {}),
    ("POST", "/dashboard/replay", replay_body(str(uuid.UUID(int=1)))),
    ("POST", "/dashboard/deliveries/replay", {"json": {"endpoint": "ops"}}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), PROTECTED)
def test_without_a_key_the_answer_is_401_and_nothing_is_stored(client, conn, method, path, kwargs):
    response = client.open(path, method=method, **kwargs)
    body = assert_problem(response, 401)
    assert "Authorization: Bearer" in body["detail"]
    assert "eventflo keys create" in body["detail"]
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="eventflo"'
    assert count_events(conn) == 0


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "Token efk_x", "efk_whatever"],
)
def test_a_header_of_another_shape_is_a_401_that_says_how(client, header):
    body = assert_problem(client.get("/events", headers={"Authorization": header}), 401)
    assert "Authorization: Bearer <key>" in body["detail"]


@pytest.mark.parametrize("token", ["efk_" + "A" * 43, "not-a-key", "efk_" + "!" * 43, "x" * 5000])
def test_an_unknown_key_is_a_401_that_does_not_echo_it(client, key_of, token):
    response = client.get("/events", headers=bearer(token))
    body = assert_problem(response, 401)
    assert body["detail"] == "The API key is not valid: no such key exists."
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="eventflo", error="invalid_token"'
    assert token[:12] not in response.get_data(as_text=True)


def test_the_scheme_is_case_insensitive(client, key_of):
    assert (
        client.get("/events", headers={"Authorization": f"bearer {key_of['read']}"}).status_code
        == 200
    )


# -- scopes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "method", "path", "expected"),
    [
        ("ingest", "POST", "/events", 202),
        ("ingest", "POST", "/events/batch", 202),
        ("ingest", "GET", "/events", 403),
        ("ingest", "GET", "/dashboard/live", 403),
        ("read", "POST", "/events", 403),
        ("read", "POST", "/events/batch", 403),
        ("read", "GET", "/events", 200),
        ("read", "GET", "/dashboard/live", 200),
        ("admin", "POST", "/events", 202),
        ("admin", "POST", "/events/batch", 202),
        ("admin", "GET", "/events", 200),
        ("admin", "GET", "/dashboard/live", 200),
    ],
)
def test_each_scope_may_do_its_own_requests_and_admin_everything(
    client, conn, key_of, scope, method, path, expected
):
    kwargs = {"json": BATCH if path.endswith("batch") else PAYMENT} if method == "POST" else {}
    response = client.open(path, method=method, headers=bearer(key_of[scope]), **kwargs)
    assert response.status_code == expected, response.get_data(as_text=True)
    if expected == 403:
        body = assert_problem(response, 403)
        assert f"has scope {scope}" in body["detail"]
        assert key_of[scope][:12] in body["detail"] and key_of[scope][12:] not in body["detail"]
        needed = "ingest" if method == "POST" else "read"
        assert f'scope="{needed}"' in response.headers["WWW-Authenticate"]
        assert count_events(conn) == 0


def test_an_ingest_key_reads_nothing_back(client, key_of):
    posted = client.post("/events", json=PAYMENT, headers=bearer(key_of["ingest"]))
    assert posted.status_code == 202
    location = posted.headers["Location"]
    assert_problem(client.get(location, headers=bearer(key_of["ingest"])), 403)
    assert client.get(location, headers=bearer(key_of["read"])).status_code == 200


def test_only_an_admin_key_replays_from_the_dashboard(client, conn, key_of, failed_event):
    for scope in ("ingest", "read"):
        refused = client.post(
            "/dashboard/replay", headers={**bearer(key_of[scope]), "X-EventFlo-Action": "replay"},
            json={"event_ids": [failed_event]},
        )  # fmt: skip
        assert_problem(refused, 403)
    status = conn.execute("SELECT status::text FROM events WHERE id = %s", (failed_event,))
    assert status.fetchone()["status"] == "failed"
    done = client.post(
        "/dashboard/replay", headers={**bearer(key_of["admin"]), "X-EventFlo-Action": "replay"},
        json={"event_ids": [failed_event]},
    )  # fmt: skip
    assert done.status_code == 200 and done.get_json()["requeued"] == 1


def test_only_an_admin_key_replays_deliveries_from_the_dashboard(client, conn, key_of):
    conn.execute(
        "INSERT INTO endpoints (name, url, format) VALUES ('ops', 'https://ops.example/', 'slack')"
    )
    conn.execute(
        "INSERT INTO deliveries (endpoint_id, event_id, result, status)"
        " SELECT id, gen_random_uuid(), '{}', 'failed' FROM endpoints"
    )
    for scope in ("ingest", "read"):
        refused = client.post(
            "/dashboard/deliveries/replay", json={"endpoint": "ops"},
            headers={**bearer(key_of[scope]), "X-EventFlo-Action": "replay"},
        )  # fmt: skip
        assert_problem(refused, 403)
    assert conn.execute("SELECT status::text FROM deliveries").fetchone()["status"] == "failed"
    done = client.post(
        "/dashboard/deliveries/replay", json={"endpoint": "ops"},
        headers={**bearer(key_of["admin"]), "X-EventFlo-Action": "replay"},
    )  # fmt: skip
    assert done.status_code == 200 and done.get_json() == {"endpoint": "ops", "requeued": 1}


def test_the_replay_still_needs_its_header_with_an_admin_key(client, key_of, failed_event):
    """The key says who; the header says the request came from the dashboard's own script."""
    response = client.post(
        "/dashboard/replay", headers=bearer(key_of["admin"]), json={"event_ids": [failed_event]}
    )
    assert assert_problem(response, 403)["title"] == "Cross-site request refused"


# -- open doors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/dashboard/login"]
)
def test_probes_metrics_and_docs_need_no_key(client, path):
    assert client.get(path).status_code == 200


def test_the_favicon_is_there_for_browsers_without_a_key(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    with client.get(response.location) as icon:
        assert icon.status_code == 200
        assert icon.mimetype == "image/svg+xml"


def test_unknown_routes_and_methods_keep_their_404_and_405(client):
    assert_problem(client.get("/nowhere"), 404)
    assert_problem(client.delete("/events"), 405)


def test_with_auth_off_no_key_is_needed_and_the_app_says_so(make_app, conn, capsys):
    app = make_app(auth=False)
    assert "WARNING eventflo.auth EVENTFLO_AUTH=off: the API accepts every request" in (
        capsys.readouterr().err
    )
    client = app.test_client()
    assert client.post("/events", json=PAYMENT).status_code == 202
    assert client.get("/events").status_code == 200
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert "Authentication is off" in page.get_data(as_text=True)
    assert client.get("/dashboard/login").status_code == 302  # nothing to sign in to


def test_auth_is_on_unless_switched_off():
    assert Config().auth is True
    assert Config.from_env({"EVENTFLO_AUTH": "off"}).auth is False
    assert Config.from_env({"EVENTFLO_AUTH": " ON "}).auth is True


def test_a_bad_auth_setting_is_a_clear_error_at_start(invoke):
    result = invoke("serve", env=cli_env("postgresql://x@localhost/db", auth="maybe"))
    assert_clean_exit(result, 2)
    assert "EVENTFLO_AUTH='maybe' is invalid: must be on or off" in result.output


# -- revocation and last use ----------------------------------------------------------------


def test_a_revoked_key_stops_working_with_the_next_request(client, invoke, key_of):
    headers = bearer(key_of["read"])
    assert client.get("/events", headers=headers).status_code == 200
    assert_clean_exit(invoke("keys", "revoke", key_of["read"][:12]), 0)
    body = assert_problem(client.get("/events", headers=headers), 401)
    assert "has been revoked" in body["detail"]
    # The others are untouched.
    assert client.get("/events", headers=bearer(key_of["admin"])).status_code == 200


def test_last_used_is_recorded_at_most_once_a_minute(client, conn, key_of):
    def last_used() -> Any:
        row = conn.execute(
            "SELECT last_used_at FROM api_keys WHERE prefix = %s", (key_of["read"][:12],)
        ).fetchone()
        return row["last_used_at"]

    assert last_used() is None
    assert client.get("/events", headers=bearer(key_of["read"])).status_code == 200
    first = last_used()
    assert first is not None
    assert client.get("/events", headers=bearer(key_of["read"])).status_code == 200
    assert last_used() == first
    conn.execute("UPDATE api_keys SET last_used_at = last_used_at - interval '2 minutes'")
    assert client.get("/events", headers=bearer(key_of["read"])).status_code == 200
    assert last_used() > first  # two minutes old: brought up to date
    # A valid key refused for its scope was still presented: that counts as a use.
    unused = key_of["ingest"]
    assert client.get("/events", headers=bearer(unused)).status_code == 403
    row = conn.execute(
        "SELECT last_used_at FROM api_keys WHERE prefix = %s", (unused[:12],)
    ).fetchone()
    assert row["last_used_at"] is not None


# -- the dashboard in a browser's way: a form and a cookie ----------------------------------


def test_the_dashboard_page_sends_a_browser_to_sign_in(client):
    response = client.get("/dashboard")
    assert response.status_code == 303
    assert response.headers["Location"] == "/dashboard/login"


def test_signing_in_keeps_the_key_in_a_strict_httponly_cookie(client, key_of):
    response = client.post("/dashboard/login", data={"key": key_of["read"]})
    assert response.status_code == 303 and response.headers["Location"] == "/dashboard"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{auth.COOKIE}={key_of['read']};")
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert attribute in cookie, cookie
    page = client.get("/dashboard")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "read key, read" in text and key_of["read"][12:] not in text
    assert client.get("/dashboard/live").status_code == 200


def test_the_cookie_reads_but_never_writes_outside_the_dashboard(client, conn, key_of):
    client.post("/dashboard/login", data={"key": key_of["admin"]})
    assert_problem(client.post("/events", json=PAYMENT), 401)
    assert count_events(conn) == 0
    posted = client.post("/events", json=PAYMENT, headers=bearer(key_of["ingest"]))
    assert client.get(posted.headers["Location"]).status_code == 200


def test_a_read_cookie_cannot_replay_and_sees_no_button(client, conn, key_of, failed_event):
    client.post("/dashboard/login", data={"key": key_of["read"]})
    page = client.get("/dashboard").get_data(as_text=True)
    assert f'data-replay="{failed_event}"' not in page
    assert "Replaying needs an admin key" in page
    refused = client.post("/dashboard/replay", **replay_body(failed_event))
    assert_problem(refused, 403)
    client.post("/dashboard/login", data={"key": key_of["admin"]})
    assert f'data-replay="{failed_event}"' in client.get("/dashboard").get_data(as_text=True)
    assert client.post("/dashboard/replay", **replay_body(failed_event)).get_json()["requeued"] == 1


@pytest.mark.parametrize(
    ("presented", "status", "message"),
    [
        ("", 400, "Paste an API key"),
        ("efk_" + "B" * 43, 401, "not valid"),
        ("ingest", 403, "the dashboard needs a read or admin key"),
    ],
)
def test_a_refused_sign_in_says_why_and_sets_no_cookie(client, key_of, presented, status, message):
    response = client.post("/dashboard/login", data={"key": key_of.get(presented, presented)})
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    assert "Set-Cookie" not in response.headers
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")


def test_revoking_the_key_signs_the_browser_out(client, invoke, key_of):
    client.post("/dashboard/login", data={"key": key_of["read"]})
    assert client.get("/dashboard").status_code == 200
    assert_clean_exit(invoke("keys", "revoke", key_of["read"][:12]), 0)
    page = client.get("/dashboard")
    assert page.status_code == 401
    assert "has been revoked" in page.get_data(as_text=True)
    assert f"{auth.COOKIE}=;" in page.headers["Set-Cookie"]  # forgotten
    assert_problem(client.get("/dashboard/live"), 401)


def test_signing_out_forgets_the_key(client, key_of):
    client.post("/dashboard/login", data={"key": key_of["read"]})
    out = client.post("/dashboard/logout")
    assert out.status_code == 303 and out.headers["Location"] == "/dashboard/login"
    assert client.get("/dashboard").status_code == 303


# -- failures of the check itself -----------------------------------------------------------


def test_with_the_database_away_a_request_gets_503_not_401(make_app, key_of):
    app = make_app(
        auth=True, database_url="postgresql://postgres@127.0.0.1:1/none", pool_timeout=1.0
    )
    client = app.test_client()
    assert_problem(client.get("/events", headers=bearer(key_of["read"])), 503)
    page = client.get("/dashboard", headers=bearer(key_of["read"]))
    assert page.status_code == 503 and "Database unavailable" in page.get_data(as_text=True)


def test_a_database_without_the_keys_table_is_a_503_that_says_migrate(make_app, empty_database_url):
    app = make_app(auth=True, database_url=empty_database_url)
    body = assert_problem(app.test_client().get("/events", headers=bearer("efk_" + "C" * 43)), 503)
    assert "eventflo migrate" in body["detail"]


def test_keys_never_reach_the_logs(make_app, invoke, key_of, failed_event, capsys):
    app = make_app(auth=True, log_level="debug", log_format="json")
    client = app.test_client()
    client.post("/events", json=PAYMENT, headers=bearer(key_of["ingest"]))
    client.get("/events", headers=bearer(key_of["ingest"]))
    client.get("/events", headers=bearer("efk_" + "D" * 43))
    client.post("/dashboard/login", data={"key": key_of["admin"]})
    client.post("/dashboard/replay", **replay_body(failed_event))
    revoked = invoke("keys", "revoke", key_of["read"][:12])
    client.get("/events", headers=bearer(key_of["read"]))
    logged = capsys.readouterr().err + revoked.output
    assert "signed in with API key" in logged and "dashboard replay" in logged
    for key in (*key_of.values(), "efk_" + "D" * 43):
        assert key[12:] not in logged


def test_the_openapi_document_names_the_scheme_and_the_refusals(client):
    spec = client.get("/openapi.json").get_json()
    scheme = spec["components"]["securitySchemes"][auth.SECURITY_SCHEME]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    protected = {
        ("post", "/events"),
        ("post", "/events/batch"),
        ("get", "/events"),
        ("get", "/events/{event_id}"),
        ("get", "/rules"),
        ("post", "/rules/simulate"),
        ("get", "/endpoints"),
        ("post", "/endpoints"),
        ("get", "/endpoints/{name}"),
        ("delete", "/endpoints/{name}"),
        ("post", "/endpoints/{name}/disable"),
        ("post", "/endpoints/{name}/enable"),
        ("post", "/endpoints/{name}/rotate-secret"),
    }
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            if (method, path) in protected:
                assert operation["security"] == [{auth.SECURITY_SCHEME: []}]
                assert {"401", "403"} <= operation["responses"].keys()
            else:
                assert "security" not in operation and "401" not in operation["responses"]


def test_a_worker_needs_no_key(client, config, key_of):
    """Workers talk to the database, not to the API: auth changes nothing for them."""
    client.post("/events", json=PAYMENT, headers=bearer(key_of["ingest"]))
    assert run_worker_once(config) == 1


# -- hostile and odd requests ---------------------------------------------------------------


@pytest.mark.parametrize(
    "cookie", ["not-a-key", "efk_" + "E" * 43, "ÿ" * 10, "x" * 4000, '"quoted;value"']
)
def test_a_cookie_that_is_no_key_is_a_401_never_a_500(client, cookie):
    client.set_cookie(auth.COOKIE, cookie)
    assert_problem(client.get("/events"), 401)
    assert_problem(client.get("/dashboard/live"), 401)


def test_a_header_with_bytes_beyond_ascii_is_a_401(client):
    environ = {"HTTP_AUTHORIZATION": "Bearer efk_\xff\xfe"}
    assert_problem(client.get("/events", environ_overrides=environ), 401)


def test_the_header_wins_over_the_cookie_and_a_bad_header_keeps_the_browser_signed_in(
    client, key_of
):
    client.post("/dashboard/login", data={"key": key_of["read"]})
    assert_problem(client.get("/events", headers=bearer(key_of["ingest"])), 403)
    page = client.get("/dashboard", headers=bearer("efk_" + "F" * 43))
    assert page.status_code == 303  # to the sign-in form, for this request only
    assert "Set-Cookie" not in page.headers
    assert client.get("/dashboard").status_code == 200


def test_the_sign_in_page_shows_no_message_from_the_url(client):
    page = client.get("/dashboard/login?reason=Paste+your+key+at+https://evil.example")
    assert page.status_code == 200
    assert "evil.example" not in page.get_data(as_text=True)


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_a_sign_in_or_out_another_site_starts_is_refused(client, key_of, site):
    refused = client.post(
        "/dashboard/login", data={"key": key_of["read"]}, headers={"Sec-Fetch-Site": site}
    )
    assert refused.status_code == 403 and "Set-Cookie" not in refused.headers
    client.post("/dashboard/login", data={"key": key_of["read"]})
    out = client.post("/dashboard/logout", headers={"Sec-Fetch-Site": site})
    assert out.status_code == 403 and "Set-Cookie" not in out.headers
    assert client.get("/dashboard").status_code == 200


def test_the_cookie_is_secure_over_https_also_behind_a_proxy(client, key_of):
    plain = client.post("/dashboard/login", data={"key": key_of["read"]})
    assert "Secure" not in plain.headers["Set-Cookie"]
    proxied = client.post(
        "/dashboard/login", data={"key": key_of["read"]}, headers={"X-Forwarded-Proto": "https"}
    )
    assert "Secure" in proxied.headers["Set-Cookie"]
    direct = client.post(
        "/dashboard/login", data={"key": key_of["read"]}, base_url="https://localhost"
    )
    assert "Secure" in direct.headers["Set-Cookie"]


def test_a_read_only_database_still_checks_keys_and_refuses_writes_with_503(make_app, conn, key_of):
    """A standby serving reads: keys are checked (their last use is not noted), writes are 503."""
    database = conn.info.dbname
    conn.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    client = make_app(auth=True).test_client()
    assert client.get("/events", headers=bearer(key_of["read"])).status_code == 200
    assert_problem(client.get("/events", headers=bearer("efk_" + "G" * 43)), 401)
    body = assert_problem(
        client.post("/events", json=PAYMENT, headers=bearer(key_of["ingest"])), 503
    )
    assert "accepts no writes" in body["detail"]
    row = conn.execute(
        "SELECT count(*) AS n FROM api_keys WHERE last_used_at IS NOT NULL"
    ).fetchone()
    assert row["n"] == 0


def test_a_malformed_key_is_refused_without_the_database(make_app):
    app = make_app(
        auth=True, database_url="postgresql://postgres@127.0.0.1:1/none", pool_timeout=1.0
    )
    body = assert_problem(app.test_client().get("/events", headers=bearer("garbage")), 401)
    assert body["detail"] == auth.NO_SUCH_KEY
