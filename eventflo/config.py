"""Settings read once from ``EVENTFLO_*`` variables, shared by the API, the worker and the CLI."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

PREFIX = "EVENTFLO_"


class ConfigError(ValueError):
    """A setting is missing or malformed; raised at start-up, never later."""


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _bounded_int(*, at_least: int = 1, at_most: int) -> Callable[[str], int]:
    """A whole number within bounds."""

    def parse(raw: str) -> int:
        value = int(raw)
        if not at_least <= value <= at_most:
            raise ValueError(f"must be a whole number from {at_least} to {at_most}")
        return value

    return parse


DAY = 86_400.0


def _seconds(*, at_least: float = 0.001, at_most: float = DAY) -> Callable[[str], float]:
    """A duration in seconds within bounds: PostgreSQL would reject (or ignore) others later."""

    def parse(raw: str) -> float:
        value = float(raw)
        if not at_least <= value <= at_most:  # also false for nan
            raise ValueError(f"must be a number of seconds from {at_least:g} to {at_most:g}")
        return value

    return parse


def _database_url(raw: str) -> str:
    if not raw.startswith(("postgresql://", "postgres://")):
        raise ValueError("must be a postgresql:// URL")
    return raw


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    return parse


_SWITCH = {
    "on": True,
    "true": True,
    "1": True,
    "yes": True,
    "off": False,
    "false": False,
    "0": False,
    "no": False,
}


def _schedule(raw: str) -> tuple[float, ...]:
    """Seconds before each attempt: ``0,5,300`` (the first is usually 0: at once)."""
    try:
        delays = tuple(float(part) for part in raw.split(","))
    except ValueError:
        raise ValueError("must be seconds separated by commas, e.g. 0,5,300,1800") from None
    if not 1 <= len(delays) <= 50 or any(not 0 <= d <= 7 * DAY for d in delays):
        raise ValueError("must be 1 to 50 delays, each from 0 to 604800 seconds")
    return delays


def _public_url(raw: str) -> str:
    if not raw.startswith(("https://", "http://")) or " " in raw:
        raise ValueError("must be an http:// or https:// URL, e.g. https://eventflo.example.com")
    return raw.rstrip("/")


def _switch(raw: str) -> bool:
    try:
        return _SWITCH[raw.strip().lower()]
    except KeyError:
        raise ValueError("must be on or off") from None


@dataclasses.dataclass(frozen=True)
class Config:
    """Every tunable of EventFlo. Field metadata names the parser and documents the variable."""

    database_url: str | None = dataclasses.field(
        default=None, metadata={"parse": _database_url, "doc": "PostgreSQL URL (postgresql://…)"}
    )
    pool_size: int = dataclasses.field(
        default=10, metadata={"parse": _positive_int, "doc": "connections per API process"}
    )
    pool_timeout: float = dataclasses.field(
        default=5.0,
        metadata={"parse": _seconds(), "doc": "seconds to wait for a pooled connection (then 503)"},
    )
    statement_timeout: float = dataclasses.field(
        default=10.0, metadata={"parse": _seconds(), "doc": "seconds, on the app's connections"}
    )
    batch_size: int = dataclasses.field(
        default=100, metadata={"parse": _positive_int, "doc": "events a worker claims at once"}
    )
    lease_seconds: float = dataclasses.field(
        default=30.0, metadata={"parse": _seconds(at_least=1.0), "doc": "how long a claim is valid"}
    )
    max_attempts: int = dataclasses.field(
        default=5, metadata={"parse": _positive_int, "doc": "attempts before an event fails"}
    )
    retry_base_seconds: float = dataclasses.field(
        default=1.0, metadata={"parse": _seconds(), "doc": "first retry back-off (doubles)"}
    )
    retry_max_seconds: float = dataclasses.field(
        default=300.0,
        metadata={"parse": _seconds(at_most=7 * DAY), "doc": "longest retry back-off"},
    )
    poll_interval: float = dataclasses.field(
        default=2.0,
        metadata={
            "parse": _seconds(at_most=3600.0),
            "doc": "seconds an idle worker waits for NOTIFY before polling",
        },
    )
    max_body_bytes: int = dataclasses.field(
        default=1_048_576, metadata={"parse": _positive_int, "doc": "largest accepted request body"}
    )
    max_batch_body_bytes: int = dataclasses.field(
        default=8 * 1_048_576,
        metadata={"parse": _positive_int, "doc": "largest accepted body of POST /events/batch"},
    )
    max_json_depth: int = dataclasses.field(
        default=32,
        metadata={"parse": _positive_int, "doc": "deepest accepted JSON nesting of a request body"},
    )
    max_json_keys: int = dataclasses.field(
        default=1000,
        metadata={
            "parse": _bounded_int(at_most=1_000_000),
            "doc": "most object keys in one event (its fields and its payload's, at any depth)",
        },
    )
    max_long_polls: int = dataclasses.field(
        default=100,
        metadata={
            "parse": _bounded_int(at_most=10_000),
            "doc": "most GET /events/{id}?wait= requests waiting at once per process (then 503)",
        },
    )
    max_wait_seconds: float = dataclasses.field(
        default=30.0,
        metadata={"parse": _seconds(at_most=3600.0), "doc": "cap on GET /events/{id}?wait="},
    )
    list_limit_max: int = dataclasses.field(
        default=200, metadata={"parse": _positive_int, "doc": "cap on GET /events?limit="}
    )
    heartbeat_seconds: float = dataclasses.field(
        default=5.0,
        metadata={
            "parse": _seconds(at_least=0.1, at_most=3600.0),
            "doc": "seconds between a worker's heartbeats to the registry",
        },
    )
    worker_timeout: float = dataclasses.field(
        default=30.0,
        metadata={
            "parse": _seconds(at_least=1.0, at_most=DAY),
            "doc": "seconds without a heartbeat after which a worker counts as silent",
        },
    )
    auth: bool = dataclasses.field(
        default=True,
        metadata={
            "parse": _switch,
            "doc": "on: requests need an API key (Authorization: Bearer); off: local development",
        },
    )
    allow_private_endpoints: bool = dataclasses.field(
        default=False,
        metadata={
            "parse": _switch,
            "doc": (
                "on: endpoints may be plain http:// and on private or loopback addresses"
                " (development, tests)"
            ),
        },
    )
    delivery_timeout: float = dataclasses.field(
        default=15.0,
        metadata={
            "parse": _seconds(at_least=0.1, at_most=300.0),
            "doc": "seconds a delivery waits to connect, and for each read of the answer",
        },
    )
    delivery_retry_schedule: tuple[float, ...] = dataclasses.field(
        default=(0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0),
        metadata={
            "parse": _schedule,
            "doc": "seconds before each attempt of a delivery, comma-separated (Svix's schedule)",
        },
    )
    delivery_concurrency: int = dataclasses.field(
        default=16,
        metadata={
            "parse": _bounded_int(at_most=1000),
            "doc": "requests a deliverer process has in flight at once",
        },
    )
    delivery_per_endpoint: int = dataclasses.field(
        default=8,
        metadata={
            "parse": _bounded_int(at_most=1000),
            "doc": "requests a deliverer process has in flight to one endpoint at once",
        },
    )
    endpoint_disable_after: float = dataclasses.field(
        default=5 * DAY,
        metadata={
            "parse": _seconds(at_least=60.0, at_most=365 * DAY),
            "doc": "seconds of failing every attempt after which an endpoint is disabled",
        },
    )
    public_url: str | None = dataclasses.field(
        default=None,
        metadata={
            "parse": _public_url,
            "doc": "this API's address for people (https://…): deliveries link to events there",
        },
    )
    log_format: str = dataclasses.field(
        default="text", metadata={"parse": _choice("text", "json"), "doc": "text or json"}
    )
    log_level: str = dataclasses.field(
        default="info",
        metadata={"parse": _choice("debug", "info", "warning", "error"), "doc": "logging level"},
    )

    def __post_init__(self) -> None:
        if self.worker_timeout <= self.heartbeat_seconds:
            raise ConfigError(
                f"{PREFIX}WORKER_TIMEOUT ({self.worker_timeout:g}) must be longer than"
                f" {PREFIX}HEARTBEAT_SECONDS ({self.heartbeat_seconds:g});"
                " a few heartbeats is right"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Read every field from ``EVENTFLO_<FIELD>``; a bad value raises ConfigError naming it."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name = PREFIX + field.name.upper()
            raw = environ.get(name, "").strip()
            if not raw:
                continue
            try:
                values[field.name] = field.metadata["parse"](raw)
            except ValueError as exc:
                raise ConfigError(f"{name}={raw!r} is invalid: {exc}") from None
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)

    def require_database_url(self) -> str:
        """The database URL, or a ConfigError that tells the user how to set it."""
        if not self.database_url:
            raise ConfigError(
                f"{PREFIX}DATABASE_URL is not set (e.g. postgresql://user@localhost:5432/eventflo)"
            )
        return self.database_url
