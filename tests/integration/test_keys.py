"""`eventflo keys`: a key is printed once, stored only as its hash, listed and revoked."""

from __future__ import annotations

import hashlib
import json
import os

from eventflo import devstate
from tests.integration.conftest import assert_clean_exit, cli_env


def _create(invoke, *args):
    result = invoke("keys", "create", *args)
    assert_clean_exit(result, 0)
    return result.stdout.strip()


def test_a_key_is_shown_once_and_only_its_hash_is_stored(invoke, conn):
    key = _create(invoke, "--name", "billing service", "--scope", "ingest")
    assert key.startswith("efk_") and len(key) == 47
    row = conn.execute("SELECT * FROM api_keys").fetchone()
    assert (row["name"], row["scope"], row["prefix"]) == ("billing service", "ingest", key[:12])
    assert bytes(row["key_sha256"]) == hashlib.sha256(key.encode()).digest()
    stored = json.dumps({k: str(v) for k, v in row.items()})
    assert key not in stored and key[12:] not in stored
    # Listing never shows it again.
    listed = invoke("keys", "list", "--json")
    assert_clean_exit(listed, 0)
    assert key[12:] not in listed.output
    (entry,) = json.loads(listed.output)
    assert (entry["name"], entry["scope"]) == ("billing service", "ingest")
    assert entry["prefix"] == key[:12]


def test_every_key_is_different_and_the_default_scope_is_ingest(invoke, conn):
    first, second = _create(invoke, "--name", "a"), _create(invoke, "--name", "a")
    assert first != second
    scopes = {row["scope"] for row in conn.execute("SELECT scope::text FROM api_keys")}
    assert scopes == {"ingest"}


def test_revoking_by_prefix_or_id_hides_the_key_from_the_list(invoke, conn):
    kept = _create(invoke, "--name", "kept", "--scope", "read")
    gone = _create(invoke, "--name", "gone", "--scope", "admin")
    revoked = invoke("keys", "revoke", gone[:12] + "…")
    assert_clean_exit(revoked, 0)
    assert "gone" in revoked.output
    names = [entry["name"] for entry in json.loads(invoke("keys", "list", "--json").output)]
    assert names == ["kept"]
    everything = json.loads(invoke("keys", "list", "--json", "--all").output)
    assert {e["name"]: e["revoked_at"] is not None for e in everything} == {
        "kept": False,
        "gone": True,
    }
    key_id = everything[0]["id"] if everything[0]["name"] == "kept" else everything[1]["id"]
    assert_clean_exit(invoke("keys", "revoke", key_id), 0)
    assert json.loads(invoke("keys", "list", "--json").output) == []
    assert kept  # revoked by id, not by its text


def test_bad_input_is_a_clear_error(invoke):
    assert_clean_exit(invoke("keys", "create", "--name", "x", "--scope", "root"), 2)
    assert_clean_exit(invoke("keys", "create", "--name", ""), 2)
    assert_clean_exit(invoke("keys", "create"), 2)
    unknown = invoke("keys", "revoke", "efk_nothing")
    assert_clean_exit(unknown, 1)
    assert "no key" in unknown.output


def test_an_unreachable_database_is_one_line_and_exit_1(invoke):
    result = invoke("keys", "list", env=cli_env("postgresql://nobody@127.0.0.1:1/nothing"))
    assert_clean_exit(result, 1)
    assert "database unavailable" in result.output


NOT_CHECKED = "note: keys are not checked in this mode"


def test_create_says_when_keys_are_not_checked(invoke, database_url, tmp_path):
    checked = invoke("keys", "create", "--name", "a", env=cli_env(database_url))
    assert_clean_exit(checked, 0)
    assert NOT_CHECKED not in checked.stderr

    auth_off = invoke("keys", "create", "--name", "a", env=cli_env(database_url, auth="off"))
    assert_clean_exit(auth_off, 0)
    assert f"{NOT_CHECKED} (EVENTFLO_AUTH=off)" in auth_off.stderr

    # A running `eventflo dev` (in .eventflo/ where invoke runs) turned auth off for its API.
    data_dir = tmp_path / ".eventflo" / "pgdata"
    with devstate.held(data_dir) as lock:
        lock.write(devstate.DevState(os.getpid(), 8123, str(data_dir), database_url, auth=False))
        for env in (cli_env(), cli_env(database_url)):
            via_dev = invoke("keys", "create", "--name", "a", env=env)
            assert_clean_exit(via_dev, 0)
            assert via_dev.stdout.startswith("efk_")
            assert (
                f"{NOT_CHECKED} (the `eventflo dev` on port 8123 runs with EVENTFLO_AUTH=off)"
                in via_dev.stderr
            )
