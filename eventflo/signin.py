"""Signing in to the dashboard with an API key, and the checks that keep other sites out.

A browser cannot add an Authorization header to a page load, so the
dashboard's login form takes a key and keeps it in an HttpOnly,
SameSite=Strict cookie, checked on every request like a header
(eventflo.auth): a revoked key signs its browser out at once. Requests that
change something must come from the dashboard itself: sign-in and sign-out
by the browser's ``Sec-Fetch-Site``, the replay by a header that a form
cannot send and an Origin, if any, that names this host.

The views here are plain functions; eventflo.dashboard gives them their URLs.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

import flask
import werkzeug

from eventflo import appstate, auth
from eventflo.errors import DatabaseUnavailable, SchemaNotCurrent
from eventflo.problems import CrossSiteRequest, Unauthenticated, problem_for

log = logging.getLogger(__name__)

ACTION_HEADER = "X-EventFlo-Action"
ACTION_REPLAY = "replay"

# The sign-in cookie's attributes, alike when it is set and when it is deleted (Secure aside).
_COOKIE_ATTRIBUTES: dict[str, Any] = {"path": "/", "httponly": True, "samesite": "Strict"}


@auth.public
def login_form() -> Any:
    """The form that takes a key; with EVENTFLO_AUTH off there is nothing to sign in to."""
    if not auth.caller().auth:
        return flask.redirect(flask.url_for("dashboard.page"))
    return login_page(None, 200)


@auth.public
def login() -> Any:
    """Check the key of the form; if it may read, keep it in the browser's cookie.

    A sign-in another site starts is refused: it could swap an operator's
    admin key for the forger's read key, and have the forger's key blamed
    for what follows.
    """
    if not auth.caller().auth:
        return flask.redirect(flask.url_for("dashboard.page"), 303)
    if started_elsewhere(flask.request):
        return login_page("Sign-in refused: the form was sent from another site.", 403)
    presented = flask.request.form.get("key", "").strip()
    if not presented:
        return login_page("Paste an API key to sign in.", 400)
    try:
        key = auth.authenticate(appstate.current().pool, presented)
    except (Unauthenticated, DatabaseUnavailable, SchemaNotCurrent) as exc:
        return login_page(exc.detail, problem_for(exc).status)
    if not auth.allows(key.scope, "read"):
        return login_page(
            f"The key {key.prefix}… ({key.name!r}) has scope {key.scope}; "
            "the dashboard needs a read or admin key.",
            403,
        )
    log.info(
        "dashboard: signed in with API key %s… (%r, scope %s)", key.prefix, key.name, key.scope
    )
    response = flask.redirect(flask.url_for("dashboard.page"), 303)
    response.set_cookie(
        auth.COOKIE, presented, secure=served_over_https(flask.request), **_COOKIE_ATTRIBUTES
    )
    return response


@auth.public
def logout() -> Any:
    """Forget the browser's key (the key itself stays valid until revoked)."""
    if started_elsewhere(flask.request):
        return login_page("Sign-out refused: the form was sent from another site.", 403)
    response = flask.redirect(flask.url_for("dashboard.login_form"), 303)
    forget_key(response)
    return response


def login_page(message: str | None, status: int) -> tuple[str, int]:
    """The sign-in form, with ``message`` saying why the browser is (still) there."""
    return flask.render_template("dashboard/login.html", message=message), status


def forget_key(response: werkzeug.Response) -> None:
    """Delete the sign-in cookie from the browser that gets ``response``."""
    response.delete_cookie(auth.COOKIE, **_COOKIE_ATTRIBUTES)


def started_elsewhere(request: flask.Request) -> bool:
    """Whether the browser says another site (or a sibling subdomain) sent this request.

    ``Sec-Fetch-Site``, which browsers set and pages cannot forge. The
    Origin header cannot tell here: under ``Referrer-Policy: no-referrer``
    chromium sends ``Origin: null`` with a form's POST, even our own.
    """
    return request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site")


def served_over_https(request: flask.Request) -> bool:
    """HTTPS to the browser: directly, or through a TLS-terminating proxy that says so.

    Trusting ``X-Forwarded-Proto`` here can only add ``Secure`` to a cookie,
    never take it away.
    """
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.is_secure or forwarded == "https"


def refuse_cross_site(request: flask.Request) -> None:
    """CrossSiteRequest unless the request carries the action header and, if any, our Origin.

    A cross-site form cannot send the header, and a cross-origin ``fetch()``
    can only after a CORS preflight that this app never grants.
    """
    if request.headers.get(ACTION_HEADER) != ACTION_REPLAY:
        raise CrossSiteRequest(
            f"A replay needs the header {ACTION_HEADER}: {ACTION_REPLAY}, which the dashboard "
            "sends; nothing was requeued."
        )
    origin = request.headers.get("Origin")
    if origin is not None and not same_host(origin, request.host):
        raise CrossSiteRequest(
            f"The request comes from {origin[:200]!r}, not from this site ({request.host}); "
            "nothing was requeued."
        )


_DEFAULT_PORTS = {"http": 80, "https": 443}


def same_host(origin: str, host: str) -> bool:
    """Whether an Origin header (scheme://host[:port]) names the host the request was sent to.

    Only host and port are compared: behind a TLS-terminating proxy the app
    sees http while the browser's origin says https. An opaque origin
    ("null": a sandboxed frame, a file) is never this site.
    """
    parts = urllib.parse.urlsplit(origin)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return False
    try:
        origin_port = parts.port or _DEFAULT_PORTS[parts.scheme]
        target = urllib.parse.urlsplit(f"{parts.scheme}://{host}")
        target_port = target.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:  # a malformed port
        return False
    return (parts.hostname, origin_port) == (target.hostname, target_port)
