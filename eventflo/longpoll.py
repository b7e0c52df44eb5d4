"""``GET /events/{id}?wait=N``: hold the answer until the event finishes, a bounded few at once."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator

from eventflo import db, events
from eventflo.errors import TooManyLongPolls
from eventflo.listener import FinishedWatcher


class LongPollSlots:
    """At most ``limit`` requests of this process long-poll at once; the next one is refused.

    Why a refusal (a 503 with ``Retry-After``) rather than answering at once
    without the wait: an early 200 with the event still queued looks exactly
    like a wait that timed out, so a polling client asks again at once, and
    every waiter over the cap turns into a busy loop against the database
    precisely when the process is saturated. A refusal says "not now" and for
    how long; clients and load balancers know to back off. Slots are per
    process (each gunicorn worker has its own), taken without blocking and
    released when the wait ends.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self.in_use = 0

    @contextlib.contextmanager
    def take(self) -> Iterator[None]:
        if not self._free.acquire(blocking=False):
            raise TooManyLongPolls(
                f"This API process already holds {self.limit} waiting requests"
                " (EVENTFLO_MAX_LONG_POLLS); retry after a second, or read without ?wait=."
            )
        with self._lock:
            self.in_use += 1
        try:
            yield
        finally:
            with self._lock:
                self.in_use -= 1
            self._free.release()


def wait_until_finished(
    pool: db.Pool, watcher: FinishedWatcher, event_id: uuid.UUID, wait: float
) -> None:
    """Block until the event is completed or failed (or unknown), or ``wait`` seconds pass.

    A worker sends one NOTIFY per finished batch; the process's watcher turns
    it into a wake-up, and we re-read the status. Reading the generation before
    the status closes the race with a notification that lands in between.
    """
    deadline = time.monotonic() + wait
    while True:
        generation = watcher.generation()
        with db.borrow(pool) as conn:
            status = events.get_status(conn, event_id)
        remaining = deadline - time.monotonic()
        if status is None or status in events.FINISHED or remaining <= 0:
            return
        watcher.wait_for_next(generation, timeout=remaining)
