"""The dashboard's throughput chart as geometry: pure functions of per-minute counts.

The template draws the bars as inline SVG; everything that takes
arithmetic (the minutes shown, the scale, each bar's box, which minutes get
a label) is decided here, where a unit test can check it without a browser.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class Bar:
    """One minute of the throughput chart, in SVG user units."""

    minute: dt.datetime
    events: int
    x: float
    y: float
    width: float
    height: float

    @property
    def center(self) -> float:
        return round(self.x + self.width / 2, 2)


@dataclasses.dataclass(frozen=True)
class Chart:
    """The throughput chart's geometry; the template draws it as inline SVG."""

    bars: list[Bar]
    peak: int
    total: int
    width: int = 600
    height: int = 150
    left: int = 44
    top: int = 10
    bottom: int = 120  # the baseline; the minute labels go below it

    @property
    def labels(self) -> list[Bar]:
        """The bars whose minute is written under the axis: every fifth, and the current one."""
        last = len(self.bars) - 1
        return [bar for i, bar in enumerate(self.bars) if (last - i) % 5 == 0]


def chart(per_minute: Sequence[tuple[dt.datetime, int]]) -> Chart:
    """Bars scaled to the busiest minute (a flat line at zero when nothing completed)."""
    base = Chart(bars=[], peak=0, total=0)
    slot = (base.width - base.left) / max(len(per_minute), 1)
    peak = max((count for _, count in per_minute), default=0)
    plot_height = base.bottom - base.top
    bars = []
    for i, (minute, count) in enumerate(per_minute):
        height = plot_height * count / peak if peak else 0.0
        bars.append(
            Bar(
                minute=minute,
                events=count,
                x=round(base.left + i * slot + slot * 0.15, 2),
                y=round(base.bottom - height, 2),
                width=round(slot * 0.7, 2),
                height=round(height, 2),
            )
        )
    return dataclasses.replace(base, bars=bars, peak=peak, total=sum(c for _, c in per_minute))


def last_minutes(
    per_minute: Mapping[dt.datetime, int], now: dt.datetime, minutes: int
) -> list[tuple[dt.datetime, int]]:
    """The chart's ``minutes``, oldest first and the current one last; zero where none completed."""
    # In UTC: minute arithmetic in a zone with DST would skip or repeat an hour.
    current = now.astimezone(dt.UTC).replace(second=0, microsecond=0)
    shown = [current - dt.timedelta(minutes=n) for n in range(minutes - 1, -1, -1)]
    return [(minute, per_minute.get(minute, 0)) for minute in shown]
