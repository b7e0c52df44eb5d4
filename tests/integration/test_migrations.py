"""The migrations apply, roll back and apply again, and leave the schema the code expects."""

from __future__ import annotations

import psycopg
import pytest

from eventflo import migrate

ALL = [
    "0001_create_events",
    "0002_create_event_processing_results",
    "0003_create_event_attempts",
    "0004_lean_hot_path",
    "0005_create_workers",
    "0006_create_api_keys",
    "0007_workers_reaped",
    "0008_rule_versions",
    "0009_endpoints_and_deliveries",
]


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables"
            " WHERE schemaname = 'public' AND tablename NOT LIKE '%yoyo%'"
        ).fetchall()
    return {row[0] for row in rows}


def test_apply_rollback_apply_round_trips(empty_database_url):
    assert migrate.pending(empty_database_url) == ALL
    assert migrate.apply(empty_database_url) == ALL
    assert _tables(empty_database_url) == {
        "events",
        "event_processing_results",
        "event_attempts",
        "workers",
        "api_keys",
        "rule_versions",
        "active_rule_version",
        "rule_activations",
        "endpoints",
        "deliveries",
        "delivery_attempts",
        "endpoint_generation",
    }
    assert migrate.pending(empty_database_url) == []

    assert migrate.rollback(empty_database_url) == list(reversed(ALL))
    assert _tables(empty_database_url) == set()
    with psycopg.connect(empty_database_url) as conn:
        leftovers = conn.execute(
            "SELECT typname FROM pg_type WHERE typname IN"
            " ('event_status', 'severity', 'attempt_outcome', 'api_key_scope',"
            " 'event_type_name', 'event_source_text', 'event_payload', 'idempotency_key_text',"
            " 'endpoint_format', 'delivery_status')"
            " UNION ALL SELECT proname FROM pg_proc WHERE proname LIKE 'eventflo_%'"
        ).fetchall()
    assert leftovers == []

    assert migrate.apply(empty_database_url) == ALL
    assert migrate.pending(empty_database_url) == []


def _columns(url: str, table: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s", [table]
        ).fetchall()
    return {row[0] for row in rows}


def test_rollback_one_step_then_reapply(empty_database_url):
    migrate.apply(empty_database_url)
    newest = ["0009_endpoints_and_deliveries", "0008_rule_versions", "0007_workers_reaped"]
    assert migrate.rollback(empty_database_url, steps=3) == newest
    assert migrate.pending(empty_database_url) == newest[::-1]
    assert "reaped_reason" not in _columns(empty_database_url, "workers")
    assert "rules_version" not in _columns(empty_database_url, "event_processing_results")
    assert migrate.apply(empty_database_url) == newest[::-1]
    assert "reaped_reason" in _columns(empty_database_url, "workers")
    assert "rules_version" in _columns(empty_database_url, "event_processing_results")


def test_rolling_back_the_hot_path_migration_restores_the_table_checks(empty_database_url):
    migrate.apply(empty_database_url)
    assert migrate.rollback(empty_database_url, steps=6) == [
        "0009_endpoints_and_deliveries",
        "0008_rule_versions",
        "0007_workers_reaped",
        "0006_create_api_keys",
        "0005_create_workers",
        "0004_lean_hot_path",
    ]
    with psycopg.connect(empty_database_url) as conn:
        checks = {
            row[0]
            for row in conn.execute(
                "SELECT conname FROM pg_constraint"
                " WHERE conrelid = 'events'::regclass AND contype = 'c'"
            )
        }
        indexes = {
            row[0]
            for row in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'events'")
        }
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO events (event_type) VALUES ('Not A Type')")
    assert {
        "events_event_type_format",
        "events_payload_is_object",
        "events_source_length",
    } <= checks
    assert "events_listing_idx" in indexes


def test_applying_twice_is_a_no_op(database_url):
    assert migrate.apply(database_url) == []


def test_hot_table_has_its_own_vacuum_settings(conn):
    options = conn.execute("SELECT reloptions FROM pg_class WHERE relname = 'events'").fetchone()
    settings = dict(option.split("=") for option in options["reloptions"])
    assert settings["fillfactor"] == "80"
    assert float(settings["autovacuum_vacuum_scale_factor"]) <= 0.01
    assert settings["autovacuum_vacuum_cost_delay"] == "0"


def test_no_migration_files_is_an_error_not_an_empty_success(monkeypatch, tmp_path, database_url):
    monkeypatch.setattr(migrate, "_CANDIDATES", (tmp_path / "nowhere",))
    with pytest.raises(migrate.MigrationsNotFound, match="no migration files"):
        migrate.apply(database_url)


def test_yoyo_url_uses_psycopg3():
    assert migrate.yoyo_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert migrate.yoyo_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    with pytest.raises(ValueError, match="postgresql://"):
        migrate.yoyo_url("mysql://u@h/db")
