"""The ``growth`` mode: does the queue slow down as the table keeps its history?

The same drain as ``drain``, first on an empty table, then with
``--growth-rows`` completed events (with their result and attempt rows)
already stored and vacuumed. The claim reads a partial index of queued rows,
so the stored rows should barely matter; the ratio says whether they do.
"""

from __future__ import annotations

from eventflo import ruleversions
from eventflo.bench import QUERIES, Bench, ModeResult, Ratio, drain, figures

SUMMARY = "drain rate with an empty table vs with --growth-rows completed events stored"


def run(bench: Bench) -> ModeResult:
    rows = bench.settings.growth_rows
    empty = bench.repeat(
        "growth, empty table", lambda: drain.drain_once(bench, clear="truncate_events")
    )
    bench.progress(f"growth: storing {rows:,} completed events with their results and attempts")
    with bench.connect("setup") as conn:
        conn.execute(QUERIES["truncate_events"])
        conn.execute(
            QUERIES["store_completed_events"],
            {"rows": rows, "rules_version": ruleversions.active_number(conn)},
        )
        conn.execute(QUERIES["vacuum_events"])
    # Each run removes the previous run's events, so every run sees exactly ``rows`` stored.
    stored = bench.repeat(
        f"growth, {rows:,} stored", lambda: drain.drain_once(bench, clear="delete_drained_events")
    )
    samples = [
        {"events_per_s_empty": e["events_per_s"], "events_per_s_stored": s["events_per_s"]}
        for e, s in zip(empty, stored, strict=True)
    ]
    result = figures(
        samples,
        (
            ("events_per_s_empty", "events/s, empty table", "events/s"),
            ("events_per_s_stored", f"events/s, {rows:,} stored", "events/s"),
        ),
    )
    empty_rate, stored_rate = (figure.median for figure in result)
    ratio = Ratio(
        "growth_stored_vs_empty",
        f"growth: {rows:,} stored / empty table (events/s)",
        stored_rate / empty_rate,
    )
    return ModeResult("growth", result, (ratio,))
