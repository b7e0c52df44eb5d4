"""What deliveries send: Standard Webhooks (verified by its own library), Slack, PagerDuty."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from eventflo import endpoints, webhooks

EVENT = {
    "event_id": "01a2372a-de18-7287-a198-647b576e8bb6",
    "event_type": "disk_full",
    "source": "db1",
    "payload": {"percent": 95, "host": "db1 <@channel>"},
    "created_at": "2026-12-02T14:00:00+00:00",
}
RESULT = {
    "severity": "CRITICAL",
    "classification_reason": "Disk on db1 is 95% full",
    "recommendation": "Free space or grow the volume",
    "should_escalate": True,
    "rule": "disk_full.critical",
    "rules_version": 2,
}
MADE_AT = dt.datetime(2026, 12, 2, 14, 0, 1, 500000, tzinfo=dt.UTC)
DELIVERY = webhooks.Delivery("01a2372b-0000-7000-8000-000000000001", EVENT, RESULT, MADE_AT)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_a_standard_request_verifies_with_the_standard_webhooks_library():
    secret = endpoints.new_secret()
    request = webhooks.standard(DELIVERY, secrets=[secret], now=now())
    headers = dict(request.headers)
    assert headers["webhook-id"] == DELIVERY.delivery_id
    assert headers["content-type"] == "application/json"
    assert headers["webhook-signature"].startswith("v1,")
    body = Webhook(secret).verify(request.body, headers)
    assert body["type"] == "event.judged"
    assert body["data"] == {"event": EVENT, "result": RESULT}
    assert body["timestamp"] == "2026-12-02T14:00:01.500000+00:00"  # when it was made


def test_every_attempt_sends_the_same_body_under_its_own_timestamp():
    """A receiver that saw a webhook-id once gets the very same message again, re-signed."""
    secret = endpoints.new_secret()
    first = webhooks.standard(DELIVERY, secrets=[secret], now=now())
    later = webhooks.standard(DELIVERY, secrets=[secret], now=now() + dt.timedelta(minutes=30))
    assert first.body == later.body
    assert first.headers["webhook-id"] == later.headers["webhook-id"]
    stamps = [int(r.headers["webhook-timestamp"]) for r in (first, later)]
    assert stamps[1] - stamps[0] in (1799, 1800, 1801)
    assert first.headers["webhook-signature"] != later.headers["webhook-signature"]


def test_a_changed_body_or_another_secret_does_not_verify():
    secret = endpoints.new_secret()
    request = webhooks.standard(DELIVERY, secrets=[secret], now=now())
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(request.body.replace(b"95", b"96"), dict(request.headers))
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoints.new_secret()).verify(request.body, dict(request.headers))


def test_during_a_rotation_both_secrets_verify():
    old, new = endpoints.new_secret(), endpoints.new_secret()
    request = webhooks.standard(DELIVERY, secrets=[new, old], now=now())
    signatures = request.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    for secret in (new, old):
        Webhook(secret).verify(request.body, dict(request.headers))


def test_the_signature_is_the_specifications_hmac():
    """v1, base64(HMAC-SHA256(secret, id.timestamp.body)): what any receiver can compute."""
    secret = endpoints.new_secret()
    request = webhooks.standard(DELIVERY, secrets=[secret], now=now())
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{DELIVERY.delivery_id}.{request.headers['webhook-timestamp']}.".encode()
    expected = hmac.new(key, signed + request.body, hashlib.sha256).digest()
    assert request.headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()


def test_the_webhook_id_is_the_same_on_every_attempt_and_the_timestamp_is_the_attempts():
    secret = endpoints.new_secret()
    first = webhooks.standard(DELIVERY, secrets=[secret], now=now())
    later = webhooks.standard(DELIVERY, secrets=[secret], now=now() + dt.timedelta(seconds=5))
    assert first.headers["webhook-id"] == later.headers["webhook-id"]
    assert int(later.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) in (
        4,
        5,
        6,
    )


def test_a_standard_request_without_a_secret_is_refused():
    with pytest.raises(ValueError, match="at least one secret"):
        webhooks.standard(DELIVERY, secrets=[], now=now())


def test_a_slack_message_names_severity_reason_recommendation_and_the_event():
    linked = webhooks.Delivery(
        DELIVERY.delivery_id, EVENT, RESULT, MADE_AT, "https://eventflo.example/events/01a2"
    )
    body = json.loads(webhooks.slack(linked).body)
    assert body["text"] == "CRITICAL (escalated): disk_full: Disk on db1 is 95% full"
    header, fields, context = body["blocks"]
    assert header == {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": "*CRITICAL (escalated): disk_full: Disk on db1 is 95% full*",
        },
    }
    assert [f["text"] for f in fields["fields"]] == [
        "*Severity*\nCRITICAL",
        "*Rule*\ndisk_full.critical",
        "*Reason*\nDisk on db1 is 95% full",
        "*Recommendation*\nFree space or grow the volume",
    ]
    (element,) = context["elements"]
    assert element["text"] == (
        f"Event <https://eventflo.example/events/01a2|{EVENT['event_id']}> from db1,"
        " judged by rules version 2"
    )


def test_slack_text_from_events_cannot_mention_or_link():
    result = {**RESULT, "classification_reason": "Disk <!channel> on <https://evil.example|x>"}
    body = json.loads(webhooks.slack(webhooks.Delivery("d", EVENT, result, MADE_AT)).body)
    reason = body["blocks"][1]["fields"][2]["text"]
    assert "<!channel>" not in reason and "&lt;!channel&gt;" in reason
    assert "<https://evil" not in reason
    assert "<!channel>" not in body["text"] and "<https://evil" not in body["text"]


def test_a_pagerduty_trigger_deduplicates_on_the_event_and_maps_the_severity():
    body = json.loads(webhooks.pagerduty(DELIVERY, routing_key="R0123456789abcdef").body)
    assert body["routing_key"] == "R0123456789abcdef"
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == EVENT["event_id"]
    payload = body["payload"]
    assert payload["summary"] == "CRITICAL: disk_full: Disk on db1 is 95% full"
    assert (payload["source"], payload["severity"], payload["component"]) == (
        "db1",
        "critical",
        "disk_full",
    )
    assert payload["timestamp"] == EVENT["created_at"]
    assert payload["custom_details"]["recommendation"] == RESULT["recommendation"]
    assert payload["custom_details"]["payload"] == EVENT["payload"]
    assert "links" not in body


@pytest.mark.parametrize(
    ("severity", "pagerduty"),
    [("CRITICAL", "critical"), ("HIGH", "error"), ("WARNING", "warning"), ("LOW", "info")],
)
def test_every_severity_maps_to_pagerdutys(severity, pagerduty):
    delivery = webhooks.Delivery(
        "d", {**EVENT, "source": None}, {**RESULT, "severity": severity}, MADE_AT
    )
    body = json.loads(webhooks.pagerduty(delivery, routing_key="k").body)
    assert body["payload"]["severity"] == pagerduty
    assert body["payload"]["source"] == "eventflo"  # required by PagerDuty: never empty


def test_a_long_reason_is_clipped_to_pagerdutys_limit():
    long = {**RESULT, "classification_reason": "x" * 5000}
    body = json.loads(
        webhooks.pagerduty(webhooks.Delivery("d", EVENT, long, MADE_AT), routing_key="k").body
    )
    assert len(body["payload"]["summary"]) == 1024 and body["payload"]["summary"].endswith("…")
