"""Thin HTTP views: parse with the schemas, call the store, shape the answer.

A view's docstring is its summary in /openapi.json and /docs: plain text, no reST markup.
"""

from __future__ import annotations

import urllib.parse
import uuid
from typing import Any

import flask
from flask_smorest import Blueprint
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from eventflo import appstate, auth, db, events, jsonbody, longpoll, schemas
from eventflo.apidocs import problem_response
from eventflo.errors import EventNotFound, MalformedRequest
from eventflo.events import Cursor
from eventflo.problems import BodyTooLarge
from eventflo.status import Status

BATCH_ENDPOINT = "events.create_events_batch"
# Bodies whose top-level "events" array holds events: EVENTFLO_MAX_JSON_KEYS counts per event.
EVENT_LIST_ENDPOINTS = (BATCH_ENDPOINT, "rules.simulate_rules")


class StrictJSONParser(FlaskParser):
    """webargs' parser with our JSON rules: 415 for non-JSON bodies, 400/422 for unstorable JSON."""

    def _raw_load_json(self, req: flask.Request) -> Any:
        if not req.is_json:
            raise UnsupportedMediaType("Send the body as JSON (Content-Type: application/json).")
        config = appstate.current().config
        events_in = "events" if req.endpoint in EVENT_LIST_ENDPOINTS else None
        document = jsonbody.loads(
            _body(req),
            max_depth=config.max_json_depth,
            max_keys=config.max_json_keys,
            per_event_in=events_in,
        )
        jsonbody.require_objects(document, items_in=events_in)
        return document

    def _handle_invalid_json_error(
        self, error: Any, req: flask.Request, *args: Any, **kwargs: Any
    ) -> Any:
        raise MalformedRequest(f"The body is not valid JSON: {error}")


def _body(req: flask.Request) -> bytes:
    """The request body, with a 413 (not a truncated body) for a chunked one over the limit.

    Without a Content-Length, werkzeug stops reading at the limit and returns
    what it has; one more read past the limit is what raises its 413.
    """
    limit, setting = _body_limit()
    try:
        data = req.get_data(cache=True)
        if req.content_length is None and len(data) >= limit:
            req.stream.read(1)  # raises RequestEntityTooLarge when more is there
    except RequestEntityTooLarge:
        raise BodyTooLarge(limit, setting) from None
    return data


def _body_limit() -> tuple[int, str]:
    """This request's body limit in bytes, and the setting that says so: a batch has its own."""
    config = appstate.current().config
    if flask.request.endpoint == BATCH_ENDPOINT:
        return config.max_batch_body_bytes, "EVENTFLO_MAX_BATCH_BODY_BYTES"
    return config.max_body_bytes, "EVENTFLO_MAX_BODY_BYTES"


class EventsBlueprint(Blueprint):
    ARGUMENTS_PARSER = StrictJSONParser()


blp = EventsBlueprint(
    "events", __name__, url_prefix="/events", description="Submit and read events"
)


def _parse_event_id(event_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(event_id)
    except ValueError:
        raise MalformedRequest(f"{event_id[:64]!r} is not a valid event id (a UUID).") from None


IDEMPOTENCY_KEY_PARAMETER = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "description": "Retry safely: the same key with the same request answers the original event "
    "(200); with another request, 409",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


def _idempotency_key() -> str | None:
    key = flask.request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise MalformedRequest("Idempotency-Key must be 1 to 255 printable characters.")
    return key


@blp.route("", methods=["POST"])
@auth.requires("ingest", blp)
@blp.doc(parameters=[IDEMPOTENCY_KEY_PARAMETER])
@blp.arguments(schemas.EventCreateSchema)
@blp.response(202, schemas.EventAcceptedSchema, description="Stored as queued")
@blp.alt_response(
    200, schema=schemas.EventAcceptedSchema, description="Idempotent retry: the original event"
)
@problem_response(blp, 400, "Malformed JSON or headers")
@problem_response(blp, 409, "Idempotency-Key reused for another request")
@problem_response(blp, 413, "Body too large")
@problem_response(blp, 415, "Body is not JSON")
@problem_response(blp, 503, "Database unavailable")
def create_event(body: dict[str, Any]) -> Any:
    """Store an event as queued and answer at once; a worker classifies it later."""
    new = events.NewEvent(
        event_type=body["event_type"],
        payload=body["payload"],
        source=body["source"],
        idempotency_key=_idempotency_key(),
    )
    with db.borrow(appstate.current().pool) as conn:
        accepted = events.insert(conn, new)
    location = flask.url_for("events.get_event", event_id=str(accepted.event_id))
    status = 202 if accepted.created else 200
    answer = {"event_id": accepted.event_id, "status": accepted.status}
    return answer, status, {"Location": location}


@blp.route("/batch", methods=["POST"])
@auth.requires("ingest", blp)
@blp.arguments(schemas.EventBatchSchema)
@blp.response(202, schemas.BatchAcceptedSchema, description="Stored as queued, all together")
@blp.alt_response(
    200, schema=schemas.BatchAcceptedSchema, description="Every event was an idempotent retry"
)
@problem_response(blp, 400, "Malformed JSON")
@problem_response(blp, 409, "An idempotency key reused for another event")
@problem_response(blp, 413, "Body too large")
@problem_response(blp, 415, "Body is not JSON")
@problem_response(blp, 503, "Database unavailable")
def create_events_batch(body: dict[str, Any]) -> Any:
    """Store up to 1,000 events in one transaction (one NOTIFY): all of them, or none on any error.

    Validation errors name the failing events by their index in ``events``.
    """
    batch = [
        events.NewEvent(
            event_type=item["event_type"],
            payload=item["payload"],
            source=item["source"],
            idempotency_key=item["idempotency_key"],
        )
        for item in body["events"]
    ]
    with db.borrow(appstate.current().pool) as conn:
        accepted = events.insert_many(conn, batch)
    answer = [{"event_id": a.event_id, "status": a.status, "created": a.created} for a in accepted]
    status = 202 if any(a.created for a in accepted) else 200
    return {"events": answer}, status


@blp.before_request
def _apply_body_limit() -> None:
    """A batch may be larger than a single event; the limit applies before the body is read."""
    flask.request.max_content_length = _body_limit()[0]


EVENT_ID_PARAMETER = {
    "in": "path",
    "name": "event_id",
    "required": True,
    "description": "The event_id of POST /events (a UUID; anything else is a 400)",
    "schema": {"type": "string", "format": "uuid"},
}


@blp.route("/<event_id>", methods=["GET"], parameters=[EVENT_ID_PARAMETER])
@auth.requires("read", blp)
@blp.arguments(schemas.WaitArgsSchema, location="query")
@blp.response(200, schemas.EventSchema)
@problem_response(blp, 400, "Malformed event id")
@problem_response(blp, 404, "No such event")
@problem_response(blp, 503, "Database unavailable, or too many requests wait already (Retry-After)")
def get_event(args: dict[str, Any], event_id: str) -> Any:
    """One event with its status, result and attempt history; ?wait=N long-polls till it ends."""
    parsed_id = _parse_event_id(event_id)
    state = appstate.current()
    wait = min(args["wait"], state.config.max_wait_seconds)
    if wait > 0:
        with state.long_polls.take():
            longpoll.wait_until_finished(state.pool, state.finished_listener, parsed_id, wait)
    with db.borrow(state.pool) as conn:
        event = events.get(conn, parsed_id)
    if event is None:
        raise EventNotFound(f"No event has id {parsed_id}.")
    return event


@blp.route("", methods=["GET"])
@auth.requires("read", blp)
@blp.arguments(schemas.ListArgsSchema, location="query")
@blp.response(200, schemas.EventSummarySchema(many=True))
@problem_response(blp, 503, "Database unavailable")
def list_events(args: dict[str, Any]) -> Any:
    """Recent events, newest first; follow the Link header (rel="next") for the next page."""
    state = appstate.current()
    limit = min(args["limit"], state.config.list_limit_max)
    with db.borrow(state.pool) as conn:
        rows = events.list_recent(
            conn,
            limit=limit,
            status=None if args["status"] is None else Status(args["status"]),
            event_type=args["event_type"],
            after=args["cursor"],
        )
    headers = {}
    if len(rows) == limit:
        last = rows[-1]
        query = {k: v for k, v in flask.request.args.items() if k != "cursor"}
        query["cursor"] = schemas.CursorField.encode(Cursor(last["event_id"]))
        # Relative: an absolute URL would echo the client's Host header back.
        next_url = f"{flask.request.path}?{urllib.parse.urlencode(query)}"
        headers["Link"] = f'<{next_url}>; rel="next"'
    return rows, 200, headers
