"""Shared fixtures: one PostgreSQL per session, a migrated template, a fresh database per test.

Tests commit for real (NOTIFY fires only on commit, SKIP LOCKED needs two
sessions), so isolation comes from cloning the template, not from rollbacks.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from eventflo import migrate
from eventflo.config import Config
from tests import postgres

TEMPLATE = f"eventflo_template_{os.getpid()}"


def _admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(url, autocommit=True)


@pytest.fixture(scope="session")
def pg_server(pytestconfig: pytest.Config) -> Iterator[str]:
    """The admin URL of the session's server; the run's output says where it came from."""
    with postgres.server() as (kind, url):
        capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled():
            print(f"\neventflo tests use PostgreSQL from: {kind}")
        yield url


@pytest.fixture(scope="session")
def template_database(pg_server: str) -> Iterator[str]:
    """A database with every migration applied, cloned by each test."""
    with _admin(pg_server) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(TEMPLATE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    migrate.apply(postgres.with_database(pg_server, TEMPLATE))
    yield TEMPLATE
    with _admin(pg_server) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE))
        )


@pytest.fixture
def empty_database_url(pg_server: str) -> Iterator[str]:
    """A fresh database with no schema (for the migration tests)."""
    yield from _database(pg_server, template=None)


@pytest.fixture
def database_url(pg_server: str, template_database: str) -> Iterator[str]:
    """A fresh, migrated database for this test alone."""
    yield from _database(pg_server, template=template_database)


def _database(pg_server: str, template: str | None) -> Iterator[str]:
    name = f"eventflo_test_{uuid.uuid4().hex[:12]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        create = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)
        )
    with _admin(pg_server) as conn:
        conn.execute(create)
    yield postgres.with_database(pg_server, name)
    with _admin(pg_server) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def config(database_url: str) -> Config:
    """Settings for in-process components: short leases and polls keep the tests quick.

    Auth is off here, as a choice: these tests are about everything else.
    tests/integration/test_auth.py builds its apps with auth on, and the
    end-to-end tests run the real default (on) with keys.
    """
    return Config(
        database_url=database_url,
        auth=False,
        lease_seconds=5.0,
        poll_interval=0.5,
        retry_base_seconds=0.05,
        retry_max_seconds=0.2,
    )


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[dict[str, object]]]:
    """An autocommit connection to the test's database, returning dict rows."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as connection:
        yield connection
