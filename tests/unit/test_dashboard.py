"""The dashboard's pure parts: the Origin check, the chart's geometry, the filters, durations."""

from __future__ import annotations

import datetime as dt

import pytest

from eventflo import dashboard


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
    assert dashboard.same_host(origin, host) is same


def _minutes(*counts: int) -> list[tuple[dt.datetime, int]]:
    start = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)
    return [(start + dt.timedelta(minutes=i), count) for i, count in enumerate(counts)]


def test_the_busiest_minute_fills_the_plot_and_the_others_scale():
    chart = dashboard.chart(_minutes(0, 5, 10, 0))
    assert (chart.peak, chart.total) == (10, 15)
    plot = chart.bottom - chart.top
    assert [bar.height for bar in chart.bars] == [0.0, plot / 2, plot, 0.0]
    assert all(bar.y + bar.height == chart.bottom for bar in chart.bars)
    xs = [bar.x for bar in chart.bars]
    assert xs == sorted(xs) and xs[0] >= chart.left
    assert chart.bars[-1].x + chart.bars[-1].width <= chart.width


def test_an_idle_quarter_hour_draws_no_bars():
    chart = dashboard.chart(_minutes(*[0] * 15))
    assert (chart.peak, chart.total) == (0, 0)
    assert {bar.height for bar in chart.bars} == {0.0}


def test_minute_labels_count_back_from_the_current_minute():
    chart = dashboard.chart(_minutes(*[1] * 15))
    assert [bar.minute.minute for bar in chart.labels] == [4, 9, 14]


def test_filters_from_the_query_string():
    assert dashboard.Filters.from_args({}) == dashboard.Filters()
    assert dashboard.Filters.from_args(
        {"status": " failed ", "event_type": ""}
    ) == dashboard.Filters(status="failed")
    unknown = dashboard.Filters.from_args({"status": "lost", "event_type": "sla_breach"})
    assert (unknown.status, unknown.event_type) == (None, "sla_breach")
    assert unknown.notice and "lost" in unknown.notice
    too_long = dashboard.Filters.from_args({"event_type": "x" * 101})
    assert too_long.event_type is None and too_long.notice
    assert dashboard.Filters(status="queued", event_type="a.b").query() == {
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


def test_the_last_minutes_end_with_the_current_one_and_fill_gaps_with_zero():
    plus_one = dt.timezone(dt.timedelta(hours=1))
    now = dt.datetime(2025, 1, 1, 13, 0, 42, tzinfo=plus_one)  # 12:00:42 UTC
    completed = {
        dt.datetime(2025, 1, 1, 13, 0, tzinfo=plus_one): 4,  # the database's zone, not UTC
        dt.datetime(2025, 1, 1, 11, 50, tzinfo=dt.UTC): 2,
    }
    minutes = dashboard.last_minutes(completed, now)
    assert len(minutes) == dashboard.THROUGHPUT_MINUTES
    assert minutes[0][0] == dt.datetime(2025, 1, 1, 11, 46, tzinfo=dt.UTC)
    assert minutes[-1] == (dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC), 4)
    assert dict(minutes)[dt.datetime(2025, 1, 1, 11, 50, tzinfo=dt.UTC)] == 2
    assert sum(count for _, count in minutes) == 6
