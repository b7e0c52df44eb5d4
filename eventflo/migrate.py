"""Schema migrations: the plain-SQL files in ``migrations/``, applied and rolled back with yoyo."""

from __future__ import annotations

import contextlib
import pathlib
import sys
from collections.abc import Iterator
from typing import Any

from yoyo import get_backend, read_migrations

# A source checkout (or editable install) has them beside the package; a
# regular install puts them under <prefix>/share/eventflo/migrations.
_CANDIDATES = (
    pathlib.Path(__file__).resolve().parent.parent / "migrations",
    pathlib.Path(sys.prefix) / "share" / "eventflo" / "migrations",
)


class MigrationsNotFound(RuntimeError):
    """No migration files: applying "nothing" would leave a database without a schema."""


def migrations_dir() -> pathlib.Path:
    """The first candidate folder that holds migration files."""
    for candidate in _CANDIDATES:
        if any(candidate.glob("*.sql")):
            return candidate
    raise MigrationsNotFound(
        "no migration files found in " + " or ".join(str(c) for c in _CANDIDATES)
    )


def migration_ids() -> list[str]:
    """The ids of the migrations this code ships, oldest first (the files' names)."""
    files = migrations_dir().glob("*.sql")
    return sorted(path.stem for path in files if not path.name.endswith(".rollback.sql"))


def yoyo_url(database_url: str) -> str:
    """yoyo picks its driver by the scheme: ``postgresql+psycopg`` means psycopg 3, not psycopg2."""
    scheme, sep, rest = database_url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        raise ValueError("expected a postgresql:// URL")
    return f"postgresql+psycopg://{rest}"


@contextlib.contextmanager
def _plan(database_url: str) -> Iterator[tuple[Any, Any]]:
    """yoyo's backend and the migration files; yoyo never closes its connection, so we do."""
    backend = get_backend(yoyo_url(database_url))
    try:
        yield backend, read_migrations(str(migrations_dir()))
    finally:
        backend.connection.close()


def pending(database_url: str) -> list[str]:
    """Ids of the migrations not yet applied."""
    with _plan(database_url) as (backend, migrations):
        return [m.id for m in backend.to_apply(migrations)]


def apply(database_url: str) -> list[str]:
    """Apply what is pending under yoyo's lock (safe if two processes migrate at once)."""
    with _plan(database_url) as (backend, migrations), backend.lock():
        todo = backend.to_apply(migrations)
        backend.apply_migrations(todo)
        return [m.id for m in todo]


def rollback(database_url: str, steps: int | None = None) -> list[str]:
    """Roll back the newest ``steps`` applied migrations (all of them when None)."""
    with _plan(database_url) as (backend, migrations), backend.lock():
        todo = backend.to_rollback(migrations)
        if steps is not None:
            todo = todo[:steps]
        backend.rollback_migrations(todo)
        return [m.id for m in todo]
