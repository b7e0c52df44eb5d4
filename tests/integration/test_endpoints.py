"""``eventflo endpoints``: register, list, show, disable, enable, remove, rotate-secret."""

from __future__ import annotations

import json
import re

import psycopg
import pytest

from tests.integration.conftest import assert_clean_exit, cli_env

SECRET = re.compile(r"^whsec_[A-Za-z0-9+/]{43}=$")
SLACK_URL = "https://hooks.slack.com/services/T0001/B0001/TopSecretToken"


@pytest.fixture
def endpoints(invoke, database_url):
    """``eventflo endpoints ...`` with private endpoints allowed, as in development."""
    env = cli_env(database_url, allow_private_endpoints="on")

    def run(*args: str, input: str | None = None):
        return invoke("endpoints", *args, env=env, input=input)

    return run


def _stored(conn, name: str):
    return conn.execute("SELECT * FROM endpoints WHERE name = %s", [name]).fetchone()


def _count(conn) -> int:
    return conn.execute("SELECT count(*) AS n FROM endpoints").fetchone()["n"]


def test_add_prints_the_secret_once_and_stores_what_was_asked(endpoints, conn):
    added = endpoints("add", "--name", "ops", "--url", "http://127.0.0.1:9000/hook")
    assert_clean_exit(added, 0)
    secret = added.stdout.strip()
    assert SECRET.match(secret)
    assert "shown only this once" in added.stderr
    row = _stored(conn, "ops")
    assert (row["url"], row["format"], row["filter"], row["enabled"]) == (
        "http://127.0.0.1:9000/hook",
        "standard",
        "result.should_escalate",
        True,
    )
    assert row["secret"] == secret
    for listing in (endpoints("list"), endpoints("list", "--json"), endpoints("show", "ops")):
        assert_clean_exit(listing, 0)
        assert secret not in listing.output and "whsec_" not in listing.output


def test_list_and_show_describe_each_endpoint(endpoints):
    endpoints("add", "--name", "ops", "--url", "http://127.0.0.1:9000/hook")
    endpoints(
        "add", "--name", "chat", "--format", "slack", "--url", SLACK_URL,
        "--filter", 'result.severity == "CRITICAL"',
    )  # fmt: skip
    listed = json.loads(endpoints("list", "--json").stdout)
    assert [e["name"] for e in listed] == ["chat", "ops"]
    chat = listed[0]
    assert (chat["format"], chat["filter"], chat["enabled"], chat["pending"]) == (
        "slack",
        'result.severity == "CRITICAL"',
        True,
        0,
    )
    table = endpoints("list").stdout.splitlines()
    assert table[0].split() == [
        "chat", "slack", "ok", "pending", "0", "failed", "0",
        "https://hooks.slack.com/services/T0001/B0001/…",
    ]  # fmt: skip
    shown = endpoints("show", "ops").stdout
    assert "filter:       result.should_escalate" in shown
    assert "last success: never" in shown and "no deliveries yet" in shown


def test_a_slack_token_and_a_routing_key_are_never_shown_whole(endpoints):
    endpoints("add", "--name", "chat", "--format", "slack", "--url", SLACK_URL)
    endpoints(
        "add", "--name", "pd", "--format", "pagerduty", "--routing-key", "R0123456789abcdef",
        "--url", "https://events.pagerduty.example/v2/enqueue?token=abc",
    )  # fmt: skip
    outputs = [endpoints("list").output, endpoints("list", "--json").output]
    outputs += [endpoints("show", name).output for name in ("chat", "pd")]
    outputs += [endpoints("show", name, "--json").output for name in ("chat", "pd")]
    for output in outputs:
        assert "TopSecretToken" not in output
        assert "R0123456789abcdef" not in output and "token=abc" not in output
    assert "routing key:  …cdef" in endpoints("show", "pd").output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "ftp://x.example/"], "must start with https://"),
        (["--url", "http://127.0.0.1/", "--filter", "result.sevrity"], "has no field 'sevrity'"),
        (["--url", "http://127.0.0.1/", "--filter", "result.severity"], "true or false"),
        (["--url", "http://127.0.0.1/", "--format", "pagerduty"], "needs a routing key"),
        (["--url", "http://127.0.0.1/", "--routing-key", "k"], "pagerduty format only"),
        (["--url", "http://127.0.0.1/", "--format", "teams"], "Invalid value for '--format'"),
    ],
)
def test_a_refused_endpoint_is_one_line_and_stores_nothing(endpoints, conn, args, message):
    refused = endpoints("add", "--name", "ops", *args)
    assert refused.exit_code != 0 and message in refused.output
    assert "Traceback" not in refused.output
    assert _count(conn) == 0


def test_private_and_plain_http_urls_are_refused_unless_allowed(invoke, database_url, conn):
    env = cli_env(database_url)
    for url, why in (
        ("http://127.0.0.1:9000/hook", "must start with https://"),
        ("https://127.0.0.1:9000/hook", "127.0.0.1, a loopback address"),
        ("https://10.0.0.7/hook", "10.0.0.7, a private address"),
        ("https://169.254.169.254/latest", "a cloud metadata service"),
    ):
        refused = invoke("endpoints", "add", "--name", "ops", "--url", url, env=env)
        assert_clean_exit(refused, 1)
        assert why in refused.output and "EVENTFLO_ALLOW_PRIVATE_ENDPOINTS=on" in refused.output
    assert _count(conn) == 0


def test_a_name_is_unique_and_well_formed(endpoints, conn):
    assert_clean_exit(endpoints("add", "--name", "ops", "--url", "http://127.0.0.1/"), 0)
    again = endpoints("add", "--name", "ops", "--url", "http://127.0.0.1/other")
    assert_clean_exit(again, 1)
    assert "an endpoint named 'ops' exists already" in again.output
    bad = endpoints("add", "--name", "on call", "--url", "http://127.0.0.1/")
    assert_clean_exit(bad, 1)
    assert "the name 'on call' is not valid" in bad.output
    assert _count(conn) == 1


def test_disable_and_enable(endpoints, conn):
    endpoints("add", "--name", "ops", "--url", "http://127.0.0.1/")
    disabled = endpoints("disable", "ops")
    assert_clean_exit(disabled, 0)
    row = _stored(conn, "ops")
    assert not row["enabled"] and row["disabled_reason"] == "disabled by an operator"
    assert "disabled" in endpoints("list").stdout
    conn.execute(
        "UPDATE endpoints SET failure_streak = 7, failing_since = now() WHERE name = 'ops'"
    )
    assert_clean_exit(endpoints("enable", "ops"), 0)
    assert conn.execute("SELECT disabled_reason FROM endpoints WHERE name = 'ops'").fetchone() == {
        "disabled_reason": None
    }
    row = _stored(conn, "ops")
    assert (row["enabled"], row["disabled_at"], row["failure_streak"], row["failing_since"]) == (
        True,
        None,
        0,
        None,
    )
    for command in ("disable", "enable", "remove", "rotate-secret", "show"):
        missing = endpoints(command, "nope")
        assert_clean_exit(missing, 1)
        assert "no endpoint is named 'nope'" in missing.output


def test_rotate_secret_keeps_the_old_one_signing_for_a_day(endpoints, conn):
    first = endpoints("add", "--name", "ops", "--url", "http://127.0.0.1/").stdout.strip()
    rotated = endpoints("rotate-secret", "ops")
    assert_clean_exit(rotated, 0)
    second = rotated.stdout.strip()
    assert SECRET.match(second) and second != first
    row = conn.execute(
        "SELECT secret, previous_secret,"
        " previous_secret_expires_at - updated_at AS overlap FROM endpoints WHERE name = 'ops'"
    ).fetchone()
    assert (row["secret"], row["previous_secret"]) == (second, first)
    assert row["overlap"].total_seconds() == 24 * 3600
    assert "the previous secret also signs until" in endpoints("show", "ops").stdout
    endpoints("add", "--name", "chat", "--format", "slack", "--url", SLACK_URL)
    unsigned = endpoints("rotate-secret", "chat")
    assert_clean_exit(unsigned, 1)
    assert "has the slack format, which is not signed" in unsigned.output


def _pending_delivery(conn, endpoint: str) -> None:
    conn.execute(
        "INSERT INTO deliveries (endpoint_id, event_id, result)"
        " SELECT id, gen_random_uuid(), '{}'::jsonb FROM endpoints WHERE name = %s",
        [endpoint],
    )


def test_remove_asks_when_deliveries_wait_and_takes_them_along(endpoints, conn):
    endpoints("add", "--name", "ops", "--url", "http://127.0.0.1/")
    _pending_delivery(conn, "ops")
    assert "pending 1" in endpoints("list").stdout
    declined = endpoints("remove", "ops", input="n\n")
    assert declined.exit_code == 1 and "1 pending deliveries" in declined.output
    assert _count(conn) == 1
    removed = endpoints("remove", "ops", "--yes")
    assert_clean_exit(removed, 0)
    assert "removed endpoint 'ops' and its 1 deliveries" in removed.output
    assert _count(conn) == 0
    assert conn.execute("SELECT count(*) AS n FROM deliveries").fetchone()["n"] == 0


@pytest.mark.parametrize(
    "values",
    [
        "('pd', 'https://x.example/', 'pagerduty', NULL, NULL)",  # no routing key
        "('ops', 'https://x.example/', 'standard', NULL, NULL)",  # no secret
        "('ops', 'https://x.example/', 'slack', NULL, 'whsec_" + "A" * 43 + "=')",  # a secret
        "('ops', 'gopher://x.example/', 'slack', NULL, NULL)",
        "('-ops', 'https://x.example/', 'slack', NULL, NULL)",
    ],
)
def test_the_table_refuses_an_inconsistent_endpoint(conn, values):
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            f"INSERT INTO endpoints (name, url, format, routing_key, secret) VALUES {values}"
        )


def test_an_upper_case_scheme_is_stored_in_lower_case(endpoints, conn):
    added = endpoints("add", "--name", "ops", "--url", "HTTP://127.0.0.1:9000/Hook")
    assert_clean_exit(added, 0)
    assert _stored(conn, "ops")["url"] == "http://127.0.0.1:9000/Hook"


def test_a_refused_url_is_not_repeated(invoke, database_url):
    refused = invoke(
        "endpoints", "add", "--name", "ops", "--url", "http://user:s3cret@127.0.0.1/hook",
        env=cli_env(database_url),
    )  # fmt: skip
    assert_clean_exit(refused, 1)
    assert "s3cret" not in refused.output and "the URL is refused" in refused.output


def test_an_ended_rotation_is_not_shown(endpoints, conn):
    endpoints("add", "--name", "ops", "--url", "http://127.0.0.1/")
    endpoints("rotate-secret", "ops")
    conn.execute("UPDATE endpoints SET previous_secret_expires_at = now() - interval '1 second'")
    assert "rotation" not in endpoints("show", "ops").stdout
    assert json.loads(endpoints("show", "ops", "--json").stdout)["rotation_ends_at"] is None


def test_show_lists_pending_failed_and_recent_deliveries(endpoints, conn):
    endpoints("add", "--name", "ops", "--url", "http://127.0.0.1/")
    for status, age in (("pending", "2 days"), ("failed", "2 days"), ("delivered", "2 days")):
        conn.execute(
            "INSERT INTO deliveries (id, endpoint_id, event_id, result, status, delivered_at)"
            " SELECT (lpad(to_hex((extract(epoch FROM now() - %s::interval) * 1000)::bigint),"
            "  12, '0') || '7000800000000000' || lpad(to_hex(%s::integer), 4, '0'))::uuid,"
            " id, gen_random_uuid(), '{}', %s::delivery_status,"
            " CASE WHEN %s = 'delivered' THEN now() END FROM endpoints",
            [age, len(status), status, status],
        )
    _pending_delivery(conn, "ops")  # made now
    shown = json.loads(endpoints("show", "ops", "--json").stdout)["recent_deliveries"]
    # The old delivered one is not shown: only pending, failed and the last hour's.
    assert sorted(d["status"] for d in shown) == ["failed", "pending", "pending"]
