"""The ``held-xmin``, ``memory``, ``rules``, ``rules-drain``, ``outbox-drain`` and ``deliver``
bench modes, and ``--rules FILE``, at a small scale on a real PostgreSQL.

As in test_bench.py: every event is processed exactly once (the modes check
it and report an error instead of a number otherwise), the JSON carries the
documented figures with sane values, and nothing is left behind. No timing
assertions.
"""

from __future__ import annotations

import re
import time
import types

import psycopg
import pytest
from psycopg.rows import dict_row

from eventflo import bench
from eventflo.bench import BenchError, held_xmin, memory
from tests import postgres
from tests.integration.test_bench import _bench, _drop, _report, _scratch_databases

HELD_FIGURES = {
    "events_per_s_first",
    "events_per_s_last",
    "drop_pct",
    "events_per_s",
    "processed",
    "dead_tuples_start",
    "dead_tuples_end",
    "snapshot_age",
}
MEMORY_FIGURES = {"rss_first_mib", "rss_end_mib", "rss_growth_pct", "rss_peak_mib"}


def _medians(mode: dict) -> dict[str, float]:
    """Each figure's median, after checking the figure's shape (one run: min = median = max)."""
    medians = {}
    for key, figure in mode["figures"].items():
        assert set(figure) == {"label", "unit", "median", "min", "max", "runs"}
        assert figure["runs"] == [figure["median"]] == [figure["min"]] == [figure["max"]]
        medians[key] = figure["median"]
    return medians


def test_held_xmin_and_memory_check_every_event_and_clean_up(pg_server, database_url):
    result = _bench(
        database_url,
        "held-xmin",
        "memory",
        "--workers", "2",
        "--runs", "1",
        "--held-seconds", "4",
        "--memory-events", "3000",
        "--memory-first-events", "500",
        "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    report = _report(result)
    # ok means the snapshot was held to the end, and every event of every run
    # was processed exactly once.
    assert report["ok"] is True
    assert report["settings"]["modes"] == ["held-xmin", "memory"]

    held = report["modes"]["held-xmin"]
    assert held["error"] is None
    assert set(held["figures"]) == HELD_FIGURES
    assert held["figures"]["events_per_s_first"]["label"] == "events/s, first 2 s"
    figures = _medians(held)
    assert figures["events_per_s_first"] > 0
    assert figures["events_per_s_last"] > 0
    assert figures["events_per_s"] > 0
    assert figures["processed"] > 0
    assert figures["drop_pct"] == pytest.approx(
        100 * (1 - figures["events_per_s_last"] / figures["events_per_s_first"])
    )
    assert figures["dead_tuples_start"] >= 0
    assert figures["dead_tuples_end"] >= 0
    # The workers' transactions ran after the snapshot was taken.
    assert figures["snapshot_age"] > 0

    rss = report["modes"]["memory"]
    assert rss["error"] is None
    assert set(rss["figures"]) == MEMORY_FIGURES
    assert rss["figures"]["rss_first_mib"]["label"] == "worker RSS after 500 events"
    assert rss["figures"]["rss_end_mib"]["label"] == "worker RSS after 3,000 events"
    figures = _medians(rss)
    assert figures["rss_first_mib"] > 0
    assert figures["rss_end_mib"] > 0
    assert figures["rss_peak_mib"] >= figures["rss_end_mib"]
    assert figures["rss_growth_pct"] == pytest.approx(
        100 * (figures["rss_end_mib"] / figures["rss_first_mib"] - 1)
    )

    assert "held-xmin: run 1/1" in result.stderr
    assert "memory: run 1/1" in result.stderr
    assert _scratch_databases(pg_server, database_url) == []


def test_a_failed_held_xmin_run_releases_the_snapshot_and_stops_the_workers(
    pg_server, database_url, monkeypatch
):
    seen: list[dict] = []

    def look_then_fail(running, conn, workers, log, **backlog):
        with psycopg.connect(running.url, autocommit=True, row_factory=dict_row) as observer:
            seen.extend(
                observer.execute(
                    "SELECT state, backend_xmin IS NOT NULL AS holds_horizon"
                    " FROM pg_stat_activity"
                    " WHERE application_name = 'eventflo-bench held snapshot'"
                ).fetchall()
            )
        raise BenchError("the producer failed")

    monkeypatch.setattr(held_xmin, "_produce", look_then_fail)
    result = _bench(
        database_url, "held-xmin", "--workers", "1", "--runs", "1", "--held-seconds", "2",
        "--json", "--keep",
    )  # fmt: skip

    assert result.exit_code == 1, result.output
    report = _report(result)
    assert "the producer failed" in report["modes"]["held-xmin"]["error"]
    assert seen == [{"state": "idle in transaction", "holds_horizon": True}]
    (kept,) = _scratch_databases(pg_server, database_url)
    try:
        # Kept, so nothing dropped it with FORCE: every session left on its own.
        assert _sessions_once_settled(pg_server, kept) == []
    finally:
        _drop(pg_server, kept)


def _sessions_once_settled(pg_server: str, database: str, timeout: float = 10.0) -> list[str]:
    """Client sessions still attached to ``database`` once closed ones had time to exit."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(pg_server, autocommit=True) as conn:
        while True:
            names = [
                row[0]
                for row in conn.execute(
                    "SELECT application_name FROM pg_stat_activity"
                    " WHERE datname = %s AND backend_type = 'client backend'",
                    [database],
                )
            ]
            if not names or time.monotonic() > deadline:
                return names
            time.sleep(0.05)


@pytest.mark.parametrize(("held_seconds", "window"), [(120, 12), (60, 10), (1000, 100), (4, 2)])
def test_the_windows_are_a_tenth_of_the_run_at_least_10_s_at_most_half(held_seconds, window):
    assert held_xmin.window_seconds(held_seconds) == window


def test_the_first_memory_reading_must_come_before_the_end():
    result = _bench(
        "postgresql://nobody@127.0.0.1:1/nothing",
        "memory", "--memory-events", "1000", "--memory-first-events", "1000",
    )  # fmt: skip

    assert result.exit_code == 2, result.output
    assert "--memory-first-events" in result.output
    assert "must be smaller than --memory-events" in result.output


def test_the_memory_mode_says_it_needs_linux_where_there_is_no_proc(monkeypatch, tmp_path):
    monkeypatch.setattr(memory, "PROC", tmp_path / "proc")
    with pytest.raises(BenchError, match="runs on Linux only"):
        memory.run(types.SimpleNamespace(settings=bench.Settings()))


def test_help_describes_every_mode():
    result = _bench(None, "--help")

    assert result.exit_code == 0, result.output
    text = re.sub(r"-\s+", "-", " ".join(result.output.split()))  # undo wrapping at hyphens
    for name in bench.MODE_NAMES:
        assert f"{name} (" in text, name
    for option in ("--held-seconds", "--memory-events", "--memory-first-events"):
        assert option in text


RULES_FIGURES = {"shipped_median_us", "shipped_p99_us", "generated_median_us", "generated_p99_us"}


def test_the_rules_mode_times_the_engine_without_a_database():
    result = _bench(None, "rules", "--events", "2000", "--runs", "1", "--json")

    assert result.exit_code == 0, result.output
    report = _report(result)
    assert report["ok"] is True
    assert report["settings"]["modes"] == ["rules"]
    assert report["environment"]["server_version"] is None
    assert report["environment"]["scratch_database"] is None
    rules_mode = report["modes"]["rules"]
    assert rules_mode["error"] is None
    assert set(rules_mode["figures"]) == RULES_FIGURES
    assert rules_mode["figures"]["generated_median_us"]["label"] == "generated 202 rules, median"
    figures = _medians(rules_mode)
    for name in ("shipped", "generated"):
        assert 0 < figures[f"{name}_median_us"] <= figures[f"{name}_p99_us"] < 10_000


def test_the_rules_mode_runs_beside_the_database_modes(pg_server, database_url):
    result = _bench(
        database_url, "floor", "rules", "--events", "2000", "--workers", "2", "--runs", "1"
    )

    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    table = result.stdout
    assert "server    PostgreSQL" in table
    assert re.search(r"^floor\s", table, re.MULTILINE)
    for label in ("shipped rules, median", "shipped rules, p99", "generated 202 rules, p99"):
        assert re.search(rf"^rules\s+{label}\s+[\d.,]+\s", table, re.MULTILINE), label
    assert _scratch_databases(pg_server, database_url) == []


RULES_DRAIN_WAYS = ("catch_all", "shipped", "catch_all_generated", "generated")
RULES_DRAIN_FIGURES = {
    *(f"{way}_events_per_s" for way in RULES_DRAIN_WAYS),
    *(f"{way}_events_per_s_whole" for way in RULES_DRAIN_WAYS),
    "shipped_ratio",
    "generated_ratio",
}


def test_rules_drain_drains_each_way_with_its_version_and_gives_both_ratios(
    pg_server, database_url
):
    # Small batches: each worker finishes several, so every drain has a warm window.
    result = _bench(
        database_url,
        "rules-drain",
        "--events", "400", "--batch-size", "20", "--workers", "2", "--runs", "1", "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    report = _report(result)
    # ok means every drain processed each event exactly once and every result
    # named the rule version made active for that drain.
    assert report["ok"] is True
    mode = report["modes"]["rules-drain"]
    assert mode["error"] is None
    assert set(mode["figures"]) == RULES_DRAIN_FIGURES
    assert mode["figures"]["generated_events_per_s"]["label"] == (
        "generated 202 rules, generated mix"
    )
    figures = _medians(mode)
    assert all(value > 0 for value in figures.values())
    ratios = report["ratios"]
    assert set(ratios) == {
        "rules_drain_shipped_vs_catch_all",
        "rules_drain_generated_vs_catch_all",
    }
    shipped = ratios["rules_drain_shipped_vs_catch_all"]
    assert shipped["value"] == figures["shipped_ratio"]
    assert shipped["value"] == pytest.approx(
        figures["shipped_events_per_s"] / figures["catch_all_events_per_s"]
    )
    assert shipped["target"] == 0.9
    assert shipped["passed"] is (shipped["value"] >= 0.9)
    generated = ratios["rules_drain_generated_vs_catch_all"]
    assert generated["value"] == pytest.approx(
        figures["generated_events_per_s"] / figures["catch_all_generated_events_per_s"]
    )
    assert generated["target"] == 0.8
    # The stages of each run, in turn, each with the version it made active.
    assert "catch-all rule, shipped mix (version 2)" in result.stderr
    assert "shipped rules, shipped mix (version 1)" in result.stderr
    assert "generated 202 rules, generated mix (version 3)" in result.stderr
    assert _scratch_databases(pg_server, database_url) == []


def test_outbox_drain_writes_one_delivery_per_event_with_the_endpoint_and_none_without(
    pg_server, database_url
):
    result = _bench(
        database_url,
        "outbox-drain",
        "--events", "400", "--batch-size", "20", "--workers", "2", "--runs", "2", "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    report = _report(result)
    # ok means each drain processed every event exactly once and wrote one delivery per
    # event with the endpoint, none without it.
    assert report["ok"] is True
    mode = report["modes"]["outbox-drain"]
    assert mode["error"] is None
    assert set(mode["figures"]) == {
        "no_endpoint_events_per_s",
        "one_endpoint_events_per_s",
        "ratio",
    }
    runs = {key: figure["runs"] for key, figure in mode["figures"].items()}
    assert all(len(values) == 2 and min(values) > 0 for values in runs.values())
    assert runs["ratio"] == [
        pytest.approx(one / none)
        for one, none in zip(
            runs["one_endpoint_events_per_s"], runs["no_endpoint_events_per_s"], strict=True
        )
    ]
    ratio = report["ratios"]["outbox_drain_one_endpoint_vs_none"]
    assert (ratio["value"], ratio["target"]) == (mode["figures"]["ratio"]["median"], 0.8)
    assert ratio["passed"] is (ratio["value"] >= 0.8)
    # Both orders, one per run.
    stages = [
        line.removeprefix("outbox-drain: ")
        for line in result.stderr.splitlines()
        if line.endswith(("outbox-drain: no endpoint", "outbox-drain: one endpoint"))
    ]
    assert stages == [
        "no endpoint",
        "one endpoint",
        "one endpoint",
        "no endpoint",
    ]
    assert _scratch_databases(pg_server, database_url) == []


def test_deliver_sends_every_delivery_once_and_times_one_at_a_time(pg_server, database_url):
    result = _bench(database_url, "deliver", "--events", "300", "--runs", "1", "--json")

    assert result.exit_code == 0, result.output
    report = _report(result)
    # ok means every delivery ended delivered, with exactly one attempt each.
    assert report["ok"] is True
    mode = report["modes"]["deliver"]
    assert mode["error"] is None
    figures = _medians(mode)
    assert set(figures) == {"deliveries_per_s", "latency_p50_ms", "latency_p99_ms"}
    assert figures["deliveries_per_s"] > 0
    assert 0 < figures["latency_p50_ms"] <= figures["latency_p99_ms"] < 10_000
    ratio = report["ratios"]["deliver_rate_vs_1000"]
    assert ratio["value"] == pytest.approx(figures["deliveries_per_s"] / 1000)
    assert ratio["passed"] is (ratio["value"] >= 1.0)
    assert _scratch_databases(pg_server, database_url) == []


ALL_WARNING = """\
rules:
  - id: bench.everything
    severity: WARNING
    reason: "Judged by the bench's own rules"
    recommendation: "None"
tests:
  - event: {event_type: payment_failed, payload: {amount: 5000}}
    expect: {rule: bench.everything, severity: WARNING}
"""


def test_drain_with_a_rule_file_judges_every_event_with_it(pg_server, database_url, tmp_path):
    rule_file = tmp_path / "mine.yaml"
    rule_file.write_text(ALL_WARNING)

    result = _bench(
        database_url,
        "drain", "--rules", str(rule_file),
        "--events", "500", "--workers", "2", "--runs", "1", "--keep",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert f"rules {rule_file}" in result.stdout  # the settings line says what judged
    assert f"rules: {rule_file} is version 2, active" in result.stderr
    (kept,) = _scratch_databases(pg_server, database_url)
    try:
        with psycopg.connect(postgres.with_database(pg_server, kept), row_factory=dict_row) as conn:
            verdicts = conn.execute(
                "SELECT rule_id, severity::text AS severity, rules_version, count(*) AS events"
                " FROM event_processing_results GROUP BY 1, 2, 3"
            ).fetchall()
            version = conn.execute(
                "SELECT v.version, v.message, v.created_by, a.activated_by"
                " FROM active_rule_version AS a JOIN rule_versions AS v USING (version)"
            ).fetchone()
    finally:
        _drop(pg_server, kept)
    assert verdicts == [
        {"rule_id": "bench.everything", "severity": "WARNING", "rules_version": 2, "events": 500}
    ]
    assert version == {
        "version": 2,
        "message": f"eventflo bench --rules {rule_file}",
        "created_by": "eventflo bench",
        "activated_by": "eventflo bench",
    }


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        ("rules: [\n", "drain", "invalid YAML"),
        (ALL_WARNING.replace("severity: WARNING\n", "severity: SEVERE\n", 1), "drain", "line 3"),
        (ALL_WARNING, "rules", "applies to the modes that run the workers"),
    ],
)
def test_a_bad_rules_option_is_a_usage_error_before_any_database(tmp_path, text, mode, message):
    rule_file = tmp_path / "bad.yaml"
    rule_file.write_text(text)

    # No database URL: the file is refused before the bench would need one.
    result = _bench(None, mode, "--rules", str(rule_file))

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "--rules" in result.output and message in result.output
