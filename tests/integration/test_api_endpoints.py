"""/endpoints over HTTP: the admin's `eventflo endpoints`, same checks, no secret shown again."""

from __future__ import annotations

import re

import pytest

from eventflo import keys
from tests.integration.test_api import assert_problem

SECRET = re.compile(r"^whsec_[A-Za-z0-9+/]{43}=$")
OPS = {"name": "ops", "url": "http://127.0.0.1:9000/hook"}
SLACK = {
    "name": "chat",
    "url": "https://hooks.slack.com/services/T0001/B0001/TopSecretToken",
    "format": "slack",
    "filter": 'result.severity == "CRITICAL"',
}


@pytest.fixture
def app(make_app):
    return make_app(allow_private_endpoints=True)


def test_post_shows_the_secret_once_and_nothing_else_ever_does(client):
    created = client.post("/endpoints", json=OPS)
    assert created.status_code == 201, created.get_data(as_text=True)
    body = created.get_json()
    assert SECRET.match(body["secret"])
    assert (body["name"], body["format"], body["filter"], body["enabled"]) == (
        "ops",
        "standard",
        "result.should_escalate",
        True,
    )
    rotated = client.post("/endpoints/ops/rotate-secret")
    assert rotated.status_code == 200
    second = rotated.get_json()["secret"]
    assert SECRET.match(second) and second != body["secret"]
    assert rotated.get_json()["rotation_ends_at"]
    for path in ("/endpoints", "/endpoints/ops"):
        text = client.get(path).get_data(as_text=True)
        assert "whsec_" not in text and '"secret"' not in text


def test_list_show_disable_enable_remove(client, conn):
    client.post("/endpoints", json=OPS)
    assert client.post("/endpoints", json=SLACK).get_json()["secret"] is None
    listed = client.get("/endpoints").get_json()
    assert [e["name"] for e in listed] == ["chat", "ops"]
    assert listed[0]["url"] == "https://hooks.slack.com/services/T0001/B0001/…"
    shown = client.get("/endpoints/ops").get_json()
    assert (shown["pending"], shown["failed"], shown["recent_deliveries"]) == (0, 0, [])

    disabled = client.post("/endpoints/ops/disable").get_json()
    assert (disabled["enabled"], disabled["disabled_reason"]) == (False, "disabled by an operator")
    assert client.post("/endpoints/ops/enable").get_json()["enabled"] is True

    conn.execute(
        "INSERT INTO deliveries (endpoint_id, event_id, result)"
        " SELECT id, gen_random_uuid(), '{}' FROM endpoints WHERE name = 'ops'"
    )
    assert client.get("/endpoints/ops").get_json()["recent_deliveries"][0]["status"] == "pending"
    removed = client.delete("/endpoints/ops")
    assert removed.status_code == 200 and removed.get_json() == {"removed_deliveries": 1}
    assert [e["name"] for e in client.get("/endpoints").get_json()] == ["chat"]


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({**OPS, "url": "ftp://x.example/"}, 422, "must start with https://"),
        ({**OPS, "filter": "result.sevrity"}, 422, "has no field 'sevrity'"),
        ({**OPS, "format": "pagerduty"}, 422, "needs a routing key"),
        ({**OPS, "name": "on call"}, 422, "is not valid"),
    ],
)
def test_a_refused_endpoint_is_a_problem_saying_why_and_stores_nothing(
    client, conn, body, status, detail
):
    problem = assert_problem(client.post("/endpoints", json=body), status)
    assert detail in problem["detail"]
    assert conn.execute("SELECT count(*) AS n FROM endpoints").fetchone()["n"] == 0


def test_a_duplicate_name_is_a_409(client):
    client.post("/endpoints", json=OPS)
    problem = assert_problem(client.post("/endpoints", json=OPS), 409)
    assert "exists already" in problem["detail"]


def test_unknown_fields_and_formats_are_422s(client):
    assert_problem(client.post("/endpoints", json={**OPS, "secret": "mine"}), 422)
    assert_problem(client.post("/endpoints", json={**OPS, "format": "teams"}), 422)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/endpoints/nope"),
        ("POST", "/endpoints/nope/disable"),
        ("POST", "/endpoints/nope/enable"),
        ("POST", "/endpoints/nope/rotate-secret"),
        ("DELETE", "/endpoints/nope"),
    ],
)
def test_an_unknown_endpoint_is_a_404(client, method, path):
    problem = assert_problem(client.open(path, method=method), 404)
    assert "no endpoint is named 'nope'" in problem["detail"]


def test_a_slack_endpoint_has_no_secret_to_rotate(client):
    client.post("/endpoints", json=SLACK)
    problem = assert_problem(client.post("/endpoints/chat/rotate-secret"), 422)
    assert "not signed" in problem["detail"]


def test_private_urls_are_refused_unless_allowed(make_app):
    client = make_app().test_client()  # EVENTFLO_ALLOW_PRIVATE_ENDPOINTS off, the default
    problem = assert_problem(client.post("/endpoints", json=OPS), 422)
    assert "EVENTFLO_ALLOW_PRIVATE_ENDPOINTS=on" in problem["detail"]


def test_only_an_admin_key_manages_endpoints(make_app, conn):
    client = make_app(auth=True, allow_private_endpoints=True).test_client()
    key = {scope: keys.create(conn, name=scope, scope=scope)[1] for scope in keys.SCOPES}
    for scope in ("ingest", "read"):
        headers = {"Authorization": f"Bearer {key[scope]}"}
        assert_problem(client.get("/endpoints", headers=headers), 403)
        assert_problem(client.post("/endpoints", json=OPS, headers=headers), 403)
    admin = {"Authorization": f"Bearer {key['admin']}"}
    assert client.post("/endpoints", json=OPS, headers=admin).status_code == 201


def test_the_openapi_document_has_every_endpoints_route(make_app):
    spec = make_app().test_client().get("/openapi.json").get_json()
    paths = spec["paths"]
    assert {"get", "post"} <= paths["/endpoints"].keys()
    assert {"get", "delete"} <= paths["/endpoints/{name}"].keys()
    for action in ("disable", "enable", "rotate-secret"):
        assert "post" in paths[f"/endpoints/{{name}}/{action}"]
    assert "secret" not in spec["components"]["schemas"]["Endpoint"]["properties"]
    assert "secret" in spec["components"]["schemas"]["CreatedEndpoint"]["properties"]
