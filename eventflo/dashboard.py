"""The operators' dashboard at /dashboard: the queue at a glance, failed events and their replay.

Server-rendered HTML (Jinja's autoescape: event types, sources and errors
are user data), a stylesheet and one small script from ``eventflo/static``
that refreshes the live part every few seconds and sends the Replay button's
POST. Nothing comes from another site; the Content-Security-Policy says so.

The replay POST is guarded against cross-site requests without a session:
it needs the ``X-EventFlo-Action: replay`` header, which a cross-site form
cannot send and a cross-origin ``fetch()`` can only send after a CORS
preflight that this app never grants; and a request that names its Origin
must name this host.

With EVENTFLO_AUTH on, the page and its refreshes need a ``read`` key and the
replay an ``admin`` key. A browser cannot add an Authorization header to a
page load, so /dashboard/login takes a key in a form and keeps it in an
HttpOnly, SameSite=Strict cookie, checked on every request like a header
(eventflo.auth), so a revoked key signs its browser out at once.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import flask
import psycopg

from eventflo import auth, db, errors, events, queue, registry
from eventflo.errors import DatabaseUnavailable, EventFloError, MalformedRequest, SchemaNotCurrent
from eventflo.sql import load

log = logging.getLogger(__name__)

QUERIES = load("dashboard.sql")

REFRESH_SECONDS = 5
THROUGHPUT_MINUTES = 15
RECENT_LIMIT = 25
FAILED_LIMIT = 20
# The type filter offers the types among this many newest events (a bounded read).
TYPE_SCAN = 1000
REPLAY_MAX_IDS = 100
EVENT_TYPE_MAX_LENGTH = 100

ACTION_HEADER = "X-EventFlo-Action"
ACTION_REPLAY = "replay"

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


class CrossSiteRequest(EventFloError):
    status = 403
    title = "Cross-site request refused"


# -- what the page shows -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Filters:
    """The recent list's filters, from the query string; ``notice`` says why one was ignored."""

    status: str | None = None
    event_type: str | None = None
    notice: str | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> Filters:
        status = args.get("status", "").strip() or None
        event_type = args.get("event_type", "").strip() or None
        notice = None
        if status is not None and status not in events.STATUSES:
            notice = f"Unknown status {status[:40]!r} ignored; choose one of the list."
            status = None
        if event_type is not None and len(event_type) > EVENT_TYPE_MAX_LENGTH:
            notice = f"Event types have at most {EVENT_TYPE_MAX_LENGTH} characters; filter ignored."
            event_type = None
        return cls(status=status, event_type=event_type, notice=notice)

    def query(self) -> dict[str, str]:
        """The query string that reproduces these filters."""
        return {
            key: value
            for key, value in (("status", self.status), ("event_type", self.event_type))
            if value
        }


@dataclasses.dataclass(frozen=True)
class Bar:
    """One minute of the throughput chart, in SVG user units."""

    minute: dt.datetime
    events: int
    x: float
    y: float
    width: float
    height: float

    @property
    def center(self) -> float:
        return round(self.x + self.width / 2, 2)


@dataclasses.dataclass(frozen=True)
class Chart:
    """The throughput chart's geometry; the template draws it as inline SVG."""

    bars: list[Bar]
    peak: int
    total: int
    width: int = 600
    height: int = 150
    left: int = 44
    top: int = 10
    bottom: int = 120  # the baseline; the minute labels go below it

    @property
    def labels(self) -> list[Bar]:
        """The bars whose minute is written under the axis: every fifth, and the current one."""
        last = len(self.bars) - 1
        return [bar for i, bar in enumerate(self.bars) if (last - i) % 5 == 0]


def chart(per_minute: Sequence[tuple[dt.datetime, int]]) -> Chart:
    """Bars scaled to the busiest minute (a flat line at zero when nothing completed)."""
    base = Chart(bars=[], peak=0, total=0)
    slot = (base.width - base.left) / max(len(per_minute), 1)
    peak = max((count for _, count in per_minute), default=0)
    plot_height = base.bottom - base.top
    bars = []
    for i, (minute, count) in enumerate(per_minute):
        height = plot_height * count / peak if peak else 0.0
        bars.append(
            Bar(
                minute=minute,
                events=count,
                x=round(base.left + i * slot + slot * 0.15, 2),
                y=round(base.bottom - height, 2),
                width=round(slot * 0.7, 2),
                height=round(height, 2),
            )
        )
    return dataclasses.replace(base, bars=bars, peak=peak, total=sum(c for _, c in per_minute))


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Everything the page shows, read in one snapshot so the numbers agree."""

    now: dt.datetime
    counts: dict[str, int]
    oldest_due_since: dt.datetime | None
    throughput: Chart
    live_workers: list[registry.WorkerInfo]
    silent_workers: int
    recent: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    event_types: list[str]

    @property
    def oldest_due_age(self) -> dt.timedelta | None:
        return None if self.oldest_due_since is None else self.now - self.oldest_due_since


def read(
    conn: psycopg.Connection[dict[str, Any]], filters: Filters, *, worker_timeout: float
) -> Snapshot:
    """Read the page in one read-only snapshot (no schema yet: SchemaNotCurrent, from db)."""
    with conn.transaction():
        events.read_one_snapshot(conn)
        now = conn.execute(QUERIES["now"]).fetchone()["now"]  # type: ignore[index]
        counts: collections.Counter[str] = collections.Counter()
        per_minute: collections.Counter[dt.datetime] = collections.Counter()
        for row in conn.execute(
            QUERIES["status_counts_and_throughput"], {"minutes": THROUGHPUT_MINUTES}
        ):
            counts[row["status"]] += row["events"]
            if row["minute"] is not None:
                per_minute[row["minute"]] += row["events"]
        oldest = conn.execute(QUERIES["oldest_due_queued"]).fetchone()
        # The registry's own reading, as `eventflo workers` shows it.
        running = registry.list_workers(conn, timeout=worker_timeout)
        recent = conn.execute(
            QUERIES["recent_events"],
            {"status": filters.status, "event_type": filters.event_type, "limit": RECENT_LIMIT},
        ).fetchall()
        failed = conn.execute(QUERIES["failed_events"], {"limit": FAILED_LIMIT}).fetchall()
        types = [
            row["event_type"]
            for row in conn.execute(QUERIES["recent_event_types"], {"scan": TYPE_SCAN})
        ]
    if filters.event_type and filters.event_type not in types:
        types = sorted([*types, filters.event_type])
    return Snapshot(
        now=now,
        counts={status: counts.get(status, 0) for status in events.STATUSES},
        oldest_due_since=oldest["since"] if oldest else None,
        throughput=chart(last_minutes(per_minute, now)),
        live_workers=[worker for worker in running if worker.state == "live"],
        silent_workers=sum(1 for worker in running if worker.state == "silent"),
        recent=recent,
        failed=failed,
        event_types=types,
    )


def last_minutes(
    per_minute: Mapping[dt.datetime, int], now: dt.datetime
) -> list[tuple[dt.datetime, int]]:
    """The chart's minutes, oldest first and the current one last; zero where none completed."""
    # In UTC: minute arithmetic in a zone with DST would skip or repeat an hour.
    current = now.astimezone(dt.UTC).replace(second=0, microsecond=0)
    minutes = [current - dt.timedelta(minutes=n) for n in range(THROUGHPUT_MINUTES - 1, -1, -1)]
    return [(minute, per_minute.get(minute, 0)) for minute in minutes]


def _snapshot(filters: Filters) -> Snapshot:
    state = flask.current_app.extensions["eventflo"]
    with db.borrow(state.pool) as conn:
        return read(conn, filters, worker_timeout=state.config.worker_timeout)


def _context(
    filters: Filters, snapshot: Snapshot | None, problem: EventFloError | None
) -> dict[str, Any]:
    return {
        "filters": filters,
        "snap": snapshot,
        "problem": problem,
        "statuses": events.STATUSES,
        "refresh_seconds": REFRESH_SECONDS,
        "throughput_minutes": THROUGHPUT_MINUTES,
        "recent_limit": RECENT_LIMIT,
        "live_url": flask.url_for("dashboard.live", **filters.query()),
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
    refuse_cross_site(flask.request)
    event_ids = _replay_ids(flask.request)
    selection = queue.ReplaySelection(statuses=("failed",), event_ids=tuple(event_ids))
    state = flask.current_app.extensions["eventflo"]
    requeued = 0
    with db.borrow(state.pool) as conn:
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


# -- signing in with a key ---------------------------------------------------------------

# The sign-in cookie's attributes, alike when it is set and when it is deleted (Secure aside).
_COOKIE_ATTRIBUTES: dict[str, Any] = {"path": "/", "httponly": True, "samesite": "Strict"}


@blp.get("/dashboard/login")
@auth.public
def login_form() -> Any:
    """The form that takes a key; with EVENTFLO_AUTH off there is nothing to sign in to."""
    if not auth.caller().auth:
        return flask.redirect(flask.url_for("dashboard.page"))
    return _login_page(None, 200)


@blp.post("/dashboard/login")
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
        return _login_page("Sign-in refused: the form was sent from another site.", 403)
    presented = flask.request.form.get("key", "").strip()
    if not presented:
        return _login_page("Paste an API key to sign in.", 400)
    try:
        key = auth.authenticate(flask.current_app.extensions["eventflo"].pool, presented)
    except (auth.Unauthenticated, DatabaseUnavailable, SchemaNotCurrent) as exc:
        return _login_page(exc.detail, exc.status)
    if not auth.allows(key.scope, "read"):
        return _login_page(
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


@blp.post("/dashboard/logout")
@auth.public
def logout() -> Any:
    """Forget the browser's key (the key itself stays valid until revoked)."""
    if started_elsewhere(flask.request):
        return _login_page("Sign-out refused: the form was sent from another site.", 403)
    response = flask.redirect(flask.url_for("dashboard.login_form"), 303)
    response.delete_cookie(auth.COOKIE, **_COOKIE_ATTRIBUTES)
    return response


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


def _login_page(message: str | None, status: int) -> Any:
    html = flask.render_template("dashboard/login.html", message=message)
    return html, status


@blp.errorhandler(DatabaseUnavailable)
@blp.errorhandler(SchemaNotCurrent)
def _unavailable(error: EventFloError) -> Any:
    """Checking the key needs the database too: while it is away, the page that keeps retrying."""
    if flask.request.endpoint != "dashboard.page":
        return errors.handle_eventflo_error(error)
    log.warning("dashboard: %s: %s", error.title, error.detail)
    filters = Filters.from_args(flask.request.args)
    html = flask.render_template("dashboard/page.html", **_context(filters, None, error))
    return html, error.status


@blp.errorhandler(auth.Unauthenticated)
@blp.errorhandler(auth.InsufficientScope)
def _refused(error: EventFloError) -> Any:
    """The page sends a browser to sign in; its script's requests get the problem document."""
    if flask.request.endpoint != "dashboard.page":
        return errors.handle_eventflo_error(error)
    remembered = flask.request.cookies.get(auth.COOKIE)
    if remembered and error.status == 401 and "Authorization" not in flask.request.headers:
        # The remembered key stopped working (revoked): forget it, and say why.
        response = flask.make_response(_login_page(error.detail, 401))
        response.delete_cookie(auth.COOKIE, **_COOKIE_ATTRIBUTES)
        return response
    if error.status == 403:
        return _login_page(error.detail, 403)
    return flask.redirect(flask.url_for("dashboard.login_form"), 303)


def refuse_cross_site(request: flask.Request) -> None:
    """403 unless the request carries the dashboard's action header and, if any, our own Origin."""
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


def _replay_ids(request: flask.Request) -> list[uuid.UUID]:
    """The ``event_ids`` of a JSON body ``{"event_ids": ["<uuid>", …]}``, in order, once each."""
    body = request.get_json(silent=True)
    raw = body.get("event_ids") if isinstance(body, dict) else None
    if not isinstance(raw, list) or not 1 <= len(raw) <= REPLAY_MAX_IDS:
        raise MalformedRequest(
            f'Send a JSON body {{"event_ids": [...]}} with 1 to {REPLAY_MAX_IDS} event ids.'
        )
    ids: list[uuid.UUID] = []
    for item in raw:
        try:
            event_id = uuid.UUID(item) if isinstance(item, str) else None
        except ValueError:
            event_id = None
        if event_id is None:
            raise MalformedRequest(f"{str(item)[:64]!r} is not an event id (a UUID).")
        if event_id not in ids:
            ids.append(event_id)
    return ids


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
