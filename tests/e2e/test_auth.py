"""API keys as an operator meets them: `eventflo serve` with auth on, keys from the CLI."""

from __future__ import annotations

import pytest
import requests

from tests.e2e.conftest import eventflo, free_port, start_worker, wait_for

pytestmark = pytest.mark.e2e


def test_a_key_from_the_cli_opens_the_api_and_revoking_it_closes_it(children, child_env):
    port = free_port()
    api = children.start("api", "-m", "eventflo", "serve", "--port", str(port), "--workers", "2")
    base = f"http://127.0.0.1:{port}"
    with requests.Session() as session:
        wait_for(
            lambda: _answers(session, f"{base}/healthz"),
            timeout=30,
            what="the API's /healthz",
            interval=0.1,
        )
        assert "no API key exists yet" in api.log()
        event = {"event_type": "payment_failed", "payload": {"amount": 1500}}
        refused = session.post(f"{base}/events", json=event, timeout=10)
        assert refused.status_code == 401
        assert refused.headers["Content-Type"] == "application/problem+json"

        producer = eventflo(child_env, "keys", "create", "--name", "billing").strip()
        reader = eventflo(child_env, "keys", "create", "--name", "ops", "--scope", "read").strip()
        start_worker(children)
        posted = session.post(
            f"{base}/events",
            json=event,
            headers={"Authorization": f"Bearer {producer}"},
            timeout=10,
        )
        assert posted.status_code == 202, posted.text
        location = base + posted.headers["Location"]
        read = session.get(
            location,
            params={"wait": "10"},
            headers={"Authorization": f"Bearer {reader}"},
            timeout=20,
        )
        assert read.status_code == 200 and read.json()["status"] == "completed", read.text

        listed = eventflo(child_env, "keys", "list")
        assert "billing" in listed and "ops" in listed and producer[12:] not in listed

        # A key sent the wrong way (Basic auth's user name, as `curl -u KEY:` does): refused.
        basic = session.get(f"{base}/events", auth=(reader, ""), timeout=10)
        assert basic.status_code == 401

        eventflo(child_env, "keys", "revoke", producer[:12])
        again = session.post(
            f"{base}/events",
            json=event,
            headers={"Authorization": f"Bearer {producer}"},
            timeout=10,
        )
        assert again.status_code == 401
        assert "has been revoked" in again.json()["detail"]
    # Neither key was ever written to the API's log (gunicorn's access log included).
    assert producer[12:] not in api.log() and reader[12:] not in api.log()


def _answers(session: requests.Session, url: str) -> bool:
    try:
        return session.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False
