"""The dashboard's pure parts: the Origin check, the filters, durations (the chart: test_chart)."""

from __future__ import annotations

import datetime as dt

import pytest

from eventflo import dashboard, overview, signin


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("http://localhost", "localhost", True),
        ("http://localhost", "localhost:80", True),
        ("https://events.example.com", "events.example.com", True),
        ("https://events.example.com", "events.example.com:443", True),
        # Behind a TLS-terminating proxy the app may see http; host and port still match.
        ("https://Events.Example.com", "events.example.com", True),
        ("http://127.0.0.1:8001", "127.0.0.1:8000", False),
        ("https://events.example.com", "events.example.com:80", False),
        ("https://evil.example", "events.example.com", False),
        ("https://events.example.com.evil.example", "events.example.com", False),
        ("null", "events.example.com", False),
        ("file://", "events.example.com", False),
        ("ftp://events.example.com", "events.example.com", False),
        ("http://events.example.com:notaport", "events.example.com", False),
        ("http://events.example.com", "events.example.com:99999", False),
    ],
)
def test_same_host(origin, host, same):
    assert signin.same_host(origin, host) is same


def test_filters_from_the_query_string():
    assert overview.Filters.from_args({}) == overview.Filters()
    assert overview.Filters.from_args({"status": " failed ", "event_type": ""}) == overview.Filters(
        status="failed"
    )
    unknown = overview.Filters.from_args({"status": "lost", "event_type": "sla_breach"})
    assert (unknown.status, unknown.event_type) == (None, "sla_breach")
    assert unknown.notice and "lost" in unknown.notice
    too_long = overview.Filters.from_args({"event_type": "x" * 101})
    assert too_long.event_type is None and too_long.notice
    assert overview.Filters(status="queued", event_type="a.b").query() == {
        "status": "queued",
        "event_type": "a.b",
    }


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.04, "0.0 s"),
        (3.25, "3.2 s"),
        (42, "42 s"),
        (119, "119 s"),
        (600, "10 min"),
        (3 * 3600, "3 h"),
        (5 * 86400, "5 d"),
        (-2, "0.0 s"),
    ],
)
def test_duration(seconds, text):
    assert dashboard.duration(dt.timedelta(seconds=seconds)) == text
    assert dashboard.duration(None) == "—"
