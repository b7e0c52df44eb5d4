"""Endpoints: where verdicts are delivered, registered and managed by operators.

An endpoint has a unique name, a URL checked against server-side request
forgery (``endpoint_urls``), a format (``standard`` Standard Webhooks,
``slack``, ``pagerduty``) and a CEL filter (``delivery_filter``). A standard
endpoint signs with a ``whsec_`` secret made here and shown once; a
rotation keeps the old secret signing beside the new one for
``ROTATION_OVERLAP``, so receivers can switch without losing a request.

Secrets are never returned by the listing queries. A Slack URL carries its
token in its path and a PagerDuty routing key is one too, so what operators
see (``Endpoint.to_json``) shows them shortened.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import secrets
import urllib.parse
import uuid
from typing import Any

import psycopg

from eventflo import delivery_filter, endpoint_urls, errors, sql

QUERIES = sql.load("endpoints.sql")

FORMATS = ("standard", "slack", "pagerduty")
SECRET_MARK = "whsec_"
SECRET_BYTES = 32
ROTATION_OVERLAP = dt.timedelta(hours=24)
NAME_PATTERN = "letters, digits, '.', '_' and '-', starting with a letter or digit, 1 to 64"
MAX_ROUTING_KEY_CHARS = 128

Row = dict[str, Any]


# The errors this module raises, in the domain's vocabulary (eventflo.errors): the API maps
# them to 422, 409 and 404, the CLI to one line and exit status 1.
EndpointError = errors.InvalidEndpoint
EndpointNotFound = errors.EndpointNotFound


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A registered endpoint as operators see it: never its secret."""

    id: uuid.UUID
    name: str
    url: str
    format: str
    filter: str
    routing_key: str | None
    enabled: bool
    disabled_at: dt.datetime | None
    disabled_reason: str | None
    last_success_at: dt.datetime | None
    failing_since: dt.datetime | None
    failure_streak: int
    rotation_ends_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    pending: int
    failed: int

    @property
    def shown_url(self) -> str:
        return shown_url(self.url, self.format)

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = dataclasses.asdict(self)
        entry["id"] = str(self.id)
        entry["url"] = self.shown_url
        entry["routing_key"] = None if self.routing_key is None else shorten(self.routing_key)
        for key, value in entry.items():
            if isinstance(value, dt.datetime):
                entry[key] = value.isoformat()
        return entry


@dataclasses.dataclass(frozen=True)
class Created:
    """A new endpoint and its signing secret (standard format only), shown this once."""

    endpoint: Endpoint
    secret: str | None


def new_secret() -> str:
    """``whsec_`` and 32 random bytes in base64, as Standard Webhooks libraries read it."""
    return SECRET_MARK + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def shorten(secret: str) -> str:
    """The last four characters, enough to tell two apart."""
    return "…" + secret[-4:] if len(secret) > 8 else "…"


def shown_url(url: str, format: str) -> str:
    """``url`` without what may be a credential: a Slack URL's last segment, any query string."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path
    if format == "slack" and "/" in path.strip("/"):
        path = path.rstrip("/").rsplit("/", 1)[0] + "/…"
    query = "…" if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def check_name(name: str) -> str:
    if not (
        1 <= len(name) <= 64
        and name[0].isascii()
        and name[0].isalnum()
        and all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
    ):
        raise EndpointError(f"the name {name!r} is not valid: use {NAME_PATTERN} characters")
    return name


def create(
    conn: psycopg.Connection[Row],
    *,
    name: str,
    url: str,
    format: str = "standard",
    filter: str | None = None,
    routing_key: str | None = None,
    allow_private: bool,
) -> Created:
    """Check everything, then store the endpoint; EndpointError says what is wrong."""
    check_name(name)
    if format not in FORMATS:
        raise EndpointError(f"the format must be one of {', '.join(FORMATS)}")
    try:
        compiled = delivery_filter.compile_filter(
            delivery_filter.DEFAULT if filter is None else filter
        )
    except delivery_filter.FilterError as exc:
        raise EndpointError(f"the filter is refused: {exc}") from None
    if format == "pagerduty":
        if not routing_key or len(routing_key) > MAX_ROUTING_KEY_CHARS:
            raise EndpointError(
                "a pagerduty endpoint needs a routing key (its integration key,"
                f" 1 to {MAX_ROUTING_KEY_CHARS} characters)"
            )
    elif routing_key is not None:
        raise EndpointError("a routing key is for the pagerduty format only")
    # Last: the only check that may wait on the network (DNS).
    try:
        url = endpoint_urls.check_url(url, allow_private=allow_private)
    except endpoint_urls.EndpointUrlError as exc:
        # Not the URL itself: it may carry a token, and error output ends up in logs.
        raise EndpointError(f"the URL is refused: {exc}") from None
    secret = new_secret() if format == "standard" else None
    try:
        with conn.transaction():
            row = conn.execute(
                QUERIES["create_endpoint"],
                {
                    "name": name,
                    "url": url,
                    "format": format,
                    "filter": compiled.text,
                    "routing_key": routing_key,
                    "secret": secret,
                },
            ).fetchone()
    except psycopg.errors.UniqueViolation:
        raise errors.EndpointExists(f"an endpoint named {name!r} exists already") from None
    except psycopg.errors.IntegrityError as exc:  # a table check the checks above missed
        constraint = exc.diag.constraint_name or "a check"
        raise EndpointError(f"the endpoint is refused by the table's {constraint}") from None
    assert row is not None
    return Created(get(conn, name), secret)


def list_endpoints(conn: psycopg.Connection[Row]) -> list[Endpoint]:
    return [Endpoint(**row) for row in conn.execute(QUERIES["list_endpoints"], {"name": None})]


def get(conn: psycopg.Connection[Row], name: str) -> Endpoint:
    row = conn.execute(QUERIES["list_endpoints"], {"name": name}).fetchone()
    if row is None:
        raise EndpointNotFound(name)
    return Endpoint(**row)


def recent_deliveries(
    conn: psycopg.Connection[Row], endpoint: Endpoint, *, limit: int = 10
) -> list[Row]:
    params = {"endpoint_id": endpoint.id, "limit": limit}
    return list(conn.execute(QUERIES["recent_deliveries"], params))


def disable(conn: psycopg.Connection[Row], name: str, *, reason: str) -> Endpoint:
    """Stop delivering to ``name``; its pending deliveries wait until it is enabled again."""
    if (
        conn.execute(QUERIES["disable_endpoint"], {"name": name, "reason": reason}).fetchone()
        is None
    ):
        raise EndpointNotFound(name)
    return get(conn, name)


def enable(conn: psycopg.Connection[Row], name: str) -> Endpoint:
    if conn.execute(QUERIES["enable_endpoint"], {"name": name}).fetchone() is None:
        raise EndpointNotFound(name)
    return get(conn, name)


def remove(conn: psycopg.Connection[Row], name: str) -> int:
    """Remove ``name`` with its deliveries, in one transaction; how many deliveries went."""
    with conn.transaction():
        row = conn.execute(QUERIES["remove_endpoint"], {"name": name}).fetchone()
        if row is None:
            raise EndpointNotFound(name)
        removed = conn.execute(QUERIES["remove_endpoint_deliveries"], {"endpoint_id": row["id"]})
        return removed.rowcount


def rotate_secret(conn: psycopg.Connection[Row], name: str) -> tuple[str, dt.datetime]:
    """A new secret for ``name``, and when the old one stops signing beside it."""
    secret = new_secret()
    row = conn.execute(
        QUERIES["rotate_secret"],
        {"name": name, "secret": secret, "overlap_seconds": ROTATION_OVERLAP.total_seconds()},
    ).fetchone()
    if row is None:
        found = conn.execute(QUERIES["endpoint_format"], {"name": name}).fetchone()
        if found is None:
            raise EndpointNotFound(name)
        raise EndpointError(
            f"the endpoint {name!r} has the {found['format']} format, which is not signed;"
            " only standard endpoints have a secret"
        )
    return secret, row["rotation_ends_at"]
