"""Schemathesis against /openapi.json: thousands of generated requests, in process, real database.

Every documented JSON operation gets examples, boundary/negative cases (the
coverage phase) and generated requests, valid and invalid. Each response must
be no 5xx, carry a documented status and content type, match the documented
body schema, and — for every 4xx — be an RFC 9457 problem document.

Auth is on, as by default: most requests carry an admin key, and every
tenth none and every tenth a key of the other scope, so the 401 and 403
answers are held to the document too.

Reproducible: a fixed seed and Hypothesis' derandomized generation, no example
database. What the fuzzer found is kept as named tests in test_fuzz_findings.py.
"""

from __future__ import annotations

import collections
import time
import uuid
from collections.abc import Iterator
from typing import Any

import flask
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi import checks as openapi_checks

from eventflo import create_app, keys
from eventflo.config import Config
from eventflo.problems import PROBLEM_MIMETYPE
from eventflo.worker import Worker

# Per operation and generation phase; six operations, positive and negative
# data, plus the coverage phase's fixed cases: a few thousand requests in all.
MAX_EXAMPLES = 700
# The whole run must send at least this many, or the fuzz has silently shrunk.
MIN_REQUESTS = 2000

FUZZ_CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20240517,
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True},
        "phases": {"stateful": {"enabled": False}},
    }
)


@schemathesis.check
def problem_json_for_client_errors(ctx: Any, response: schemathesis.Response, case: Any) -> bool:
    """Every 4xx is an RFC 9457 problem document whose ``status`` is the HTTP status."""
    if 400 <= response.status_code < 500:
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.split(";")[0].strip() == PROBLEM_MIMETYPE, (
            f"{response.status_code} sent as {content_type!r}, not {PROBLEM_MIMETYPE}"
        )
        body = response.json()
        assert isinstance(body, dict) and body.get("status") == response.status_code, body
        assert body.get("title") and body.get("detail"), body
    return True


CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    problem_json_for_client_errors,
]


class Counter:
    def __init__(self) -> None:
        self.requests = 0
        self.statuses: collections.Counter[int] = collections.Counter()
        self.started = time.monotonic()


@pytest.fixture(scope="module")
def sent() -> Iterator[Counter]:
    counter = Counter()
    yield counter
    elapsed = time.monotonic() - counter.started
    print(f"\nfuzz: {counter.requests} requests in {elapsed:.1f} s; {dict(counter.statuses)}")
    assert counter.requests >= MIN_REQUESTS, f"only {counter.requests} requests were generated"
    # The refused requests were answered as refusals, which the checks held to the document.
    assert counter.statuses[401] >= counter.requests // 20, counter.statuses
    assert counter.statuses[403] >= counter.requests // 20, counter.statuses


def _documented_schema() -> Any:
    """The app's own /openapi.json; building an app opens no connection, so needs no database."""
    spec_app = create_app(Config(database_url="postgresql://spec-only@localhost/none"))
    document = spec_app.test_client().get("/openapi.json").get_json()
    loaded = schemathesis.openapi.from_dict(document, config=FUZZ_CONFIG)
    # Prometheus text is not a JSON API; its scrape is tested in test_metrics.py.
    return loaded.exclude(path="/metrics")


schema = _documented_schema()


@pytest.fixture
def fuzz_app(make_app: Any) -> flask.Flask:
    # A long-poll must not sleep through the run: any ?wait= is capped to a millisecond.
    return make_app(max_wait_seconds=0.001, auth=True)


@pytest.fixture
def api_keys(conn: Any) -> dict[str, str]:
    """One key of each scope, in the test's database."""
    return {scope: keys.create(conn, name=f"fuzz {scope}", scope=scope)[1] for scope in keys.SCOPES}


@pytest.fixture
def known_ids(fuzz_app: flask.Flask, config: Config, api_keys: dict[str, str]) -> list[str]:
    """Events to read back: completed ones (with a result and history) and queued ones."""
    client = fuzz_app.test_client()
    admin = {"Authorization": f"Bearer {api_keys['admin']}"}

    def post(event_type: str, payload: dict[str, Any]) -> str:
        response = client.post(
            "/events", json={"event_type": event_type, "payload": payload}, headers=admin
        )
        assert response.status_code == 202, response.get_data(as_text=True)
        return str(response.get_json()["event_id"])

    completed = [post("payment_failed", {"amount": 1500}), post("sla_breach", {})]
    worker = Worker(config)
    try:
        assert worker.run_once() == 2
    finally:
        worker.close()
    return completed + [post("system_error", {"nested": {"a": [1, None]}}), post("x", {})]


@schema.parametrize()
@settings(
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_every_documented_operation_survives_generated_requests(
    case: Any, fuzz_app: flask.Flask, known_ids: list[str], api_keys: dict[str, str], sent: Counter
) -> None:
    if case.operation.label == "GET /events/{event_id}":
        _read_known_events(case, known_ids)
    sent.requests += 1
    _present_a_key(case, api_keys, sent.requests)
    response = case.call_and_validate(app=fuzz_app, checks=CHECKS)
    sent.statuses[response.status_code] += 1


def _present_a_key(case: Any, api_keys: dict[str, str], number: int) -> None:
    """Admin mostly; every tenth request no key (401), every tenth a key of the wrong scope (403).

    And every tenth keeps whatever Authorization header the fuzzer made up (or none).
    """
    headers = case.headers if case.headers is not None else {}
    if number % 10 == 5:
        return
    headers.pop("Authorization", None)
    if number % 10 == 3:
        pass
    elif number % 10 == 7:
        wrong = "read" if case.operation.method.upper() == "POST" else "ingest"
        headers["Authorization"] = f"Bearer {api_keys[wrong]}"
    else:
        headers["Authorization"] = f"Bearer {api_keys['admin']}"
    case.headers = headers


def _read_known_events(case: Any, known_ids: list[str]) -> None:
    """A generated UUID names no event; most of them are swapped for real ones (some stay: 404s)."""
    generated = (case.path_parameters or {}).get("event_id")
    try:
        number = uuid.UUID(str(generated)).int
    except ValueError:
        return  # a malformed id: the 400 path
    slot = number % (len(known_ids) + 1)
    if slot < len(known_ids):
        case.path_parameters["event_id"] = known_ids[slot]
