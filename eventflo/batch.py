"""One step of a worker: claim a batch, classify it outside any transaction, write every outcome.

The claim commits the leases before any rule runs; the outcomes (results,
statuses, attempt history) are written in one transaction fenced on those
leases, so an event another worker rescued meanwhile is left alone.
"""

from __future__ import annotations

import logging
import random
import time

import psycopg

from eventflo import batch_log, classifier, queue, rules
from eventflo.config import Config

log = logging.getLogger(__name__)


class BatchStep:
    """Claims and finishes batches for one worker; counts what it finished."""

    def __init__(
        self,
        config: Config,
        *,
        worker_id: str,
        rule_set: rules.RuleSet | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._worker_id = worker_id
        self._rule_set = rules.default() if rule_set is None else rule_set
        self._rng = rng or random.Random()
        self._claim_floor = queue.ClaimFloor()
        self.completed = 0
        self.failed = 0  # attempts that ended failed or retried

    def run(self, conn: psycopg.Connection[queue.Row]) -> int:
        """Claim one batch, classify it, write the outcomes; the number of events claimed."""
        config = self._config
        batch = queue.claim(
            conn,
            worker_id=self._worker_id,
            batch_size=config.batch_size,
            lease_seconds=config.lease_seconds,
            not_before=self._claim_floor.not_before(),
        )
        self._claim_floor.claimed(batch)
        if not batch:
            return 0
        started = time.perf_counter()
        per_event = batch_log.enabled()
        if per_event:
            batch_log.claimed(self._worker_id, batch, lease_seconds=config.lease_seconds)
        verdicts, failures = classifier.classify(batch, self._rule_set, worker_id=self._worker_id)
        backoffs = [
            queue.backoff_seconds(
                failure.event.attempt,
                base=config.retry_base_seconds,
                cap=config.retry_max_seconds,
                rng=self._rng,
            )
            for failure in failures
        ]
        finished = queue.finish(
            conn,
            worker_id=self._worker_id,
            verdicts=verdicts,
            failures=failures,
            max_attempts=config.max_attempts,
            backoffs=backoffs,
        )
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        erred = len(finished.retried) + len(finished.failed)
        self.completed += len(finished.completed)
        self.failed += erred
        if per_event:
            batch_log.outcomes(self._worker_id, verdicts, failures, backoffs, finished, duration_ms)
        self._log_batch(len(batch), len(finished.completed), erred, duration_ms)
        return len(batch)

    def _log_batch(self, claimed: int, completed: int, erred: int, duration_ms: float) -> None:
        lost = claimed - completed - erred
        log.debug(
            "batch finished",
            extra={
                "worker_id": self._worker_id,
                "claimed": claimed,
                "completed": completed,
                "erred": erred,
                "lost_lease": lost,
                "duration_ms": duration_ms,
            },
        )
        if lost:
            log.warning(
                "lost the lease on %d events; their results were not written",
                lost,
                extra={"worker_id": self._worker_id},
            )
