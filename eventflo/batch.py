"""One step of a worker: claim a batch, classify it outside any transaction, write every outcome.

The claim commits the leases before any rule runs; the outcomes (results,
statuses, attempt history) are written in one transaction fenced on those
leases, so an event another worker rescued meanwhile is left alone.

The claim also names the active rule version, and the whole batch is judged
by that version alone. A version this code cannot load (a newer release
stored it: a mixed deploy) is never replaced by an older one: the batch goes
back untouched, and the worker stops claiming until the active version is
one it can load.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time

import psycopg

from eventflo import batch_log, classifier, outbox, queue, rules, ruleversions
from eventflo.config import Config
from eventflo.rulecache import CannotLoad, RuleCache

log = logging.getLogger(__name__)


class BatchStep:
    """Claims and finishes batches for one worker; counts what it finished."""

    COMPLAINT_INTERVAL = 60.0  # while claiming is stopped, say why again this often

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
        # A pinned set (tests, the bench) judges every batch; its results
        # record the stored version with its sha256, stored on first use.
        self._pinned = rule_set
        self._pinned_version: int | None = None
        self._cache = RuleCache()
        self._cannot_load: CannotLoad | None = None  # set while claiming is stopped
        self._next_complaint = 0.0
        self._rng = rng or random.Random()
        self._claim_floor = queue.ClaimFloor()
        self._outbox = outbox.Outbox(worker_id=worker_id)
        self.completed = 0
        self.failed = 0  # attempts that ended failed or retried

    def run(self, conn: psycopg.Connection[queue.Row]) -> int:
        """Claim one batch, classify it, write the outcomes; the number of events claimed."""
        config = self._config
        if self._cannot_load is not None and not self._can_load_active(conn):
            return 0
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
        try:
            rule_set, rules_version = self._rules_for(conn, batch[0].rules_version)
            targets = self._outbox.targets(conn, batch[0].endpoints_generation)
        except CannotLoad as exc:
            queue.release(conn, worker_id=self._worker_id, batch=batch)
            self._stop_claiming(exc)
            return 0
        except psycopg.Error:
            # Reading the version or the endpoints failed, not the rules: give the batch
            # back without spending its attempts if the connection still works (else the
            # leases expire), then let the loop back off as for any database error.
            with contextlib.suppress(psycopg.Error):
                queue.release(conn, worker_id=self._worker_id, batch=batch)
            raise
        started = time.perf_counter()
        per_event = batch_log.enabled()
        if per_event:
            batch_log.claimed(self._worker_id, batch, lease_seconds=config.lease_seconds)
        verdicts, failures = classifier.classify(batch, rule_set, worker_id=self._worker_id)
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
            rules_version=rules_version,
            deliveries=self._outbox.plan(targets, verdicts, rules_version),
        )
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        erred = len(finished.retried) + len(finished.failed)
        self.completed += len(finished.completed)
        self.failed += erred
        if per_event:
            batch_log.outcomes(self._worker_id, verdicts, failures, backoffs, finished, duration_ms)
        self._log_batch(len(batch), len(finished.completed), erred, duration_ms)
        return len(batch)

    @property
    def claiming(self) -> bool:
        """False while the active rule version is one this worker cannot load."""
        return self._cannot_load is None

    def _rules_for(
        self, conn: psycopg.Connection[queue.Row], version: int
    ) -> tuple[rules.RuleSet, int]:
        """The rule set judging a batch claimed under ``version``, and the version recorded."""
        if self._pinned is not None:
            if self._pinned_version is None:
                self._pinned_version = ruleversions.version_of(conn, self._pinned)
            return self._pinned, self._pinned_version
        return self._cache.get(conn, version), version

    def _stop_claiming(self, exc: CannotLoad) -> None:
        first = self._cannot_load is None or self._cannot_load.version != exc.version
        self._cannot_load = exc
        if first or time.monotonic() >= self._next_complaint:
            self._next_complaint = time.monotonic() + self.COMPLAINT_INTERVAL
            log.error(
                "%s; not claiming events until the active rule version is one this worker"
                " can load (upgrade this worker, or `eventflo rules rollback`)",
                exc,
                extra={"worker_id": self._worker_id, "rules_version": exc.version},
            )

    def _can_load_active(self, conn: psycopg.Connection[queue.Row]) -> bool:
        """While stopped: whether the active version is loadable now (checked every poll)."""
        version = ruleversions.active_number(conn)
        try:
            self._cache.get(conn, version)
        except CannotLoad as exc:
            self._stop_claiming(exc)
            return False
        log.info(
            "rule version %d loaded; claiming events again",
            version,
            extra={"worker_id": self._worker_id, "rules_version": version},
        )
        self._cannot_load = None
        return True

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
