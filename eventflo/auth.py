"""Who may call what: an API key per request, checked against the database every time.

A client sends ``Authorization: Bearer <key>``; the dashboard's browser sends
the same key in a cookie that its login form set (HttpOnly, SameSite=Strict). Each
view names the scope it needs with ``requires``; ``public`` marks the few
that anyone may call. A view marked neither needs ``admin``, so a route
added without thought fails closed.

Keys are looked up on every request instead of cached, so a revoked key
stops working with the next request, in every process. The lookup is one
indexed read (plus a write at most once a minute per key, for
``last_used_at``).

The presented key is never logged, and never echoed in an answer.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import flask
import flask_smorest

from eventflo import appstate, db, keys
from eventflo.apidocs import problem_response
from eventflo.problems import InsufficientScope, InvalidKey, Unauthenticated

log = logging.getLogger(__name__)

SCOPE_ATTRIBUTE = "eventflo_scope"
PUBLIC = "public"
COOKIE = "eventflo_key"
SECURITY_SCHEME = "bearerAuth"

# Views of libraries, which cannot carry our mark: static files, the OpenAPI document, Swagger UI.
PUBLIC_ENDPOINTS = frozenset(
    {
        "static",
        "dashboard.static",
        "docs_assets.asset",
        "api-docs.openapi_json",
        "api-docs.openapi_swagger_ui",
    }
)

View = TypeVar("View", bound=Callable[..., Any])

NO_SUCH_KEY = "The API key is not valid: no such key exists."


def allows(key_scope: str, needed: str) -> bool:
    """``admin`` may do everything; ``ingest`` and ``read`` only their own requests."""
    return key_scope == "admin" or key_scope == needed


def requires(
    scope: str, blueprint: flask_smorest.Blueprint | None = None
) -> Callable[[View], View]:
    """Mark a view as needing a key of ``scope`` (or admin); document it in ``blueprint``'s spec."""
    if scope not in keys.SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def decorate(view: View) -> View:
        setattr(view, SCOPE_ATTRIBUTE, scope)
        if blueprint is not None:
            view = blueprint.doc(security=[{SECURITY_SCHEME: []}])(view)
            view = problem_response(
                blueprint, 401, "No API key, or one that is unknown or revoked"
            )(view)
            view = problem_response(
                blueprint, 403, f"The API key's scope is neither {scope} nor admin"
            )(view)
        return view

    return decorate


def public(view: View) -> View:
    """Mark a view anyone may call, whatever EVENTFLO_AUTH says."""
    setattr(view, SCOPE_ATTRIBUTE, PUBLIC)
    return view


def required_scope(app: flask.Flask, endpoint: str) -> str:
    """What calling ``endpoint`` needs: a scope, or PUBLIC; unmarked views need admin."""
    if endpoint in PUBLIC_ENDPOINTS:
        return PUBLIC
    view = app.view_functions.get(endpoint)
    return getattr(view, SCOPE_ATTRIBUTE, "admin")


def check_request() -> None:
    """Before every request: refuse it unless its key allows it (or auth is off, or it is public).

    Requests for unknown routes and wrong methods pass through, to get their 404/405.
    """
    app = flask.current_app
    state = appstate.of(app)
    endpoint = flask.request.endpoint
    if not state.config.auth or endpoint is None:
        return
    needed = required_scope(app, endpoint)
    if needed == PUBLIC:
        return
    flask.g.api_key = key = authenticate(state.pool, presented_key(flask.request))
    if not allows(key.scope, needed):
        raise InsufficientScope(
            f"The API key {key.prefix}… ({key.name!r}) has scope {key.scope}; "
            f"this request needs scope {needed} or admin.",
            needed=needed,
        )


def presented_key(request: flask.Request) -> str:
    """The key of ``Authorization: Bearer <key>`` — or, for the dashboard, of its cookie."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(
                "Send the API key as `Authorization: Bearer <key>` (no other scheme is accepted)."
            )
        return token.strip()
    cookie = request.cookies.get(COOKIE) if _cookie_allowed(request) else None
    if cookie:
        return cookie
    raise Unauthenticated(
        "This request needs an API key: send `Authorization: Bearer <key>`. "
        "An operator makes keys with `eventflo keys create --name NAME --scope SCOPE`."
    )


def _cookie_allowed(request: flask.Request) -> bool:
    """The dashboard's cookie counts for its own requests, and for reads anywhere.

    Reads, so that the dashboard's links to ``/events/{id}`` open in the
    browser. Writes outside the dashboard (POST /events) take a header only:
    a cookie rides along with requests the user never meant to send, which is
    why the dashboard's own replay also demands a header a form cannot set.
    """
    return request.blueprint == "dashboard" or request.method in ("GET", "HEAD")


def authenticate(pool: db.Pool, presented: str) -> keys.ApiKey:
    """The stored key for ``presented``; 401 when it is unknown or revoked."""
    if not keys.looks_like_key(presented):
        raise InvalidKey(NO_SUCH_KEY)  # without a connection: garbage costs nothing
    with db.borrow(pool) as conn:  # no keys table yet: SchemaNotCurrent, a 503
        key = keys.authenticate(conn, presented)
    if key is None:
        raise InvalidKey(NO_SUCH_KEY)
    if key.revoked_at is not None:
        raise InvalidKey(f"The API key {key.prefix}… ({key.name!r}) has been revoked.")
    return key


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who made the current request, for pages and logs: a key's name and scope, or nobody."""

    auth: bool
    key: keys.ApiKey | None

    def may(self, scope: str) -> bool:
        return not self.auth or (self.key is not None and allows(self.key.scope, scope))


def caller() -> Caller:
    return Caller(auth=appstate.current().config.auth, key=flask.g.get("api_key"))


def init_app(app: flask.Flask, api: flask_smorest.Api) -> None:
    """Check every request, document the scheme, and say so at start-up when auth is off."""
    app.before_request(check_request)
    api.spec.components.security_scheme(
        SECURITY_SCHEME,
        {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from `eventflo keys create` (scopes: ingest, read, admin)",
        },
    )
    if not appstate.of(app).config.auth:
        log.warning(
            "EVENTFLO_AUTH=off: the API accepts every request without an API key; "
            "use this only for local development"
        )
