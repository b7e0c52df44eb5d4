"""Rule versions in PostgreSQL: store a rule set as the next version, activate, roll back, read.

A version is immutable; exactly one is active. Applying and rolling back
take the active row FOR UPDATE first, in one transaction with everything
they write: two at once run one after the other (numbers stay sequential),
and each waits for the claims in flight, which read that row FOR KEY SHARE
(see ``claim_events``). So a claim that commits after an activation
commits always carries the new number.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import hashlib
from typing import Any

import psycopg

from eventflo import rules
from eventflo.sql import load

QUERIES = load("rules.sql")

CHANNEL = "eventflo_rules"

Row = dict[str, Any]


class UnknownVersion(LookupError):
    """No stored version has this number."""

    def __init__(self, version: int) -> None:
        self.version = version
        super().__init__(f"there is no rule version {version}")


@dataclasses.dataclass(frozen=True)
class Version:
    """A stored version (``text`` empty when listed: listings do not carry the files)."""

    version: int
    sha256: str
    message: str
    created_by: str
    created_at: dt.datetime
    active: bool
    text: str = ""

    @classmethod
    def of(cls, row: Row) -> Version:
        return cls(
            version=row["version"],
            sha256=row["sha256"],
            message=row["message"],
            created_by=row["created_by"],
            created_at=row["created_at"],
            active=row["active"],
            text=row.get("rules_text", ""),
        )


@dataclasses.dataclass(frozen=True)
class Activation:
    """What an apply or rollback did: ``changed`` is False when the version was already active."""

    version: int
    previous: int
    changed: bool


def sha256(rule_set: rules.RuleSet) -> str:
    """The hash of the canonical form: the same rules hash alike whatever the comments."""
    return hashlib.sha256(rule_set.canonical().encode("utf-8")).hexdigest()


def who() -> str | None:
    """The OS user running this process; None lets the database name its role instead."""
    try:
        return getpass.getuser()[:255] or None
    except (OSError, KeyError):  # no user name in the environment or the password file
        return None


def apply(
    conn: psycopg.Connection[Row], rule_set: rules.RuleSet, *, message: str, created_by: str | None
) -> Activation:
    """Store ``rule_set`` as the next version and make it active, in one transaction.

    A rule set identical (same sha256) to the active version stores nothing.
    """
    digest = sha256(rule_set)
    with conn.transaction():
        active = _lock_active(conn)
        if active["sha256"] == digest:
            return Activation(active["version"], active["version"], changed=False)
        stored = conn.execute(
            QUERIES["insert_version"],
            {
                "sha256": digest,
                "rules_text": rule_set.text,
                "message": message,
                "created_by": created_by,
            },
        ).fetchone()
        assert stored is not None
        _activate(conn, stored["version"], active["version"], "apply", created_by)
    return Activation(stored["version"], active["version"], changed=True)


def rollback(
    conn: psycopg.Connection[Row], version: int, *, activated_by: str | None
) -> Activation:
    """Make the stored ``version`` active again; UnknownVersion when there is none."""
    with conn.transaction():
        active = _lock_active(conn)
        if conn.execute(QUERIES["get_version"], {"version": version}).fetchone() is None:
            raise UnknownVersion(version)
        if active["version"] == version:
            return Activation(version, version, changed=False)
        _activate(conn, version, active["version"], "rollback", activated_by)
    return Activation(version, active["version"], changed=True)


def version_of(conn: psycopg.Connection[Row], rule_set: rules.RuleSet) -> int:
    """The version a pinned rule set's results record: the oldest with its sha256, else a new one.

    A new one is stored but not activated (a test's or the bench's own rules).
    """
    digest = sha256(rule_set)
    with conn.transaction():
        found = stored_version(conn, rule_set)
        if found is not None:
            return found
        _lock_active(conn)  # numbers stay sequential beside applies
        stored = conn.execute(
            QUERIES["insert_version"],
            {
                "sha256": digest,
                "rules_text": rule_set.text,
                "message": "stored for a process pinned to these rules",
                "created_by": who(),
            },
        ).fetchone()
        assert stored is not None
        return int(stored["version"])


def stored_version(conn: psycopg.Connection[Row], rule_set: rules.RuleSet) -> int | None:
    """The oldest stored version with ``rule_set``'s sha256; None when it was never stored."""
    row = conn.execute(
        QUERIES["first_version_with_sha256"], {"sha256": sha256(rule_set)}
    ).fetchone()
    return None if row is None or row["version"] is None else int(row["version"])


def active_number(conn: psycopg.Connection[Row]) -> int:
    """The active version's number (one primary-key read)."""
    row = conn.execute(QUERIES["active_version_number"]).fetchone()
    assert row is not None, "migration 0008 stores an active version"
    return int(row["version"])


def active(conn: psycopg.Connection[Row]) -> Version:
    """The active version, with its text."""
    row = conn.execute(QUERIES["get_active_version"]).fetchone()
    assert row is not None, "migration 0008 stores an active version"
    return Version.of(row)


def get(conn: psycopg.Connection[Row], version: int) -> Version:
    """One stored version with its text; UnknownVersion when there is none."""
    row = conn.execute(QUERIES["get_version"], {"version": version}).fetchone()
    if row is None:
        raise UnknownVersion(version)
    return Version.of(row)


def listing(conn: psycopg.Connection[Row]) -> list[Version]:
    """Every version, oldest first, without the texts."""
    return [Version.of(row) for row in conn.execute(QUERIES["list_versions"]).fetchall()]


def _lock_active(conn: psycopg.Connection[Row]) -> Row:
    """The active row, locked until the transaction ends: its version and sha256."""
    row = conn.execute(QUERIES["lock_active"]).fetchone()
    assert row is not None, "migration 0008 stores an active version"
    # A statement of its own: under READ COMMITTED it sees the version the
    # activation we may have waited for stored.
    sha = conn.execute(QUERIES["version_sha256"], {"version": row["version"]}).fetchone()
    assert sha is not None, "the active version is a stored one (foreign key)"
    return {"version": row["version"], "sha256": sha["sha256"]}


def _activate(
    conn: psycopg.Connection[Row], version: int, previous: int, action: str, by: str | None
) -> None:
    conn.execute(
        QUERIES["activate"],
        {"version": version, "previous_version": previous, "action": action, "activated_by": by},
    )
