"""An event's status: the one vocabulary Python code uses for the ``event_status`` enum."""

from __future__ import annotations

import enum


class Status(enum.StrEnum):
    """``queued → processing → completed | failed``, and back to queued on a retry or replay.

    Member names equal their values, so whichever psycopg sends (an Enum's
    name or a str's value) is the database's label.
    """

    queued = "queued"
    processing = "processing"
    completed = "completed"
    failed = "failed"


# A finished event is judged (completed) or out of attempts (failed): what replay and purge touch.
FINISHED = (Status.completed, Status.failed)
