"""The lease rescue, as every live worker runs it now and then.

It gives back the leases no worker will finish (expired, or held by a
worker that stopped, died or went silent), then records as reaped the silent
workers left holding nothing, so they stop showing as silent.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

import psycopg

from eventflo import queue, registry
from eventflo.config import Config

log = logging.getLogger(__name__)


class Rescuer:
    """Runs the rescue on a jittered schedule, so a fleet's workers do not all run it at once."""

    def __init__(
        self,
        config: Config,
        *,
        worker_id: str,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._worker_id = worker_id
        self._rng = rng or random.Random()
        self._clock = clock
        self._next_run = 0.0  # the first loop rescues at once
        # Often enough to beat both the lease and the silence timeout by a wide margin.
        self._interval = max(0.5, min(config.lease_seconds / 2, config.worker_timeout / 2, 10.0))

    def run_if_due(self, conn: psycopg.Connection[queue.Row]) -> None:
        now = self._clock()
        if now < self._next_run:
            return
        self._next_run = now + self._interval * self._rng.uniform(0.8, 1.2)
        self.run(conn)

    def run(self, conn: psycopg.Connection[queue.Row]) -> list[queue.Row]:
        """Rescue now; the rescued events (see queue.rescue_expired).

        Cheap: it reads a small partial index (events in flight) and the registry.
        """
        rescued = queue.rescue_expired(
            conn,
            max_attempts=self._config.max_attempts,
            worker_timeout=self._config.worker_timeout,
        )
        for row in rescued:
            log_rescued(row, rescuer_id=self._worker_id)
        for row in registry.reap_silent(conn, timeout=self._config.worker_timeout):
            log.warning(
                "silent worker reaped: it holds no lease any more",
                extra={
                    "worker_id": self._worker_id,
                    "reaped_worker_id": row["id"],
                    "reason": row["reaped_reason"],
                },
            )
        return rescued


def log_rescued(row: queue.Row, *, rescuer_id: str) -> None:
    """One WARNING per released lease: whose it was, why, and how long it was held."""
    log.warning(
        "event lease rescued",
        extra={
            "worker_id": rescuer_id,
            "event_id": str(row["id"]),
            "attempt": row["attempts"],
            "status": row["status"],
            "holder_worker_id": row["locked_by"],
            "reason": row["reason"],
            "duration_ms": round(row["held_seconds"] * 1000, 2),
        },
    )
