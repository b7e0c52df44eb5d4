"""API keys: made, listed and revoked by operators; only a hash is ever stored.

A key is ``efk_`` followed by 43 characters of URL-safe base64 (256 random
bits). Its first 12 characters are kept as a prefix to tell keys apart; the
whole key is shown once, when it is made.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets
import string
import uuid
from typing import Any

import psycopg

from eventflo import sql

QUERIES = sql.load("keys.sql")

SCOPES = ("ingest", "read", "admin")
KEY_MARK = "efk_"
PREFIX_LENGTH = 12
KEY_LENGTH = len(KEY_MARK) + 43  # token_urlsafe(32): 32 bytes in unpadded base64
_URLSAFE = frozenset(string.ascii_letters + string.digits + "-_")

Row = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ApiKey:
    """A stored key as an operator sees it: never the key itself."""

    id: uuid.UUID
    name: str
    scope: str
    prefix: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None

    def to_json(self) -> dict[str, Any]:
        entry = dataclasses.asdict(self)
        entry["id"] = str(self.id)
        for key in ("created_at", "revoked_at", "last_used_at"):
            if entry[key] is not None:
                entry[key] = entry[key].isoformat()
        return entry


def digest(key: str) -> bytes:
    """What is stored and looked up for a key."""
    return hashlib.sha256(key.encode()).digest()


def create(conn: psycopg.Connection[Row], *, name: str, scope: str) -> tuple[ApiKey, str]:
    """A new key: its stored record, and the key itself (shown once, stored nowhere)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    key = KEY_MARK + secrets.token_urlsafe(32)
    row = conn.execute(
        QUERIES["create_key"],
        {"name": name, "scope": scope, "prefix": key[:PREFIX_LENGTH], "key_sha256": digest(key)},
    ).fetchone()
    assert row is not None
    return ApiKey(**row), key


def list_keys(conn: psycopg.Connection[Row], *, include_revoked: bool = False) -> list[ApiKey]:
    rows = conn.execute(QUERIES["list_keys"], {"include_revoked": include_revoked})
    return [ApiKey(**row) for row in rows]


def authenticate(conn: psycopg.Connection[Row], key: str) -> ApiKey | None:
    """The stored key a client presents (revoked ones too: the caller says why it refuses).

    Its ``last_used_at`` is brought up to date when it is more than a minute
    old, except on a read-only database (a standby serving reads), where the
    key is still checked. ``conn`` must be in autocommit mode.
    """
    if not looks_like_key(key):
        return None  # no lookup for what cannot be a key
    params = {"key_sha256": digest(key)}
    try:
        row = conn.execute(QUERIES["authenticate_key"], params).fetchone()
    except psycopg.errors.ReadOnlySqlTransaction:
        row = conn.execute(QUERIES["find_key"], params).fetchone()
    return None if row is None else ApiKey(**row)


def looks_like_key(text: str) -> bool:
    """Whether ``text`` has the shape of the keys made here (the mark, 43 URL-safe characters)."""
    return (
        len(text) == KEY_LENGTH
        and text.startswith(KEY_MARK)
        and all(c in _URLSAFE for c in text[len(KEY_MARK) :])
    )


def revoke(conn: psycopg.Connection[Row], key: str) -> list[ApiKey]:
    """Revoke the key with this id or prefix; the keys it matched (none: nothing changed)."""
    return [ApiKey(**row) for row in conn.execute(QUERIES["revoke_keys"], {"key": key})]
