"""A worker's membership in the registry: it registers, heartbeats while it runs, records its stop.

The heartbeat runs from the worker's main loop, so a hung loop stops it and
the worker turns silent, which is what the rescue needs to know.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psycopg

from eventflo import queue, registry
from eventflo.config import Config

log = logging.getLogger(__name__)


class Heartbeat:
    """Registers ``worker_id`` with its first beat, then beats every ``heartbeat_seconds``."""

    def __init__(
        self, config: Config, *, worker_id: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = config.heartbeat_seconds
        self._worker_id = worker_id
        self._clock = clock
        self.next_due = 0.0  # monotonic; the first beat registers the worker
        self.registered = False

    def beat_if_due(
        self, conn: psycopg.Connection[queue.Row], *, completed: int, failed: int
    ) -> None:
        """Register this worker (the first time), then tell the registry it is alive."""
        now = self._clock()
        if now < self.next_due:
            return
        if self.registered:
            registry.heartbeat(conn, worker_id=self._worker_id, completed=completed, failed=failed)
        else:
            registry.register(conn, worker_id=self._worker_id, completed=completed, failed=failed)
            self.registered = True
            log.info("worker registered", extra={"worker_id": self._worker_id})
        self.next_due = now + self._interval

    def record_stop(
        self,
        connection: Callable[[], psycopg.Connection[queue.Row]],
        *,
        completed: int,
        failed: int,
    ) -> None:
        """Tell the registry the worker stopped; without a database it turns silent instead.

        ``connection`` is called only if there is something to record.
        """
        if not self.registered:
            return
        try:
            registry.stop(
                connection(), worker_id=self._worker_id, completed=completed, failed=failed
            )
        except psycopg.Error as exc:
            log.warning(
                "could not record the stop in the registry (%s); the worker will show as silent",
                exc,
                extra={"worker_id": self._worker_id},
            )
