"""Endpoint filters: CEL over event and result, checked when the endpoint is added."""

from __future__ import annotations

import pytest

from eventflo.delivery_filter import DEFAULT, FilterError, compile_filter, sample_result
from eventflo.rules.model import Severity

EVENT = {"event_id": "e1", "event_type": "disk_full", "source": "db1", "payload": {"percent": 95}}


def result(severity: str = "CRITICAL", escalate: bool = True) -> dict:
    return sample_result(Severity(severity), escalate=escalate)


def test_the_default_sends_what_the_rules_escalate():
    default = compile_filter(DEFAULT)
    assert default.matches(EVENT, result(escalate=True))
    assert not default.matches(EVENT, result(escalate=False))
    assert not default.reads_event


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ('result.severity in ["HIGH", "CRITICAL"]', True),
        ('event.event_type == "disk_full" && event.payload.percent >= 90', True),
        ("event.payload.percent < 90", False),
        ('has(event.payload.host) && event.payload.host == "db1"', False),
        ("event.payload.host == 'db1'", False),  # a field the event lacks: no match
        ('event.source == "db1" // the database hosts', True),
        ('result.rule.startsWith("disk")', False),
    ],
)
def test_filters_see_the_event_and_its_result(text, matches):
    assert compile_filter(text).matches(EVENT, result()) is matches


def test_a_filter_reading_the_event_says_so():
    assert compile_filter("event.source == 'x'").reads_event
    assert not compile_filter("result.rules_version > 1").reads_event


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the filter is empty"),
        ("result.should_escalate &&", "CEL syntax error"),
        ("payload.amount > 5", "names payload; it may use only event and result"),
        ('result.sevrity == "HIGH"', "result has no field 'sevrity'"),
        ("event.type == 'x'", "event has no field 'type'"),
        ('result["sevrity"] == "HIGH"', "result has no field 'sevrity'"),
        ("event['nope'] == 1", "event has no field 'nope'"),
        ("result.severity", "must give true or false, not 'LOW'"),
        ("result.severity > 3", "fails on a LOW result"),
        ('event.source.startsWith("db")', "of an event without a source"),
        ("[1].all(event, event > 0)", "may not be named event"),
        ("result.should_escalate" + " " * 1000, None),  # stripped: fits
        ("true || " * 130 + "true", "characters; the limit is 1000"),
        ("[1].all(x, [2].all(y, [3].exists(z, true)))", "more than 2 list macros"),
    ],
)
def test_a_filter_that_cannot_work_is_refused_saying_why(text, message):
    if message is None:
        compile_filter(text)
        return
    with pytest.raises(FilterError, match=message):
        compile_filter(text)


def test_a_field_name_inside_a_string_literal_is_not_read():
    assert compile_filter('result.rule != "result.nothing"').matches(EVENT, result())


def test_an_indexed_read_of_a_known_field_is_a_read():
    assert compile_filter('result["severity"] == "CRITICAL"').matches(EVENT, result())
    assert compile_filter('event["payload"]["percent"] > 90').matches(EVENT, result())
