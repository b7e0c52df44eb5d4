"""The throughput chart's geometry: pure functions of per-minute counts."""

from __future__ import annotations

import datetime as dt

from eventflo import chart


def _minutes(*counts: int) -> list[tuple[dt.datetime, int]]:
    start = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)
    return [(start + dt.timedelta(minutes=i), count) for i, count in enumerate(counts)]


def test_the_busiest_minute_fills_the_plot_and_the_others_scale():
    drawn = chart.chart(_minutes(0, 5, 10, 0))
    assert (drawn.peak, drawn.total) == (10, 15)
    plot = drawn.bottom - drawn.top
    assert [bar.height for bar in drawn.bars] == [0.0, plot / 2, plot, 0.0]
    assert all(bar.y + bar.height == drawn.bottom for bar in drawn.bars)
    xs = [bar.x for bar in drawn.bars]
    assert xs == sorted(xs) and xs[0] >= drawn.left
    assert drawn.bars[-1].x + drawn.bars[-1].width <= drawn.width


def test_an_idle_quarter_hour_draws_no_bars():
    drawn = chart.chart(_minutes(*[0] * 15))
    assert (drawn.peak, drawn.total) == (0, 0)
    assert {bar.height for bar in drawn.bars} == {0.0}


def test_minute_labels_count_back_from_the_current_minute():
    drawn = chart.chart(_minutes(*[1] * 15))
    assert [bar.minute.minute for bar in drawn.labels] == [4, 9, 14]


def test_the_last_minutes_end_with_the_current_one_and_fill_gaps_with_zero():
    plus_one = dt.timezone(dt.timedelta(hours=1))
    now = dt.datetime(2025, 1, 1, 13, 0, 42, tzinfo=plus_one)  # 12:00:42 UTC
    completed = {
        dt.datetime(2025, 1, 1, 13, 0, tzinfo=plus_one): 4,  # the database's zone, not UTC
        dt.datetime(2025, 1, 1, 11, 50, tzinfo=dt.UTC): 2,
    }
    minutes = chart.last_minutes(completed, now, 15)
    assert len(minutes) == 15
    assert minutes[0][0] == dt.datetime(2025, 1, 1, 11, 46, tzinfo=dt.UTC)
    assert minutes[-1] == (dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC), 4)
    assert dict(minutes)[dt.datetime(2025, 1, 1, 11, 50, tzinfo=dt.UTC)] == 2
    assert sum(count for _, count in minutes) == 6
