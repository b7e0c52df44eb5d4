"""The option types the commands share: timestamps, event ids and ages, each with a clear error."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import click

from eventflo import retention


class Timestamp(click.ParamType[dt.datetime, Any]):
    """ISO 8601 date or date-time; without a zone it means UTC."""

    name = "timestamp"

    def convert(self, value: Any, param: Any, ctx: Any) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 date or date-time (e.g. 2026-11-25T18:00:00Z)")
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class Id(click.ParamType[uuid.UUID, Any]):
    """A UUID naming one ``what`` (an event, a delivery): a bad one says which it should be."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.name = f"{what}_id"

    def convert(self, value: Any, param: Any, ctx: Any) -> uuid.UUID:
        try:
            return uuid.UUID(str(value))
        except ValueError:
            article = "an" if self.what[0] in "aeiou" else "a"
            self.fail(f"{value!r} is not {article} {self.what} id (a UUID)")


class Duration(click.ParamType[dt.timedelta, Any]):
    """An age: a whole number and d, h, m or s (30d, 12h, 90m, 3600s)."""

    name = "duration"

    def convert(self, value: Any, param: Any, ctx: Any) -> dt.timedelta:
        if isinstance(value, dt.timedelta):
            return value
        try:
            return retention.parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc))
