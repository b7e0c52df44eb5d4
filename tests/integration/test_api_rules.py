"""The API validates events from the rule set's declared fields: a 422 names each bad field."""

from __future__ import annotations

import pytest

from eventflo import appstate, create_app, rules
from tests.integration.test_api import JSON, assert_problem, count_events, post_event
from tests.rule_files import DISK_RULES


@pytest.fixture
def client(config):
    app = create_app(config, rule_set=rules.load(DISK_RULES))
    app.testing = True
    try:
        yield app.test_client()
    finally:
        appstate.of(app).close()


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        ({}, {"percent": ["Missing data for required field."]}),
        ({"percent": "lots"}, {"percent": ["Must be a finite number."]}),
        ({"percent": True}, {"percent": ["Must be a finite number."]}),
        (
            {"percent": 95, "host": 7, "mounted": "yes"},
            {"host": ["Must be a string."], "mounted": ["Must be true or false."]},
        ),
    ],
)
def test_a_missing_or_ill_typed_declared_field_is_a_422_naming_it(client, conn, payload, errors):
    response = post_event(client, {"event_type": "disk_full", "payload": payload})

    problem = assert_problem(response, 422)
    assert problem["errors"]["payload"] == errors
    assert count_events(conn) == 0


def test_declared_fields_that_fit_and_undeclared_types_are_accepted(client, conn):
    fits = post_event(client, {"event_type": "disk_full", "payload": {"percent": 95, "x": "y"}})
    other = post_event(client, {"event_type": "payment_failed", "payload": {"amount": "lots"}})

    assert (fits.status_code, other.status_code) == (202, 202)
    assert count_events(conn) == 2


def test_a_batch_item_with_a_bad_declared_field_names_its_position(client, conn):
    body = {
        "events": [
            {"event_type": "disk_full", "payload": {"percent": 95}},
            {"event_type": "disk_full", "payload": {"host": "db1"}},
        ]
    }
    response = client.post("/events/batch", json=body, content_type=JSON)

    problem = assert_problem(response, 422)
    assert problem["errors"]["events"] == {
        "1": {"payload": {"percent": ["Missing data for required field."]}}
    }
    assert count_events(conn) == 0


NESTED_RULES = """\
fields:
  disk_full:
    disk.percent: {type: number}
rules:
  - {id: disk_full.critical, event_type: disk_full, when: payload.disk.percent >= 90,
     severity: CRITICAL, reason: "{{payload.disk.percent}}% full", recommendation: grow it}
  - {id: default, severity: LOW, reason: r, recommendation: m}
"""


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        ({"disk": {}}, {"disk.percent": ["Missing data for required field."]}),
        ({"disk": {"percent": "95"}}, {"disk.percent": ["Must be a finite number."]}),
        (
            {"disk": [95]},
            {"disk.percent": ["Must be inside an object, and payload.disk is not one."]},
        ),
    ],
)
def test_a_nested_declared_field_is_named_by_its_path(config, conn, payload, errors):
    app = create_app(config, rule_set=rules.load(NESTED_RULES))
    app.testing = True
    try:
        client = app.test_client()
        refused = post_event(client, {"event_type": "disk_full", "payload": payload})
        fits = post_event(client, {"event_type": "disk_full", "payload": {"disk": {"percent": 95}}})
    finally:
        appstate.of(app).close()

    assert assert_problem(refused, 422)["errors"]["payload"] == errors
    assert fits.status_code == 202
    assert count_events(conn) == 1
