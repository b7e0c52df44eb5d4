"""The operators' dashboard at /dashboard: the queue at a glance, what failed and its replay.

Server-rendered HTML (Jinja's autoescape: event types, sources and errors
are user data), a stylesheet and one small script from ``eventflo/static``
that refreshes the live part every few seconds and sends the Replay buttons'
POSTs (failed events, failed deliveries). Nothing comes from another site;
the Content-Security-Policy says so.

With EVENTFLO_AUTH on, the page and its refreshes need a ``read`` key and the
replay an ``admin`` key, from a header or from the cookie that signing in
sets (eventflo.signin, which also keeps other sites' requests out). What the
page shows is read by eventflo.overview; the chart's geometry is eventflo.chart.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

import flask

from eventflo import (
    appstate,
    auth,
    db,
    deliveries,
    endpoints,
    events,
    jsonbody,
    overview,
    problems,
    queue,
    signin,
)
from eventflo.errors import DatabaseUnavailable, EventFloError, MalformedRequest, SchemaNotCurrent
from eventflo.overview import Filters, Snapshot
from eventflo.status import Status

log = logging.getLogger(__name__)

REFRESH_SECONDS = 5
REPLAY_MAX_IDS = 100

SECURITY_HEADERS = {
    # Only our own files; no inline script or style, no plugins, no framing, no <base> tricks.
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

blp = flask.Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/dashboard/static",
)

blp.add_url_rule("/dashboard/login", view_func=signin.login_form, methods=["GET"])
blp.add_url_rule("/dashboard/login", view_func=signin.login, methods=["POST"])
blp.add_url_rule("/dashboard/logout", view_func=signin.logout, methods=["POST"])


def _snapshot(filters: Filters) -> Snapshot:
    state = appstate.current()
    with db.borrow(state.pool) as conn:
        return overview.read(conn, filters, worker_timeout=state.config.worker_timeout)


def _context(
    filters: Filters, snapshot: Snapshot | None, problem: EventFloError | None
) -> dict[str, Any]:
    query: dict[str, Any] = filters.query()  # url_for's own keywords are not strs
    shown_problem = None
    if problem is not None:
        shown_problem = {"title": problems.problem_for(problem).title, "detail": problem.detail}
    return {
        "filters": filters,
        "snap": snapshot,
        "problem": shown_problem,
        "statuses": events.STATUSES,
        "refresh_seconds": REFRESH_SECONDS,
        "throughput_minutes": overview.THROUGHPUT_MINUTES,
        "recent_limit": overview.RECENT_LIMIT,
        "rule_match_hours": overview.RULE_MATCH_HOURS,
        "live_url": flask.url_for("dashboard.live", **query),
        "viewer": auth.caller(),
    }


# -- views -------------------------------------------------------------------------------


@blp.get("/")
@auth.public
def index() -> Any:
    return flask.redirect(flask.url_for("dashboard.page"))


@blp.get("/favicon.ico")
@auth.public
def favicon() -> Any:
    """Browsers ask for it on pages that name no icon (Swagger UI's /docs): no 404 in the logs."""
    return flask.redirect(flask.url_for("dashboard.static", filename="favicon.svg"))


@blp.get("/dashboard")
@auth.requires("read")
def page() -> Any:
    """The whole page; while the database is unavailable, a 503 page that keeps retrying (below)."""
    filters = Filters.from_args(flask.request.args)
    snapshot = _snapshot(filters)
    return flask.render_template("dashboard/page.html", **_context(filters, snapshot, None))


@blp.get("/dashboard/live")
@auth.requires("read")
def live() -> Any:
    """The part of the page that refreshes; a problem document (503) while the database is away."""
    filters = Filters.from_args(flask.request.args)
    snapshot = _snapshot(filters)
    return flask.render_template("dashboard/live.html", **_context(filters, snapshot, None))


@blp.post("/dashboard/replay")
@auth.requires("admin")
def replay() -> Any:
    """Requeue failed events as ``eventflo replay --id`` does; one no longer failed is skipped."""
    signin.refuse_cross_site(flask.request)
    event_ids = _replay_ids(flask.request)
    selection = queue.ReplaySelection(statuses=(Status.failed,), event_ids=tuple(event_ids))
    requeued = 0
    with db.borrow(appstate.current().pool) as conn:
        candidates = queue.replay_candidates(conn, selection)
        if candidates:
            requeued = queue.replay(conn, candidates, selection.statuses)
    by = auth.caller().key
    log.info(
        "dashboard replay: requeued %d of %d event(s)%s",
        requeued,
        len(event_ids),
        f" with API key {by.prefix}… ({by.name!r})" if by else "",
        extra={"event_ids": [str(i) for i in event_ids], "requeued": requeued},
    )
    return {"requested": len(event_ids), "requeued": requeued, "skipped": len(event_ids) - requeued}


@blp.post("/dashboard/deliveries/replay")
@auth.requires("admin")
def replay_deliveries() -> Any:
    """Send failed deliveries again, by id or all of an endpoint's (``eventflo deliveries replay``).

    Only failed ones: a delivery pending or delivered since the page was drawn is
    skipped, as a replayed event is. Each keeps its id, so its receiver sees the
    same webhook-id again.
    """
    signin.refuse_cross_site(flask.request)
    body = _json_body(flask.request)
    by = auth.caller().key
    who = f" with API key {by.prefix}… ({by.name!r})" if by else ""
    if ("delivery_ids" in body) == ("endpoint" in body):
        raise MalformedRequest(
            'Send a JSON body with either {"delivery_ids": [...]} or {"endpoint": "NAME"}.'
        )
    endpoint = body.get("endpoint")
    if "endpoint" in body and (not isinstance(endpoint, str) or not endpoint):
        raise MalformedRequest('"endpoint" must be the name of an endpoint.')
    if endpoint is None:
        delivery_ids = _ids(body, "delivery_ids", "delivery")
        with db.borrow(appstate.current().pool) as conn:
            requeued = deliveries.replay_failed_by_id(conn, delivery_ids)
        log.info(
            "dashboard replay: requeued %d of %d failed deliveries%s",
            requeued,
            len(delivery_ids),
            who,
            extra={"delivery_ids": [str(i) for i in delivery_ids], "requeued": requeued},
        )
        skipped = len(delivery_ids) - requeued
        return {"requested": len(delivery_ids), "requeued": requeued, "skipped": skipped}
    with db.borrow(appstate.current().pool) as conn, conn.transaction():
        endpoints.get(conn, endpoint)  # an unknown name is a 404, not "0 requeued"
        requeued = deliveries.replay_failed(conn, endpoint, None)
    log.info(
        "dashboard replay: requeued %d failed deliveries of endpoint %s%s",
        requeued,
        endpoint,
        who,
        extra={"endpoint": endpoint, "requeued": requeued},
    )
    return {"endpoint": endpoint, "requeued": requeued}


def _replay_ids(request: flask.Request) -> list[uuid.UUID]:
    """The ``event_ids`` of a JSON body ``{"event_ids": ["<uuid>", …]}``, in order, once each."""
    return _ids(_json_body(request), "event_ids", "event")


def _json_body(request: flask.Request) -> dict[str, Any]:
    """A replay's JSON object, parsed by the API's own strict parser (a repeated key is refused)."""
    data = request.get_data()
    body = (
        jsonbody.loads(data, max_depth=appstate.current().config.max_json_depth) if data else None
    )
    return body if isinstance(body, dict) else {}


def _ids(body: dict[str, Any], key: str, what: str) -> list[uuid.UUID]:
    """``body[key]``: 1 to REPLAY_MAX_IDS ids (UUIDs), in order, once each."""
    raw = body.get(key)
    if not isinstance(raw, list) or not 1 <= len(raw) <= REPLAY_MAX_IDS:
        raise MalformedRequest(
            f'Send a JSON body {{"{key}": [...]}} with 1 to {REPLAY_MAX_IDS} {what} ids.'
        )
    ids: list[uuid.UUID] = []
    for item in raw:
        try:
            parsed = uuid.UUID(item) if isinstance(item, str) else None
        except ValueError:
            parsed = None
        if parsed is None:
            raise MalformedRequest(f"{str(item)[:64]!r} is not {_article(what)} id (a UUID).")
        if parsed not in ids:
            ids.append(parsed)
    return ids


def _article(what: str) -> str:
    return f"an {what}" if what[0] in "aeiou" else f"a {what}"


# -- failures: the page's own answers; problem documents for its script ---------------------


@blp.errorhandler(DatabaseUnavailable)
@blp.errorhandler(SchemaNotCurrent)
def _unavailable(error: EventFloError) -> Any:
    """Checking the key needs the database too: while it is away, the page that keeps retrying."""
    if flask.request.endpoint != "dashboard.page":
        return problems.render_error(error)
    problem = problems.problem_for(error)
    log.warning("dashboard: %s: %s", problem.title, error.detail)
    filters = Filters.from_args(flask.request.args)
    html = flask.render_template("dashboard/page.html", **_context(filters, None, error))
    return html, problem.status


@blp.errorhandler(problems.Unauthenticated)
@blp.errorhandler(problems.InsufficientScope)
def _refused(error: EventFloError) -> Any:
    """The page sends a browser to sign in; its script's requests get the problem document."""
    if flask.request.endpoint != "dashboard.page":
        return problems.render_error(error)
    status = problems.problem_for(error).status
    remembered = flask.request.cookies.get(auth.COOKIE)
    if remembered and status == 401 and "Authorization" not in flask.request.headers:
        # The remembered key stopped working (revoked): forget it, and say why.
        response = flask.make_response(signin.login_page(error.detail, 401))
        signin.forget_key(response)
        return response
    if status == 403:
        return signin.login_page(error.detail, 403)
    return flask.redirect(flask.url_for("dashboard.login_form"), 303)


@blp.after_request
def security_headers(response: flask.Response) -> flask.Response:
    """Every dashboard response: the security headers; live data is never cached."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if flask.request.endpoint != "dashboard.static":
        response.headers["Cache-Control"] = "no-store"
    return response


# -- template filters ----------------------------------------------------------------------


@blp.app_template_filter("duration")
def duration(value: dt.timedelta | None) -> str:
    """A short human duration: 4 s, 12 min, 3 h, 2 d."""
    if value is None:
        return "—"
    seconds = max(value.total_seconds(), 0.0)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


@blp.app_template_filter("utc")
def utc(value: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    return "—" if value is None else value.astimezone(dt.UTC).strftime(fmt)
