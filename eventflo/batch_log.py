"""The worker's log lines about events: one INFO line per state change, never the payload.

Logged under ``eventflo.worker``, the name operators filter a worker's lines by,
whichever module writes them.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from eventflo import queue
from eventflo.status import Status

log = logging.getLogger("eventflo.worker")


def event_fields(worker_id: str, event: queue.Claimed, **fields: object) -> dict[str, object]:
    """The structured fields every line about one event carries."""
    return {
        "worker_id": worker_id,
        "event_id": str(event.event_id),
        "event_type": event.event_type,
        "attempt": event.attempt,
        **fields,
    }


def enabled() -> bool:
    """Whether per-event lines are on; asked once per batch, so a quieter level costs nothing."""
    return log.isEnabledFor(logging.INFO)


def claimed(worker_id: str, batch: Sequence[queue.Claimed], *, lease_seconds: float) -> None:
    """queued → processing; ``waited_ms``: from due (run_at) to the claim, by the database clock."""
    lease = dt.timedelta(seconds=lease_seconds)
    for event in batch:
        waited_ms = round((event.locked_until - lease - event.run_at).total_seconds() * 1000, 2)
        fields = event_fields(worker_id, event, status=Status.processing, waited_ms=waited_ms)
        log.info("event claimed", extra=fields)


def outcomes(
    worker_id: str,
    verdicts: Sequence[queue.Verdict],
    failures: Sequence[queue.Failure],
    backoffs: Sequence[float],
    finished: queue.Finished,
    duration_ms: float,
) -> None:
    """The outcomes the batch's transaction wrote; ``duration_ms``: claim to commit.

    An event whose lease was lost gets no line: nothing was written for it.
    An error's text can quote the payload, so it is logged at DEBUG only.
    """
    completed = set(finished.completed)
    for verdict in verdicts:
        if verdict.event.event_id in completed:
            fields = event_fields(
                worker_id,
                verdict.event,
                status=Status.completed,
                duration_ms=duration_ms,
                rule=verdict.classification.rule_id,
                severity=verdict.classification.severity.value,
            )
            log.info("event completed", extra=fields)
    retried, failed = set(finished.retried), set(finished.failed)
    debug = log.isEnabledFor(logging.DEBUG)
    for failure, backoff in zip(failures, backoffs, strict=True):
        event_id = failure.event.event_id
        if event_id not in retried and event_id not in failed:
            continue
        fields = event_fields(
            worker_id,
            failure.event,
            status=Status.queued if event_id in retried else Status.failed,
            duration_ms=duration_ms,
            cause="rule error" if failure.permanent else "unexpected error",
        )
        if event_id in retried:
            fields["retry_in_s"] = round(backoff, 3)
        if debug:
            fields["error"] = failure.error
        log.info("event retried" if event_id in retried else "event failed", extra=fields)
