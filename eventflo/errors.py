"""One error vocabulary and one RFC 9457 ``application/problem+json`` renderer for every failure."""

from __future__ import annotations

import http
import logging
from collections.abc import Mapping
from typing import Any

import flask
import flask_smorest
import marshmallow as ma
from flask_smorest.utils import prepare_response
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

PROBLEM_MIMETYPE = "application/problem+json"


class EventFloError(Exception):
    """An error with an HTTP meaning; ``str(error)`` is the problem's detail."""

    status = 500
    title = "Internal Server Error"
    type = "about:blank"

    headers: Mapping[str, str] = {}

    def __init__(self, detail: str, *, field_errors: Mapping[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field_errors = field_errors


class MalformedRequest(EventFloError):
    status = 400
    title = "Malformed request"


class EventNotFound(EventFloError):
    status = 404
    title = "Event not found"


class IdempotencyConflict(EventFloError):
    status = 409
    title = "Idempotency key reused with a different request"


class UnprocessableEvent(EventFloError):
    status = 422
    title = "Invalid event"


class DatabaseUnavailable(EventFloError):
    """The database cannot be reached now; clients may retry (the API answers 503)."""

    status = 503
    title = "Database unavailable"


class SchemaNotCurrent(EventFloError):
    """The database lacks a table this code needs: ``eventflo migrate`` has not run yet."""

    status = 503
    title = "Database schema not current"


class TooManyLongPolls(EventFloError):
    """This process already holds EVENTFLO_MAX_LONG_POLLS waiting requests; retry in a second."""

    status = 503
    title = "Too many waiting requests"
    headers = {"Retry-After": "1"}


class ProblemSchema(ma.Schema):
    """The shape of every error body; documents it in the OpenAPI spec."""

    type = ma.fields.String(
        required=True, metadata={"description": "A URI reference naming the problem type"}
    )
    title = ma.fields.String(
        required=True, metadata={"description": "A short summary of the problem type"}
    )
    status = ma.fields.Integer(required=True, metadata={"description": "The HTTP status code"})
    detail = ma.fields.String(
        required=True, metadata={"description": "What went wrong with this request"}
    )
    errors = ma.fields.Dict(
        metadata={"description": "Per-field messages, when fields were invalid"}
    )


class ProblemApi(flask_smorest.Api):
    """flask-smorest's Api, documenting errors the way they are sent.

    Error responses are ``application/problem+json`` bodies of ProblemSchema
    (flask-smorest's defaults say ``application/json`` and its own Error
    shape). No operation gets a ``default`` response: each lists the statuses
    it can answer, so a client — and the fuzz test — can rely on the list.
    """

    ERROR_SCHEMA = ProblemSchema
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_responses(self) -> None:
        """The lazily registered responses per status (e.g. webargs' 422), as problem documents."""
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            content_type = self.DEFAULT_RESPONSE_CONTENT_TYPE
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
                content_type = PROBLEM_MIMETYPE
            prepare_response(response, self.spec, content_type)
            self.spec.components.response(status.name, response, lazy=True)


def problem_response(blueprint: flask_smorest.Blueprint, status: int, description: str) -> Any:
    """Document an error status of an operation as a problem document (a decorator)."""
    return blueprint.alt_response(
        status, schema=ProblemSchema, content_type=PROBLEM_MIMETYPE, description=description
    )


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    type_: str = "about:blank",
    field_errors: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> flask.Response:
    """Render one problem document."""
    body: dict[str, Any] = {
        "type": type_,
        "title": title or http.HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if field_errors:
        body["errors"] = field_errors
    response = flask.jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_MIMETYPE
    if headers:
        response.headers.update(headers)
    return response


def _strip_location(messages: Mapping[str, Any]) -> Mapping[str, Any]:
    """webargs nests field errors under their location ({"json": {...}}); clients want fields."""
    if len(messages) == 1:
        ((location, inner),) = messages.items()
        if location in ("json", "query", "headers", "view_args") and isinstance(inner, Mapping):
            return inner
    return messages


def handle_eventflo_error(error: EventFloError) -> flask.Response:
    if error.status >= 500:
        log.warning("%s: %s", error.title, error.detail)
    return problem(
        error.status,
        error.detail,
        title=error.title,
        type_=error.type,
        field_errors=error.field_errors,
        headers=error.headers,
    )


def handle_http_exception(error: HTTPException) -> flask.Response:
    """Werkzeug's errors (404, 405, 413, 415, webargs' 422) as problem documents, never HTML."""
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    headers = dict(data.get("headers") or {})
    if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
        headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
    if status == 422 and messages:
        return problem(
            422,
            "The request has invalid fields; see errors.",
            title="Invalid request",
            field_errors=_strip_location(messages),
            headers=headers,
        )
    return problem(status, error.description or http.HTTPStatus(status).phrase, headers=headers)


def handle_unexpected(error: Exception) -> flask.Response:
    """Anything else is our bug: log it with its traceback, tell the client nothing internal."""
    log.exception("unhandled error while serving %s %s", flask.request.method, flask.request.path)
    return problem(500, "An unexpected error occurred; it has been logged.")


def register(app: flask.Flask) -> None:
    """Install the handlers; called after flask-smorest so they replace its JSON error format."""
    app.register_error_handler(EventFloError, handle_eventflo_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
