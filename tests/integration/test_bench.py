"""``eventflo bench`` at a small scale on a real PostgreSQL: what a user would check.

Every mode processes each event exactly once (the bench verifies it and
reports an error instead of a number otherwise), the JSON carries the
documented fields, and the scratch database is gone afterwards. No timing
assertions: the bench measures speed, the tests prove it measures correctly.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import urllib.parse
import uuid

import psycopg
import pytest
from click.testing import CliRunner
from gunicorn.app.base import BaseApplication
from psycopg import sql
from psycopg.rows import dict_row

from eventflo import cli
from eventflo.bench import BenchError, bare_api, drain
from eventflo.config import Config
from tests import postgres

SMALL = ["--events", "2000", "--workers", "2", "--runs", "1"]


def _env(database_url: str | None) -> dict[str, str | None]:
    """Only the EVENTFLO_* variables given here; any from the calling shell are hidden."""
    env: dict[str, str | None] = {name: None for name in os.environ if name.startswith("EVENTFLO_")}
    if database_url is not None:
        env["EVENTFLO_DATABASE_URL"] = database_url
    return env


def _bench(database_url: str | None, *args: str):
    return CliRunner().invoke(cli.main, ["bench", *args], env=_env(database_url))


def _scratch_databases(pg_server: str, database_url: str) -> list[str]:
    """Databases the bench made next to the configured one (``<name>_bench_<hex>``)."""
    prefix = urllib.parse.urlsplit(database_url).path.lstrip("/") + "_bench_"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", [prefix]
        ).fetchall()
    return [row[0] for row in rows]


def _drop(pg_server: str, name: str) -> None:
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _report(result) -> dict:
    assert "Traceback" not in result.output, result.output
    return json.loads(result.stdout)


def _assert_figure(figure: dict) -> None:
    assert set(figure) == {"label", "unit", "median", "min", "max", "runs"}
    assert figure["median"] > 0 and figure["min"] > 0 and figure["max"] >= figure["min"]
    assert len(figure["runs"]) == 1


def _may_checkpoint(database_url: str) -> bool:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT rolsuper OR pg_has_role(current_user, 'pg_checkpoint', 'MEMBER')"
            " FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    return bool(row and row[0])


def test_every_mode_processes_each_event_once_and_cleans_up(pg_server, database_url):
    result = _bench(
        database_url, "drain", "floor", "growth", *SMALL, "--growth-rows", "5000", "--json"
    )

    assert result.exit_code == 0, result.output
    report = _report(result)
    # ok means every run of every mode passed the bench's exactly-once check.
    assert report["ok"] is True
    assert report["settings"] == {
        "modes": ["drain", "floor", "growth"],
        "events": 2000,
        "workers": 2,
        "batch_size": 100,
        "runs": 1,
        "growth_rows": 5000,
        "latency_events": None,
        "clients": None,
        "ingest_requests": None,
        "rules_file": None,
    }
    environment = report["environment"]
    assert environment["fsync"] in ("on", "off")
    assert environment["synchronous_commit"]
    assert environment["server_version"][:2].isdigit()
    assert environment["payload_bytes"] > 0
    assert environment["cpu_count"] >= 1
    assert environment["kept"] is False
    # Each timed run starts after a CHECKPOINT when the role may take one.
    assert environment["checkpoint_before_runs"] is _may_checkpoint(database_url)
    for mode in ("drain", "floor"):
        assert report["modes"][mode]["error"] is None
        figures = report["modes"][mode]["figures"]
        assert set(figures) == {"events_per_s", "transactions_per_s", "wall_s"}
        for figure in figures.values():
            _assert_figure(figure)
    growth = report["modes"]["growth"]
    assert growth["error"] is None
    assert set(growth["figures"]) == {"events_per_s_empty", "events_per_s_stored"}
    for figure in growth["figures"].values():
        _assert_figure(figure)
    assert set(report["ratios"]) == {"drain_vs_floor", "growth_stored_vs_empty"}
    assert all(ratio["value"] > 0 for ratio in report["ratios"].values())
    # Progress goes to stderr, so stdout stays parseable.
    assert "drain: run 1/1" in result.stderr
    assert _scratch_databases(pg_server, database_url) == []


def test_latency_and_ingest_check_every_event_and_clean_up(pg_server, database_url):
    result = _bench(
        database_url,
        "latency",
        "ingest",
        "--workers", "2",
        "--runs", "1",
        "--latency-events", "30",
        "--ingest-requests", "300",
        "--clients", "2",
        "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    report = _report(result)
    # ok means every event of every run was stored (and, for latency, completed) exactly once.
    assert report["ok"] is True
    settings = report["settings"]
    assert (settings["latency_events"], settings["clients"], settings["ingest_requests"]) == (
        30,
        2,
        300,
    )
    latency = report["modes"]["latency"]
    assert latency["error"] is None
    assert set(latency["figures"]) == {
        f"{path}_p{p}_ms" for path in ("db", "http") for p in (50, 95, 99)
    } | {"wakeup_p50_ms", "wakeup_p99_ms"}
    ingest = report["modes"]["ingest"]
    assert ingest["error"] is None
    assert set(ingest["figures"]) == {
        "requests_per_s",
        "p99_ms",
        "bare_requests_per_s",
        "bare_p99_ms",
        "requests_per_s_no_notify",
        "p99_ms_no_notify",
        "batch_events_per_s",
        "batch_p99_ms",
    }
    for figure in (*latency["figures"].values(), *ingest["figures"].values()):
        _assert_figure(figure)
    # The bare endpoint's run passed the same exactly-once check, or ok would be false.
    assert set(report["ratios"]) == {"ingest_without_vs_with_notify", "ingest_vs_bare"}
    assert all(ratio["value"] > 0 for ratio in report["ratios"].values())
    assert report["ratios"]["ingest_vs_bare"]["label"] == (
        "EventFlo POST /events / bare insert endpoint (requests/s)"
    )
    assert _scratch_databases(pg_server, database_url) == []


def test_the_bare_endpoint_stores_the_event_once_and_answers_its_id(database_url, conn):
    app = bare_api.create_app(Config(database_url=database_url))
    try:
        body = {"event_type": "user_signup", "source": "bench", "payload": {"user_id": 7}}
        response = app.test_client().post("/events", json=body)

        assert response.status_code == 202, response.text
        rows = conn.execute("SELECT id, event_type, source, payload, status FROM events").fetchall()
        assert rows == [{"id": uuid.UUID(response.json["event_id"]), **body, "status": "queued"}]
    finally:
        app.extensions["eventflo_bare_pool"].close()


def _routes(app) -> set[str]:
    return {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"}


def test_the_bare_server_runs_with_the_gunicorn_settings_of_eventflo_serve(
    database_url, monkeypatch
):
    """The ratio compares apps only: same options and defaults, same gunicorn settings."""
    started = []

    def run(server):  # stands in for gunicorn's arbiter loop only
        started.append(server)

    monkeypatch.setattr(BaseApplication, "run", run)
    args = ["--port", "8123", "--workers", "3"]  # --host and --threads: each command's default
    served = CliRunner().invoke(cli.main, ["serve", *args], env=_env(database_url))
    bare = CliRunner().invoke(bare_api.main, ["serve", *args], env=_env(database_url))

    assert served.exit_code == 0, served.output
    assert bare.exit_code == 0, bare.output
    real_server, bare_server = started
    real_settings, bare_settings = (
        {name: setting.value for name, setting in server.cfg.settings.items()} for server in started
    )
    # Only the process name differs, so `ps` tells the two servers apart.
    assert (real_settings.pop("proc_name"), bare_settings.pop("proc_name")) == (
        "eventflo-api",
        "eventflo-bench-bare",
    )
    assert bare_settings == real_settings
    assert real_settings["bind"] == ["127.0.0.1:8123"]
    assert (real_settings["workers"], real_settings["threads"]) == (3, 8)
    assert real_settings["worker_class"] == "gthread"
    # Each builds its own app in the worker: the API, and the bare endpoint alone.
    assert {"/events", "/events/batch", "/events/<event_id>"} <= _routes(real_server.load())
    bare_app = bare_server.load()
    try:
        assert _routes(bare_app) == {"/events"}
    finally:
        bare_app.extensions["eventflo_bare_pool"].close()


def test_table_by_default_and_keep_leaves_the_processed_events(pg_server, database_url):
    result = _bench(
        database_url, "drain", "--events", "1000", "--workers", "1", "--runs", "1", "--keep"
    )

    assert result.exit_code == 0, result.output
    table = result.stdout
    for setting in (
        "1,000 events",
        "1 worker process",
        "batch size 100",
        "fsync=",
        "synchronous_commit=",
        "PostgreSQL",
        "bytes",
        "CPUs",
        "events/s (DB timestamps)",
        "transactions/s",
    ):
        assert setting in table, table
    (kept,) = _scratch_databases(pg_server, database_url)
    try:
        assert kept in result.stderr
        with psycopg.connect(postgres.with_database(pg_server, kept)) as conn:
            row = conn.execute(
                "SELECT count(*) AS events,"
                " count(*) FILTER (WHERE status = 'completed' AND attempts = 1) AS once,"
                " (SELECT count(*) FROM event_processing_results) AS results,"
                " (SELECT count(*) FROM event_attempts WHERE outcome = 'completed') AS attempts"
                " FROM events"
            ).fetchone()
        assert row == (1000, 1000, 1000, 1000)
    finally:
        _drop(pg_server, kept)


def test_a_run_that_fails_its_check_reports_an_error_not_a_number(
    pg_server, database_url, monkeypatch
):
    def lost_one(conn, expected):
        raise BenchError(f"1 of {expected:,} events were not processed exactly once")

    monkeypatch.setattr(drain, "verify", lost_one)
    result = _bench(
        database_url, "drain", "floor", "--events", "300", "--workers", "1", "--runs", "1", "--json"
    )

    assert result.exit_code == 1, result.output
    report = _report(result)
    assert report["ok"] is False
    assert "not processed exactly once" in report["modes"]["drain"]["error"]
    assert report["modes"]["drain"]["figures"] == {}
    assert report["modes"]["floor"]["error"] is None  # the other modes still ran
    assert "drain_vs_floor" not in report["ratios"]
    assert _scratch_databases(pg_server, database_url) == []


def test_the_check_catches_an_event_processed_twice(conn):
    """The verification itself, on rows as a faulty worker could leave them."""
    conn.execute(
        "INSERT INTO events"
        " (event_type, source, payload, status, attempts, started_at, completed_at)"
        " VALUES ('user_signup', 'bench', '{}', 'completed', 1, now(), now()),"
        "        ('user_signup', 'bench', '{}', 'completed', 2, now(), now())"
    )
    conn.execute(
        "INSERT INTO event_processing_results"
        " (event_id, severity, classification_reason, recommendation, should_escalate, rule_id)"
        " SELECT id, 'LOW', 'r', 'r', false, 'default' FROM events"
    )
    conn.execute(
        "INSERT INTO event_attempts (event_id, attempt, worker_id, started_at, outcome)"
        " SELECT id, 1, 'w', now(), 'completed' FROM events"
    )
    with pytest.raises(BenchError, match="1 of 2 events .* not processed exactly once"):
        drain.verify(conn, 2)
    conn.execute("UPDATE events SET attempts = 1")
    drain.verify(conn, 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["drian"], "'drian' is not one of 'drain', 'floor', 'growth', 'latency', 'ingest'"),
        (["--clients", "0"], "--clients"),
        (["--workers", "0"], "--workers"),
        (["--events", "many"], "'many' is not a valid integer"),
    ],
)
def test_a_bad_option_is_a_usage_error(args, message):
    result = _bench("postgresql://nobody@127.0.0.1:1/nothing", *args)

    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_without_a_database_url_it_says_how_to_set_one():
    result = _bench(None, "drain")

    assert result.exit_code == 2, result.output
    assert "EVENTFLO_DATABASE_URL is not set" in result.output


@contextlib.contextmanager
def _role(pg_server: str, database_url: str, prefix: str, attributes: str):
    """A login role made for one test, and the configured URL as that role; dropped afterwards."""
    role, password = f"{prefix}_{secrets.token_hex(4)}", secrets.token_hex(8)
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN " + attributes + " PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
    try:
        parts = urllib.parse.urlsplit(database_url)
        netloc = f"{role}:{password}@{parts.hostname}:{parts.port}"
        yield role, urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    finally:
        with psycopg.connect(pg_server, autocommit=True, row_factory=dict_row) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_a_role_without_createdb_gets_a_clear_error(pg_server, database_url):
    with _role(pg_server, database_url, "bench_nocreatedb", "NOCREATEDB") as (role, url):
        result = _bench(url, "drain", *SMALL)

        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        assert f"ALTER ROLE {role} CREATEDB" in result.output


def test_a_role_that_may_not_checkpoint_still_runs_and_says_so(pg_server, database_url):
    with _role(pg_server, database_url, "bench_nocheckpoint", "CREATEDB NOSUPERUSER") as (
        role,
        url,
    ):
        result = _bench(url, "drain", *SMALL, "--json")

        assert result.exit_code == 0, result.output
        report = _report(result)
        assert report["ok"] is True
        assert report["environment"]["checkpoint_before_runs"] is False
        assert f"GRANT pg_checkpoint TO {role}" in result.stderr
        assert _scratch_databases(pg_server, url) == []
