"""``eventflo deliveries list|replay``: the outbox as operators see it, and sending again."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.integration.conftest import assert_clean_exit


@pytest.fixture
def outbox(conn):
    """Endpoints ops and chat, with deliveries in every status; {name: [ids]} by status."""
    conn.execute(
        "INSERT INTO endpoints (name, url, format) VALUES"
        " ('ops', 'https://ops.example/', 'slack'), ('chat', 'https://chat.example/', 'slack')"
    )
    made: dict[str, list[uuid.UUID]] = {}
    rows = [
        ("ops", "failed", "2 days"),
        ("ops", "failed", "1 hour"),
        ("ops", "delivered", "1 hour"),
        ("ops", "pending", "1 minute"),
        ("chat", "failed", "1 hour"),
    ]
    for endpoint, status, age in rows:
        row = conn.execute(
            "INSERT INTO deliveries (endpoint_id, event_id, result, status, attempts,"
            " last_status_code, created_at, delivered_at)"
            " SELECT id, gen_random_uuid(), '{}', %s::delivery_status, 8, 500,"
            " now() - %s::interval, CASE WHEN %s = 'delivered' THEN now() END"
            " FROM endpoints WHERE name = %s RETURNING id",
            [status, age, status, endpoint],
        ).fetchone()
        made.setdefault(f"{endpoint} {status}", []).append(row["id"])
    return made


def _status(conn, delivery_id):
    return conn.execute(
        "SELECT status::text AS status, attempts, run_at <= now() AS due, delivered_at"
        " FROM deliveries WHERE id = %s",
        [delivery_id],
    ).fetchone()


def test_list_shows_the_newest_first_with_filters(invoke, outbox):
    everything = invoke("deliveries", "list", "--json")
    assert_clean_exit(everything, 0)
    assert len(json.loads(everything.stdout)) == 5
    failed_ops = json.loads(
        invoke("deliveries", "list", "--endpoint", "ops", "--status", "failed", "--json").stdout
    )
    assert [d["id"] for d in failed_ops] == [str(i) for i in reversed(outbox["ops failed"])]
    assert {(d["endpoint"], d["status"], d["attempts"]) for d in failed_ops} == {
        ("ops", "failed", 8)
    }
    table = invoke("deliveries", "list", "--status", "pending").stdout.splitlines()
    assert len(table) == 1 and "ops" in table[0] and "pending" in table[0]
    assert invoke("deliveries", "list", "--endpoint", "chat", "--status", "pending").stdout == (
        "no deliveries\n"
    )
    unknown = invoke("deliveries", "list", "--endpoint", "nope")
    assert_clean_exit(unknown, 1)
    assert "no endpoint is named 'nope'" in unknown.output


def test_replay_one_by_id_whatever_its_status(invoke, conn, outbox):
    (delivered,) = outbox["ops delivered"]
    replayed = invoke("deliveries", "replay", "--id", str(delivered))
    assert_clean_exit(replayed, 0)
    assert dict(_status(conn, delivered)) == {
        "status": "pending",
        "attempts": 0,
        "due": True,
        "delivered_at": None,
    }
    missing = invoke("deliveries", "replay", "--id", str(uuid.uuid4()))
    assert_clean_exit(missing, 1)
    assert "no delivery has the id" in missing.output
    bad = invoke("deliveries", "replay", "--id", "nope")
    assert bad.exit_code == 2 and "is not a delivery id" in bad.output


def test_a_delivery_being_sent_is_not_replayed(invoke, conn, outbox):
    (pending,) = outbox["ops pending"]
    conn.execute(
        "UPDATE deliveries SET locked_by = 'deliverer-a', locked_until = now() + interval '1 min'"
        " WHERE id = %s",
        [pending],
    )
    busy = invoke("deliveries", "replay", "--id", str(pending))
    assert_clean_exit(busy, 1)
    assert "is being sent right now" in busy.output


def test_replay_an_endpoints_failed_deliveries(invoke, conn, outbox):
    dry = invoke("deliveries", "replay", "--endpoint", "ops", "--status", "failed", "--dry-run")
    assert_clean_exit(dry, 0)
    assert dry.stdout.strip() == "would replay 2 failed deliveries to 'ops'"
    assert all(_status(conn, i)["status"] == "failed" for i in outbox["ops failed"])

    since = invoke(
        "deliveries", "replay", "--endpoint", "ops", "--status", "failed",
        "--since", "2000-01-01T00:00:00Z", "--yes",
    )  # fmt: skip
    assert_clean_exit(since, 0)
    assert "replayed 2 failed deliveries to 'ops'" in since.stdout
    assert all(_status(conn, i)["status"] == "pending" for i in outbox["ops failed"])
    assert _status(conn, outbox["chat failed"][0])["status"] == "failed"  # another endpoint
    again = invoke("deliveries", "replay", "--endpoint", "ops", "--status", "failed")
    assert "nothing to replay: 0 failed deliveries" in again.stdout


def test_replay_since_takes_only_the_newer_ones(invoke, conn, outbox):
    old, new = outbox["ops failed"]
    cutoff = conn.execute("SELECT now() - interval '1 day' AS t").fetchone()["t"].isoformat()
    result = invoke(
        "deliveries", "replay", "--endpoint", "ops", "--status", "failed", "--since", cutoff
    )
    assert_clean_exit(result, 0)
    assert (_status(conn, old)["status"], _status(conn, new)["status"]) == ("failed", "pending")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give either --id ID, or --endpoint NAME --status failed"),
        (["--id", str(uuid.UUID(int=1)), "--endpoint", "ops"], "give either --id ID"),
        (["--endpoint", "ops"], "--endpoint needs --status failed"),
        (["--id", str(uuid.UUID(int=1)), "--status", "failed"], "go with --endpoint"),
        (["--endpoint", "ops", "--status", "delivered"], "Invalid value for '--status'"),
    ],
)
def test_replay_refuses_unclear_requests(invoke, conn, outbox, args, message):
    result = invoke("deliveries", "replay", *args)
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output


def test_replaying_many_asks_first(invoke, conn, outbox):
    declined = invoke(
        "deliveries", "replay", "--endpoint", "ops", "--status", "failed", "--confirm-above", "1",
        input="n\n",
    )  # fmt: skip
    assert declined.exit_code == 1
    assert all(_status(conn, i)["status"] == "failed" for i in outbox["ops failed"])
