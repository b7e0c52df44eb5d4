"""The outbox, on the worker's side: which endpoints each judged event goes to.

A worker evaluates every enabled endpoint's filter on each verdict of a
batch, outside any transaction, and ``queue.finish`` writes one delivery per
match in the same transaction as the results, for the events it still held:
a rolled-back or fenced-out completion writes none, and a delivery exists
only for a verdict that committed. The insert keeps only endpoints still
enabled, and locks each one once until it commits (see ``store_deliveries``),
so a disabled or removed endpoint gets nothing more.

Which endpoints: the claim returns the endpoints' generation (a counter
bumped by every change to what decides deliveries), and a worker re-reads
the endpoints when it changes. So an endpoint added before an event was
claimed receives that event's verdict, however recently it was added.

What it costs: nothing without endpoints. A filter that reads only the
result (such as the default, ``result.should_escalate``) runs once per
distinct verdict of a batch; one that reads the event runs once per event.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg

from eventflo import delivery_filter
from eventflo.queue import Row, Verdict
from eventflo.rules import Classification
from eventflo.sql import QUERIES

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Target:
    """An enabled endpoint, as a worker matches verdicts against it."""

    endpoint_id: uuid.UUID
    name: str
    filter: delivery_filter.DeliveryFilter


@dataclasses.dataclass(frozen=True)
class Planned:
    """A batch's deliveries: parallel lists, each result named by its position in ``results``."""

    endpoint_ids: list[uuid.UUID]
    event_ids: list[uuid.UUID]
    positions: list[int]  # 1-based, into results
    results: list[dict[str, Any]]  # one per distinct verdict (result_json)

    def __len__(self) -> int:
        return len(self.event_ids)

    def held(self, held: set[uuid.UUID]) -> Planned:
        """Only the deliveries of the events the completion still held."""
        keep = [i for i, event_id in enumerate(self.event_ids) if event_id in held]
        if len(keep) == len(self.event_ids):
            return self
        return Planned(
            [self.endpoint_ids[i] for i in keep],
            [self.event_ids[i] for i in keep],
            [self.positions[i] for i in keep],
            self.results,
        )


def result_json(classification: Classification, rules_version: int) -> dict[str, Any]:
    """A verdict as filters see it and deliveries carry it: the names of ``GET /events/{id}``."""
    return {
        "severity": classification.severity.value,
        "classification_reason": classification.reason,
        "recommendation": classification.recommendation,
        "should_escalate": classification.should_escalate,
        "rule": classification.rule_id,
        "rules_version": rules_version,
    }


class Outbox:
    """One worker's view of the enabled endpoints, re-read when their generation changes."""

    def __init__(self, *, worker_id: str) -> None:
        self._worker_id = worker_id
        self._generation: int | None = None
        self._targets: tuple[Target, ...] = ()

    def targets(self, conn: psycopg.Connection[Row], generation: int) -> tuple[Target, ...]:
        """The enabled endpoints as of ``generation`` (the claim's), read when it is new."""
        if generation != self._generation:
            self._targets = self._read(conn)
            self._generation = generation
        return self._targets

    def _read(self, conn: psycopg.Connection[Row]) -> tuple[Target, ...]:
        targets = []
        for row in conn.execute(QUERIES["enabled_endpoints"]):
            try:
                compiled = delivery_filter.compile_filter(row["filter"])
            except delivery_filter.FilterError as exc:
                # Checked when it was added: only a release that reads filters differently
                # gets here. Deliver nothing rather than everything, and say so.
                log.error(
                    "endpoint %s: its filter cannot be used, so it receives nothing: %s",
                    row["name"],
                    exc,
                    extra={"worker_id": self._worker_id},
                )
                continue
            targets.append(Target(row["id"], row["name"], compiled))
        return tuple(targets)

    def plan(
        self, targets: Sequence[Target], verdicts: Sequence[Verdict], rules_version: int
    ) -> Planned | None:
        """The deliveries of ``verdicts``: one per verdict and matching target; None if none."""
        if not targets or not verdicts:
            return None
        endpoint_ids: list[uuid.UUID] = []
        event_ids: list[uuid.UUID] = []
        positions: list[int] = []
        results: dict[Classification, tuple[int, dict[str, Any]]] = {}
        for target in targets:
            matched: dict[Classification, bool] = {}  # a filter of the result alone, per verdict
            failures = 0
            first_error = ""
            for verdict in verdicts:
                classification = verdict.classification
                entry = results.get(classification)
                if entry is None:
                    entry = results[classification] = (
                        len(results) + 1,
                        result_json(classification, rules_version),
                    )
                position, result = entry
                if not target.filter.reads_event and classification in matched:
                    match = matched[classification]
                else:
                    event = _event_json(verdict) if target.filter.reads_event else _NO_EVENT
                    try:
                        match = target.filter.matches(event, result)
                    except Exception as exc:  # a type the probes did not meet: no delivery
                        failures += 1
                        first_error = first_error or f"{type(exc).__name__}: {exc}"
                        match = False
                    matched[classification] = match
                if match:
                    endpoint_ids.append(target.endpoint_id)
                    event_ids.append(verdict.event.event_id)
                    positions.append(position)
            if failures:
                log.warning(
                    "endpoint %s: its filter failed on %d events of a batch, which it does not"
                    " receive (first: %s)",
                    target.name,
                    failures,
                    first_error,
                    extra={"worker_id": self._worker_id},
                )
        if not event_ids:
            return None
        ordered = [result for _, result in sorted(results.values(), key=lambda entry: entry[0])]
        return Planned(endpoint_ids, event_ids, positions, ordered)


# What a filter that reads only the result is given as its event: converting none costs nothing.
_NO_EVENT: dict[str, Any] = {}


def _event_json(verdict: Verdict) -> dict[str, Any]:
    event = verdict.event
    return {
        "event_id": str(event.event_id),
        "event_type": event.event_type,
        "source": event.source,
        "payload": event.payload,
    }
