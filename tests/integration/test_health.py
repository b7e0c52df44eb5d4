"""/healthz and /readyz as a load balancer or an orchestrator sees them."""

from __future__ import annotations

import time

from eventflo import migrate
from tests.integration.test_api import assert_problem

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/nothing"


def test_healthz_answers_without_asking_the_database(make_app):
    client = make_app(database_url=UNREACHABLE, pool_timeout=1.0).test_client()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_ready_on_a_migrated_database(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "migrations": migrate.migration_ids()}


def test_readyz_names_the_pending_migration(make_app, empty_database_url):
    migrate.apply(empty_database_url)
    (newest,) = migrate.rollback(empty_database_url, steps=1)
    client = make_app(database_url=empty_database_url).test_client()
    body = assert_problem(client.get("/readyz"), 503)
    assert body["title"] == "Not ready"
    assert newest in body["detail"] and "eventflo migrate" in body["detail"]

    migrate.apply(empty_database_url)
    assert client.get("/readyz").status_code == 200


def test_readyz_on_a_database_without_a_schema(make_app, empty_database_url):
    client = make_app(database_url=empty_database_url).test_client()
    body = assert_problem(client.get("/readyz"), 503)
    assert "no schema" in body["detail"]


def test_readyz_is_503_within_the_pool_timeout_when_the_database_is_gone(make_app):
    client = make_app(database_url=UNREACHABLE, pool_timeout=1.0).test_client()
    started = time.monotonic()
    body = assert_problem(client.get("/readyz"), 503)
    assert time.monotonic() - started < 10
    assert body["title"] == "Database unavailable"
    assert "nobody" not in body["detail"], "no connection details in the answer"


def test_the_probes_are_in_the_openapi_document(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert "get" in paths["/healthz"] and "get" in paths["/readyz"]
    assert "503" in paths["/readyz"]["get"]["responses"]
