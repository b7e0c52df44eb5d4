"""Connections: a pool per API process, dedicated ones for workers; driver errors in our words."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, TypeAlias, TypedDict

import psycopg
import psycopg_pool
from psycopg.rows import DictRow, RowFactory, dict_row

from eventflo import errors
from eventflo.config import Config

Row: TypeAlias = DictRow
Connection: TypeAlias = psycopg.Connection[Row]
Pool: TypeAlias = psycopg_pool.ConnectionPool[Connection]


class ReconnectBackoff:
    """Doubling waits between attempts to reach the database, from ``first`` up to ``cap`` seconds.

    Reset by a success, so the next outage starts short again; without it,
    a process that lost the database would hammer it while it restarts.
    """

    def __init__(self, *, first: float, cap: float) -> None:
        self._first = first
        self._cap = cap
        self.current = 0.0  # the last wait; 0 while the database answers

    def failed(self) -> float:
        """Another attempt failed: the wait before the next one."""
        self.current = min(self._cap, max(self._first, self.current * 2))
        return self.current

    def succeeded(self) -> None:
        self.current = 0.0


class ConnectionSettings(TypedDict):
    """The keyword arguments of ``psycopg.connect`` that every EventFlo connection is made with."""

    autocommit: bool
    row_factory: RowFactory[Row]
    application_name: str
    connect_timeout: int
    keepalives: int
    keepalives_idle: int
    keepalives_interval: int
    keepalives_count: int
    tcp_user_timeout: int
    options: str


def connection_kwargs(config: Config, application_name: str) -> ConnectionSettings:
    """Settings every EventFlo connection carries.

    Autocommit, so a transaction exists only inside an explicit
    ``conn.transaction()`` block or queue.pipelined_transaction; both timeouts
    keep a stuck or abandoned session from pinning the vacuum horizon of the
    hot table.
    """
    statement_ms = int(config.statement_timeout * 1000)
    # A partitioned network drops packets instead of refusing them; without
    # these, a read on a dead connection would wait for TCP's own timeout
    # (minutes) and no request could answer 503 in time.
    dead_after_ms = int(max(config.pool_timeout, config.statement_timeout) * 1000) + 1000
    return {
        "autocommit": True,
        "row_factory": dict_row,
        "application_name": application_name,
        "connect_timeout": max(2, int(config.pool_timeout)),
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "tcp_user_timeout": dead_after_ms,
        "options": (
            f"-c statement_timeout={statement_ms}"
            f" -c idle_in_transaction_session_timeout={statement_ms}"
        ),
    }


def connect(config: Config, application_name: str) -> Connection:
    """A dedicated connection (a worker's, a listener's, the CLI's), outside any pool."""
    return psycopg.connect(
        config.require_database_url(), **connection_kwargs(config, application_name)
    )


def create_pool(config: Config, application_name: str = "eventflo-api") -> Pool:
    """A pool for this process: it connects in the background, retrying while the database is down.

    Never share it across a fork; each process needs its own pool.
    """
    settings: dict[str, Any] = dict(connection_kwargs(config, application_name))
    pool: Pool = psycopg_pool.ConnectionPool(
        config.require_database_url(),
        min_size=1,
        max_size=config.pool_size,
        kwargs=settings,
        timeout=config.pool_timeout,
        # The pool doubles its wait between reconnection attempts until this
        # timeout (5 min by default): after a long outage it would go on
        # answering 503 for about as long again. Giving up early instead lets
        # the next request start a new series, whose first attempt is at once.
        reconnect_timeout=max(2.0, config.pool_timeout),
        check=psycopg_pool.ConnectionPool.check_connection,
        open=False,
        name=application_name,
    )
    pool.open(wait=False)
    return pool


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Turn the driver's errors that mean "the database, not you" into EventFlo's own.

    The one place where psycopg's vocabulary becomes the domain's: the API
    maps these to 503s, the CLI to one-line errors. Every other psycopg error
    is a bug and passes through unchanged.
    """
    try:
        yield
    except psycopg_pool.PoolTimeout as exc:
        raise errors.DatabaseUnavailable("no database connection became available in time") from exc
    except psycopg.errors.QueryCanceled as exc:
        raise errors.DatabaseUnavailable(
            "the database did not answer within the statement timeout"
        ) from exc
    except psycopg.errors.DeadlockDetected as exc:
        raise errors.DatabaseUnavailable("the database detected a deadlock; retry") from exc
    except psycopg.errors.ReadOnlySqlTransaction as exc:
        raise errors.DatabaseUnavailable(
            "the database accepts no writes now (a standby, or read-only mode)"
        ) from exc
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
        # A table or column that the code expects and the database lacks: a
        # migration has not run (or was rolled back), not a client's mistake.
        raise errors.SchemaNotCurrent(
            f"the database lacks what this version needs ({exc.diag.message_primary});"
            " run `eventflo migrate`"
        ) from exc
    except psycopg.OperationalError as exc:
        raise errors.DatabaseUnavailable("the database connection failed") from exc


@contextlib.contextmanager
def borrow(pool: Pool) -> Iterator[Connection]:
    """A pooled connection; database trouble becomes DatabaseUnavailable or SchemaNotCurrent."""
    with translate_errors(), pool.connection() as conn:
        yield conn
