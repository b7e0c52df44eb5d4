"""The domain's error vocabulary, shared by the API, the workers and the CLI.

These say what went wrong in EventFlo's own words and carry no transport
meaning: no HTTP status, no exit code. The web layer maps each class to a
problem document (eventflo.problems) and the CLI to a one-line message, so
this module imports nothing of either; a worker that raises or catches these
loads no web framework.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class EventFloError(Exception):
    """An error EventFlo raises on purpose; ``str(error)`` (also ``detail``) says what happened."""

    def __init__(self, detail: str, *, field_errors: Mapping[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        # Messages per field ({"payload": {"amount": ["…"]}}), when the fault is in named fields.
        self.field_errors = field_errors


class MalformedRequest(EventFloError):
    """The request cannot be read at all: broken JSON, a bad header, an id that is no UUID."""


class InvalidEvent(EventFloError):
    """A well-formed request whose event cannot be accepted: too deep, unstorable text, …"""


class InvalidRuleFile(EventFloError):
    """A draft rule set sent to the API cannot be loaded; ``field_errors`` lists each problem."""


class EventNotFound(EventFloError):
    """No event has the id asked for."""


class InvalidEndpoint(EventFloError):
    """An endpoint cannot be registered or changed as asked: its name, URL, filter, format, key."""


class EndpointExists(InvalidEndpoint):
    """Another endpoint has the name asked for."""


class DeliveryNotFound(EventFloError):
    """No delivery has the id asked for."""


class DeliveryBusy(EventFloError):
    """A delivery is being attempted right now, so it cannot be changed."""


class EndpointNotFound(EventFloError):
    """No endpoint has the name asked for."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no endpoint is named {name!r}")


class IdempotencyConflict(EventFloError):
    """An idempotency key named an event stored for a different request."""


class DatabaseUnavailable(EventFloError):
    """The database cannot be reached or cannot serve now; a retry later may succeed."""


class SchemaNotCurrent(EventFloError):
    """The database lacks a table this code needs: ``eventflo migrate`` has not run yet."""


class TooManyLongPolls(EventFloError):
    """This process already holds as many waiting requests as it may; retry shortly."""

    def __init__(self, detail: str, *, retry_after_seconds: int = 1) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds
