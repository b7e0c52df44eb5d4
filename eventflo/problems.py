"""Every failure as an RFC 9457 ``application/problem+json`` answer, decided in one place.

The domain's errors (eventflo.errors) carry no HTTP meaning; PROBLEMS, the
one table below, gives each its status, title and headers. The web's own
refusals (no key, wrong scope, a cross-site request, not ready, a body over
its limit) are declared here too, so that the table lists every answer the
API gives on purpose and no web module needs another's to raise one.
webargs' validation errors (422, per field) and werkzeug's HTTP errors
(404, 405, 413, 415) go through the same renderer; anything else is a bug and
a 500 that says nothing internal. How the OpenAPI document describes these
answers is eventflo.apidocs.
"""

from __future__ import annotations

import dataclasses
import http
import logging
from collections.abc import Callable, Mapping
from typing import Any

import flask
import marshmallow as ma
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from eventflo import errors
from eventflo.errors import EventFloError

log = logging.getLogger(__name__)

PROBLEM_MIMETYPE = "application/problem+json"


# -- the web's own refusals -------------------------------------------------------------------


class Unauthenticated(EventFloError):
    """No API key, or one sent the wrong way."""


class InvalidKey(Unauthenticated):
    """A key that is unknown or revoked."""


class InsufficientScope(EventFloError):
    """A valid key whose scope does not allow this request."""

    def __init__(self, detail: str, *, needed: str) -> None:
        super().__init__(detail)
        self.needed = needed


class CrossSiteRequest(EventFloError):
    """A state-changing dashboard request that another site may have sent."""


class NotReady(EventFloError):
    """The database answers, but its schema is behind this code's migrations."""


class BodyTooLarge(EventFloError):
    """A request body over the limit that ``setting`` configures."""

    def __init__(self, limit_bytes: int, setting: str) -> None:
        super().__init__(f"The body is larger than the limit of {limit_bytes} bytes ({setting}).")
        self.limit_bytes = limit_bytes


# -- the table ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Problem:
    """How one kind of error is answered; ``headers`` computes any headers from the error."""

    status: int
    title: str
    headers: Callable[[Any], Mapping[str, str]] | None = None


def _retry_after(error: errors.TooManyLongPolls) -> Mapping[str, str]:
    return {"Retry-After": str(error.retry_after_seconds)}


def _bearer_challenge(error: Unauthenticated) -> Mapping[str, str]:
    """RFC 6750: a missing key gets the bare challenge, a bad one says ``invalid_token``."""
    if isinstance(error, InvalidKey):
        return {"WWW-Authenticate": 'Bearer realm="eventflo", error="invalid_token"'}
    return {"WWW-Authenticate": 'Bearer realm="eventflo"'}


def _scope_challenge(error: InsufficientScope) -> Mapping[str, str]:
    return {
        "WWW-Authenticate": (
            f'Bearer realm="eventflo", error="insufficient_scope", scope="{error.needed}"'
        )
    }


PROBLEMS: Mapping[type[Exception], Problem] = {
    errors.MalformedRequest: Problem(400, "Malformed request"),
    errors.InvalidEvent: Problem(422, "Invalid event"),
    ma.ValidationError: Problem(422, "Invalid request"),
    errors.InvalidRuleFile: Problem(422, "Invalid rule file"),
    errors.EventNotFound: Problem(404, "Event not found"),
    errors.InvalidEndpoint: Problem(422, "Invalid endpoint"),
    errors.EndpointExists: Problem(409, "Endpoint exists"),
    errors.EndpointNotFound: Problem(404, "Endpoint not found"),
    errors.DeliveryNotFound: Problem(404, "Delivery not found"),
    errors.DeliveryBusy: Problem(409, "Delivery being sent"),
    errors.IdempotencyConflict: Problem(409, "Idempotency key reused with a different request"),
    errors.DatabaseUnavailable: Problem(503, "Database unavailable"),
    errors.SchemaNotCurrent: Problem(503, "Database schema not current"),
    errors.TooManyLongPolls: Problem(503, "Too many waiting requests", _retry_after),
    Unauthenticated: Problem(401, "Authentication required", _bearer_challenge),
    InsufficientScope: Problem(403, "Insufficient scope", _scope_challenge),
    CrossSiteRequest: Problem(403, "Cross-site request refused"),
    NotReady: Problem(503, "Not ready"),
    BodyTooLarge: Problem(413, http.HTTPStatus(413).phrase),
}

_BUG = Problem(500, http.HTTPStatus(500).phrase)


def problem_for(error: Exception) -> Problem:
    """The table's entry for ``error``'s class or its nearest listed ancestor; a 500 otherwise."""
    for cls in type(error).__mro__:
        if cls in PROBLEMS:
            return PROBLEMS[cls]
    return _BUG


# -- rendering ------------------------------------------------------------------------------


def render(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    field_errors: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> flask.Response:
    """One problem document; ``type`` is always about:blank, so ``title`` names the problem."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or http.HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if field_errors:
        body["errors"] = field_errors
        version = flask.g.get(_RULES_VERSION) if flask.has_app_context() else None
        if status == 422 and version is not None:
            body["rules_version"] = version
    response = flask.jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_MIMETYPE
    if headers:
        response.headers.update(headers)
    return response


_RULES_VERSION = "eventflo_rules_version"


def note_rules_version(version: int | None) -> None:
    """The rule version whose declared fields refused this request: its 422 will name it."""
    flask.g.setdefault(_RULES_VERSION, version)


def render_error(error: EventFloError) -> flask.Response:
    """Our errors, by the table; a 5xx is logged, since an operator may have to act on it."""
    problem = problem_for(error)
    if problem.status >= 500:
        log.warning("%s: %s", problem.title, error.detail)
    return render(
        problem.status,
        error.detail,
        title=problem.title,
        field_errors=error.field_errors,
        headers=problem.headers(error) if problem.headers else None,
    )


INVALID_FIELDS = "The request has invalid fields; see errors."


def render_invalid_fields(error: ma.ValidationError) -> flask.Response:
    """marshmallow's messages as per-field errors (a whole-schema message too, under _schema)."""
    problem = problem_for(error)
    messages = (
        error.messages if isinstance(error.messages, Mapping) else {"_schema": error.messages}
    )
    return render(problem.status, INVALID_FIELDS, title=problem.title, field_errors=messages)


def _strip_location(messages: Mapping[str, Any]) -> Mapping[str, Any]:
    """webargs nests field errors under their location ({"json": {...}}); clients want fields."""
    if len(messages) == 1:
        ((location, inner),) = messages.items()
        if location in ("json", "query", "headers", "view_args") and isinstance(inner, Mapping):
            return inner
    return messages


def render_http_exception(error: HTTPException) -> flask.Response:
    """Werkzeug's errors (404, 405, 413, 415, webargs' 422) as problem documents, never HTML."""
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    headers = dict(data.get("headers") or {})
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        headers["Allow"] = ", ".join(error.valid_methods)
    if status == 422 and messages:
        return render(
            422,
            INVALID_FIELDS,
            title=PROBLEMS[ma.ValidationError].title,
            field_errors=_strip_location(messages),
            headers=headers,
        )
    detail = error.description or http.HTTPStatus(status).phrase
    limit = flask.request.max_content_length
    if status == 413 and limit is not None:
        detail = f"The body is larger than the limit of {limit} bytes."
    return render(status, detail, headers=headers)


def render_unexpected(error: Exception) -> flask.Response:
    """Anything else is our bug: log it with its traceback, tell the client nothing internal."""
    log.exception("unhandled error while serving %s %s", flask.request.method, flask.request.path)
    return render(_BUG.status, "An unexpected error occurred; it has been logged.")


def register(app: flask.Flask) -> None:
    """Install the renderers; called after flask-smorest, so they replace its JSON error format."""
    app.register_error_handler(EventFloError, render_error)
    app.register_error_handler(ma.ValidationError, render_invalid_fields)
    app.register_error_handler(HTTPException, render_http_exception)
    app.register_error_handler(Exception, render_unexpected)
