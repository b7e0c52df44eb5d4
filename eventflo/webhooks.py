"""What a delivery sends: the request of each endpoint format, signed for the standard one.

- ``standard``: a Standard Webhooks request (https://www.standardwebhooks.com/).
  The body is ``{"type": "event.judged", "timestamp", "data": {"event", "result"}}``,
  the same bytes on every attempt (its timestamp is when the delivery was made);
  the headers are ``webhook-id`` (the delivery's id, the same on every
  attempt, so receivers can dedupe), ``webhook-timestamp`` (this attempt's
  Unix time) and ``webhook-signature``: ``v1,`` and the base64 HMAC-SHA256
  of ``id.timestamp.body`` with the endpoint's secret; during a rotation one
  such signature per secret, separated by a space, the new one first.
  Signing is the ``standardwebhooks`` package's, the reference
  implementation receivers verify with.
- ``slack``: an incoming-webhook message, ``text`` (what notifications show)
  and ``blocks`` naming severity, reason, recommendation and the event.
- ``pagerduty``: an Events API v2 ``trigger`` with the routing key, the
  event id as ``dedup_key`` (so retries and replays of one event make one
  incident) and the severity mapped to PagerDuty's.

Pure: no network, no database, no clock but the times given.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from standardwebhooks import Webhook

import eventflo

EVENT_TYPE = "event.judged"
USER_AGENT = f"EventFlo/{eventflo.__version__}"
PAGERDUTY_SEVERITY = {"CRITICAL": "critical", "HIGH": "error", "WARNING": "warning", "LOW": "info"}
PAGERDUTY_SUMMARY_CHARS = 1024  # the Events API v2 limit
SLACK_TEXT_CHARS = 3000  # a section block's text limit

Json = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Request:
    """A delivery attempt's request: POSTed as it is."""

    body: bytes
    headers: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class Delivery:
    """What one delivery carries: its id, the event and the verdict it was made for."""

    delivery_id: str
    event: Json  # event_id, event_type, source, payload, created_at (ISO 8601)
    result: Json  # as outbox.result_json: severity, classification_reason, …, rules_version
    # When the delivery was made (its verdict committed): the body's timestamp, so every
    # attempt and replay sends the same bytes under the same webhook-id.
    made_at: dt.datetime
    event_url: str | None = None  # where people can look at the event, when EventFlo knows


def _json(document: Json) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def standard(delivery: Delivery, *, secrets: Sequence[str], now: dt.datetime) -> Request:
    """The signed Standard Webhooks request; ``secrets``: the current one first."""
    if not secrets:
        raise ValueError("a standard endpoint signs with at least one secret")
    made_at = delivery.made_at.astimezone(dt.UTC).isoformat()
    body = _json({"type": EVENT_TYPE, "timestamp": made_at, "data": _data(delivery)})
    timestamp = now.astimezone(dt.UTC)
    text = body.decode()
    signatures = " ".join(
        Webhook(secret).sign(delivery.delivery_id, timestamp, text) for secret in secrets
    )
    return Request(
        body,
        {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": delivery.delivery_id,
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": signatures,
        },
    )


def _data(delivery: Delivery) -> Json:
    data: Json = {"event": delivery.event, "result": delivery.result}
    if delivery.event_url is not None:
        data["event_url"] = delivery.event_url
    return data


def slack(delivery: Delivery) -> Request:
    """A Slack incoming-webhook message: a line for notifications, blocks for the channel."""
    event, result = delivery.event, delivery.result
    severity, reason = result["severity"], result["classification_reason"]
    escalated = " (escalated)" if result["should_escalate"] else ""
    headline = f"{severity}{escalated}: {event['event_type']}: {reason}"
    link = (
        f"<{delivery.event_url}|{event['event_id']}>"
        if delivery.event_url is not None
        else f"`{event['event_id']}`"
    )
    source = f" from {event['source']}" if event.get("source") else ""
    blocks: list[Json] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(f"*{_escape(headline)}*")}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Severity*\n{_escape(severity)}"},
                {"type": "mrkdwn", "text": f"*Rule*\n{_escape(result['rule'])}"},
                {"type": "mrkdwn", "text": _clip(f"*Reason*\n{_escape(reason)}", 2000)},
                {
                    "type": "mrkdwn",
                    "text": _clip(f"*Recommendation*\n{_escape(result['recommendation'])}", 2000),
                },
            ],
        },
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": _clip(
                        f"Event {link}{_escape(source)}, judged by rules version"
                        f" {result['rules_version']}"
                    ),
                }
            ],
        },
    ]
    return Request(
        _json({"text": _clip(_escape(headline)), "blocks": blocks}),
        {"content-type": "application/json", "user-agent": USER_AGENT},
    )


def _escape(text: str) -> str:
    """Slack's mrkdwn control characters, escaped as Slack asks: no mentions or links by text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int = SLACK_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pagerduty(delivery: Delivery, *, routing_key: str) -> Request:
    """A PagerDuty Events API v2 trigger; the event id deduplicates its incidents."""
    event, result = delivery.event, delivery.result
    summary = f"{result['severity']}: {event['event_type']}: {result['classification_reason']}"
    document: Json = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": event["event_id"],
        "payload": {
            "summary": _clip(summary, PAGERDUTY_SUMMARY_CHARS),
            "source": event.get("source") or "eventflo",
            "severity": PAGERDUTY_SEVERITY[result["severity"]],
            "timestamp": event["created_at"],
            "component": event["event_type"],
            "class": result["rule"],
            "custom_details": {
                "recommendation": result["recommendation"],
                "rule": result["rule"],
                "rules_version": result["rules_version"],
                "should_escalate": result["should_escalate"],
                "event_id": event["event_id"],
                "payload": event["payload"],
            },
        },
        "client": "EventFlo",
    }
    if delivery.event_url is not None:
        document["client_url"] = delivery.event_url
        document["links"] = [{"href": delivery.event_url, "text": "The event in EventFlo"}]
    return Request(_json(document), {"content-type": "application/json", "user-agent": USER_AGENT})
