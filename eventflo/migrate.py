"""Schema migrations: the plain-SQL files in ``migrations/``, applied and rolled back with yoyo."""

from __future__ import annotations

import pathlib

from yoyo import get_backend, read_migrations

MIGRATIONS_DIR = pathlib.Path(__file__).resolve().parent.parent / "migrations"


def yoyo_url(database_url: str) -> str:
    """yoyo picks its driver from the scheme: ``postgresql+psycopg`` means psycopg 3 (not psycopg2)."""
    scheme, sep, rest = database_url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        raise ValueError("expected a postgresql:// URL")
    return f"postgresql+psycopg://{rest}"


def _plan(database_url: str):  # type: ignore[no-untyped-def]
    backend = get_backend(yoyo_url(database_url))
    return backend, read_migrations(str(MIGRATIONS_DIR))


def pending(database_url: str) -> list[str]:
    """Ids of the migrations not yet applied."""
    backend, migrations = _plan(database_url)
    return [m.id for m in backend.to_apply(migrations)]


def apply(database_url: str) -> list[str]:
    """Apply what is pending under yoyo's lock (safe if two processes migrate at once)."""
    backend, migrations = _plan(database_url)
    with backend.lock():
        todo = backend.to_apply(migrations)
        backend.apply_migrations(todo)
    return [m.id for m in todo]


def rollback(database_url: str, steps: int | None = None) -> list[str]:
    """Roll back the newest ``steps`` applied migrations (all of them when None)."""
    backend, migrations = _plan(database_url)
    with backend.lock():
        todo = backend.to_rollback(migrations)
        if steps is not None:
            todo = todo[:steps]
        backend.rollback_migrations(todo)
    return [m.id for m in todo]
