"""Retention: delete finished events older than an age, in short batches, beside running workers.

EventFlo never deletes on its own; ``eventflo purge`` (run by hand or from a
timer) does it. An event's age counts from its last update (``updated_at``),
which for a finished event is when it finished. Only completed and failed
events are ever deleted; their result and attempt rows go with them by
``ON DELETE CASCADE``. Each batch is one statement, so one short transaction
that skips (never waits for) rows other transactions hold.

Every function takes the connection first; times come from the server's clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg

from eventflo import sql
from eventflo.status import FINISHED, Status

QUERIES = sql.load("retention.sql")

PURGEABLE_STATUSES: tuple[Status, ...] = FINISHED
DEFAULT_RETENTION = "30d"
DEFAULT_BATCH_SIZE = 1000
# Beyond this an age is a typo, and the cutoff would leave PostgreSQL's timestamp range.
MAX_AGE = dt.timedelta(days=36_500)

_DURATION = re.compile(r"(\d+)([dhms])")
_UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}

Row = dict[str, Any]


def parse_duration(text: str) -> dt.timedelta:
    """``30d``, ``12h``, ``90m`` or ``3600s`` as a positive timedelta; else ValueError."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration: a whole number and d, h, m or s (e.g. 30d)")
    age = dt.timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
    if age <= dt.timedelta(0):
        raise ValueError(f"{text!r} is not a positive duration")
    if age > MAX_AGE:
        raise ValueError(f"{text!r} is longer than {MAX_AGE.days} days")
    return age


@dataclasses.dataclass(frozen=True)
class PurgeSelection:
    """Which events a purge deletes: in one of ``statuses``, last updated before ``cutoff``.

    ``id_bound`` is the smallest id an event inserted after the cutoff can
    have; it keeps every scan on the old end of the primary key.
    """

    statuses: tuple[str, ...]
    cutoff: dt.datetime
    id_bound: uuid.UUID

    def params(self) -> dict[str, Any]:
        return {"statuses": list(self.statuses), "cutoff": self.cutoff, "id_bound": self.id_bound}


@dataclasses.dataclass(frozen=True)
class Batch:
    """What one batch deleted, by status."""

    completed: int
    failed: int

    @property
    def deleted(self) -> int:
        return self.completed + self.failed


def select(
    conn: psycopg.Connection[Row], *, older_than: dt.timedelta, statuses: Sequence[str]
) -> PurgeSelection:
    """Fix the cutoff now (``older_than`` before the server's clock) for the whole purge."""
    unknown = set(statuses) - set(PURGEABLE_STATUSES)
    if unknown or not statuses:
        raise ValueError(f"only {' and '.join(PURGEABLE_STATUSES)} events can be purged")
    row = conn.execute(
        QUERIES["purge_cutoff"], {"older_than_seconds": older_than.total_seconds()}
    ).fetchone()
    assert row is not None
    ordered = tuple(status for status in PURGEABLE_STATUSES if status in statuses)
    return PurgeSelection(statuses=ordered, cutoff=row["cutoff"], id_bound=row["id_bound"])


def count(conn: psycopg.Connection[Row], selection: PurgeSelection) -> Batch:
    """How many events the purge would delete now (a read: it locks nothing)."""
    row = conn.execute(QUERIES["count_purgeable"], selection.params()).fetchone()
    assert row is not None
    return Batch(completed=int(row["completed"]), failed=int(row["failed"]))


def purge_batches(
    conn: psycopg.Connection[Row],
    selection: PurgeSelection,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    pause: float = 0.0,
) -> Iterator[Batch]:
    """Delete the selection oldest id first, one transaction per batch, yielding each batch.

    ``conn`` must be in autocommit mode: each batch commits on its own, so a
    purge that stops half-way (Ctrl-C, a lost connection) keeps what it did
    and the next run carries on. Rows locked by others are skipped; ``count``
    after the last batch says how many were left for the next run.
    """
    if not conn.autocommit:
        raise ValueError("purge needs an autocommit connection: each batch is its own transaction")
    after_id: uuid.UUID | None = None
    while True:
        row = conn.execute(
            QUERIES["purge_batch"],
            {**selection.params(), "after_id": after_id, "batch_size": batch_size},
        ).fetchone()
        assert row is not None
        batch = Batch(completed=int(row["completed"]), failed=int(row["failed"]))
        yield batch
        if row["selected"] < batch_size:
            return  # the scan reached the bound: nothing old is left past after_id
        after_id = row["last_id"]
        if pause > 0:
            time.sleep(pause)


class PurgeStopped(Exception):
    """A purge stopped part-way: by Ctrl-C, or a batch hit the statement timeout.

    What it deleted before (``done``) stays deleted; running it again goes on.
    """

    def __init__(self, done: Batch, *, timed_out: bool) -> None:
        super().__init__("a batch exceeded the statement timeout" if timed_out else "interrupted")
        self.done = done
        self.timed_out = timed_out


def purge(
    conn: psycopg.Connection[Row],
    selection: PurgeSelection,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    pause: float = 0.0,
    progress: Callable[[Batch], None] = lambda batch: None,
) -> Batch:
    """Delete the whole selection batch by batch (``purge_batches``); the total, by status.

    ``progress`` sees each batch as it commits. Raises PurgeStopped, with
    the total so far, on Ctrl-C or when a batch exceeds the statement timeout.
    """
    completed = failed = 0
    try:
        for batch in purge_batches(conn, selection, batch_size=batch_size, pause=pause):
            completed += batch.completed
            failed += batch.failed
            progress(batch)
    except psycopg.errors.QueryCanceled:
        raise PurgeStopped(Batch(completed, failed), timed_out=True) from None
    except KeyboardInterrupt:
        raise PurgeStopped(Batch(completed, failed), timed_out=False) from None
    return Batch(completed=completed, failed=failed)
