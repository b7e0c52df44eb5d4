"""Marshmallow schemas at the HTTP edge: they validate requests and document the API."""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

import flask
import marshmallow as ma
from marshmallow import fields, validate

from eventflo import appstate, problems
from eventflo.activerules import VersionedRules
from eventflo.events import STATUSES, Cursor

EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_.-]{0,99}$"


class FullMatch(validate.Regexp):
    """A Regexp that must match the whole value: Python's ``$`` also matches before a final newline.

    Without it ``"payment_failed\\n"`` passes here and fails the database's CHECK (a 500).
    """

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            raise ma.ValidationError(self._format_error(value))
        return value


class EventCreateSchema(ma.Schema):
    """The body of POST /events."""

    class Meta:
        unknown = ma.RAISE

    event_type = fields.String(
        required=True,
        validate=FullMatch(
            EVENT_TYPE_PATTERN,
            error="Must start with a lowercase letter and use only a-z, 0-9, '_', '.', '-' "
            "(at most 100 characters).",
        ),
        metadata={"example": "payment_failed"},
    )
    source = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1, max=200),
        metadata={"example": "billing"},
    )
    payload = fields.Dict(
        keys=fields.String(),
        load_default=dict,
        metadata={"example": {"amount": 1500}},
    )

    @ma.validates_schema
    def _payload_fits_the_rules(self, data: dict[str, Any], **kwargs: Any) -> None:
        """The rule set's declared fields must be present and well typed, or it cannot judge it."""
        if "event_type" in data and isinstance(data.get("payload"), dict):
            active = _rules_of_this_request()
            errors = active.rule_set.field_errors(data["event_type"], data["payload"])
            if errors:
                problems.note_rules_version(active.version)
                raise ma.ValidationError({"payload": {k: [v] for k, v in errors.items()}})


def _rules_of_this_request() -> VersionedRules:
    """The active rules, read once per request: every event of a batch meets the same version."""
    if "eventflo_rules" not in flask.g:
        flask.g.eventflo_rules = appstate.current().rules()
    rules: VersionedRules = flask.g.eventflo_rules
    return rules


MAX_BATCH_EVENTS = 1000


class BatchItemSchema(EventCreateSchema):
    """One event of POST /events/batch: an event plus its own optional idempotency key."""

    idempotency_key = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=255),
        metadata={"description": "Like the Idempotency-Key header of POST /events, per event"},
    )

    @ma.validates("idempotency_key")
    def _printable(self, value: str | None, **kwargs: Any) -> None:
        if value is not None and not value.isprintable():
            raise ma.ValidationError("Must be printable characters.")


class EventBatchSchema(ma.Schema):
    """The body of POST /events/batch."""

    class Meta:
        unknown = ma.RAISE

    events = fields.List(
        fields.Nested(BatchItemSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_BATCH_EVENTS),
        metadata={
            "description": f"1 to {MAX_BATCH_EVENTS} events, stored all together or not at all"
        },
    )

    @ma.validates_schema
    def _one_request_per_key(self, data: dict[str, Any], **kwargs: Any) -> None:
        """A key repeated inside one batch must name the same event, as it would across requests."""
        first_use: dict[str, tuple[int, Any]] = {}
        for index, item in enumerate(data.get("events", [])):
            key = item.get("idempotency_key")
            if key is None:
                continue
            request = (item["event_type"], item["source"], item["payload"])
            if key in first_use and first_use[key][1] != request:
                message = (
                    f"Already used by event {first_use[key][0]} of this batch"
                    " for a different event."
                )
                raise ma.ValidationError({"events": {index: {"idempotency_key": [message]}}})
            first_use.setdefault(key, (index, request))


class EventAcceptedSchema(ma.Schema):
    """The answer to POST /events."""

    event_id = fields.UUID(required=True)
    status = fields.String(required=True, metadata={"example": "queued"})


class BatchAcceptedItemSchema(EventAcceptedSchema):
    created = fields.Boolean(
        required=True,
        metadata={"description": "False when an idempotency key named an existing event"},
    )


class BatchAcceptedSchema(ma.Schema):
    """The answer to POST /events/batch, in the order of the request."""

    events = fields.List(fields.Nested(BatchAcceptedItemSchema), required=True)


class ResultSchema(ma.Schema):
    severity = fields.String(metadata={"example": "CRITICAL"})
    classification_reason = fields.String()
    recommendation = fields.String()
    should_escalate = fields.Boolean()
    rule = fields.String(metadata={"description": "The id of the rule that matched"})
    rules_version = fields.Integer(
        metadata={"description": "The rule version that judged the event", "example": 2}
    )
    processed_at = fields.DateTime()


class AttemptSchema(ma.Schema):
    attempt = fields.Integer()
    worker_id = fields.String()
    started_at = fields.DateTime()
    finished_at = fields.DateTime()
    outcome = fields.String(metadata={"example": "completed"})
    error = fields.String(allow_none=True)


class DeliverySummarySchema(ma.Schema):
    delivery_id = fields.UUID(
        metadata={"description": "Also the webhook-id a receiver sees, the same on every attempt"}
    )
    endpoint = fields.String(metadata={"description": "The endpoint's name"})
    status = fields.String(validate=validate.OneOf(("pending", "delivered", "failed")))
    attempts = fields.Integer()
    last_status_code = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    delivered_at = fields.DateTime(allow_none=True)


class EventSchema(ma.Schema):
    """One event as GET /events/{event_id} shows it."""

    event_id = fields.UUID()
    event_type = fields.String()
    source = fields.String(allow_none=True)
    status = fields.String(validate=validate.OneOf(STATUSES))
    payload = fields.Dict()
    attempts = fields.Integer(metadata={"description": "Attempts in the current run"})
    error_message = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    completed_at = fields.DateTime(allow_none=True)
    result = fields.Nested(ResultSchema, allow_none=True)
    history = fields.List(fields.Nested(AttemptSchema))
    deliveries = fields.List(
        fields.Nested(DeliverySummarySchema),
        metadata={"description": "Deliveries of its verdicts to endpoints, oldest first"},
    )


class EventSummarySchema(ma.Schema):
    """One row of GET /events."""

    event_id = fields.UUID()
    event_type = fields.String()
    status = fields.String()
    created_at = fields.DateTime()


class WaitArgsSchema(ma.Schema):
    """Query of GET /events/{event_id}."""

    wait = fields.Float(
        load_default=0.0,
        validate=validate.Range(min=0),
        metadata={"description": "Seconds to hold the answer until the event finishes (capped)"},
    )


class CursorField(fields.Field[Cursor]):
    """An opaque page cursor: the base64url of the last event id of the previous page.

    Opaque so that clients follow Link headers instead of building cursors,
    and the listing order can change without breaking them.
    """

    default_error_messages = {
        "invalid": "Not a valid cursor; use the Link header of a previous page."
    }

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"type": "string", **kwargs.pop("metadata", {})}  # its OpenAPI type
        super().__init__(metadata=metadata, **kwargs)

    @staticmethod
    def encode(cursor: Cursor) -> str:
        return base64.urlsafe_b64encode(cursor.event_id.bytes).decode().rstrip("=")

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Cursor:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            return Cursor(
                uuid.UUID(bytes=base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
            )
        except (binascii.Error, ValueError):
            raise self.make_error("invalid") from None


class ListArgsSchema(ma.Schema):
    """Query of GET /events."""

    limit = fields.Integer(
        load_default=20,
        validate=validate.Range(min=1),
        metadata={"description": "Page size (default 20; larger values are capped)"},
    )
    status = fields.String(load_default=None, validate=validate.OneOf(STATUSES))
    event_type = fields.String(load_default=None, validate=FullMatch(EVENT_TYPE_PATTERN))
    cursor = CursorField(load_default=None, metadata={"description": "From a Link rel=next header"})
