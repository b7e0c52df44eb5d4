"""The ``eventflo`` command: migrate, serve, worker(s), replay, purge, stats, dev and bench."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click
import psycopg

from eventflo import bench, db, keys, migrate, queue, registry, retention, stats
from eventflo.config import Config, ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def _config() -> Config:
    try:
        return Config.from_env()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _database_url(config: Config) -> str:
    try:
        return config.require_database_url()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


@contextlib.contextmanager
def _connected(purpose: str) -> Iterator[tuple[Config, psycopg.Connection[dict[str, Any]]]]:
    """A command's settings and its one connection (no database URL is a usage error)."""
    config = _config()
    _database_url(config)
    with db.connect(config, f"eventflo-cli {purpose}") as conn:
        yield config, conn


def database_errors(func: F) -> F:
    """An unreachable database (or one not migrated) is a one-line error and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except psycopg.OperationalError as exc:
            raise click.ClickException(f"database unavailable: {_first_line(exc)}") from None
        except psycopg.errors.UndefinedTable as exc:
            raise click.ClickException(
                f"the database schema is not current ({_first_line(exc)}); run: eventflo migrate"
            ) from None

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="eventflo")
def main() -> None:
    """EventFlo: an event-processing backend in which PostgreSQL is the queue.

    Settings come from EVENTFLO_* environment variables (see the README).
    """


@main.command("migrate")
@click.option(
    "--rollback",
    "rollback_steps",
    type=click.IntRange(min=1),
    default=None,
    help="Roll back this many of the newest migrations instead of applying.",
)
@click.option("--list", "list_pending", is_flag=True, help="Only list pending migrations.")
@database_errors
def migrate_command(rollback_steps: int | None, list_pending: bool) -> None:
    """Apply the schema migrations (plain SQL files in migrations/)."""
    url = _database_url(_config())
    try:
        migrate.migrations_dir()
    except migrate.MigrationsNotFound as exc:
        raise click.ClickException(str(exc)) from None
    if list_pending:
        names = migrate.pending(url)
        click.echo("\n".join(names) if names else "no pending migrations")
        return
    if rollback_steps is not None:
        names = migrate.rollback(url, rollback_steps)
        click.echo(f"rolled back {len(names)} migration(s): {', '.join(names) or '-'}")
        return
    names = migrate.apply(url)
    click.echo(f"applied {len(names)} migration(s){': ' + ', '.join(names) if names else ''}")


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="gunicorn worker processes.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Threads per process (long-polls hold one each).",
)
@database_errors
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Serve the HTTP API with gunicorn.

    The database is checked once first, so a wrong URL fails now; once
    serving, an unreachable database makes requests answer 503 until it is back.
    """
    from eventflo import serving

    config = _config()
    _database_url(config)
    with db.connect(config, "eventflo-cli serve") as conn:
        if config.auth and not _any_active_key(conn):
            click.echo(
                "warning: EVENTFLO_AUTH is on and no API key exists yet, so every request but the"
                " probes, metrics and docs gets a 401; make one with"
                " `eventflo keys create --name NAME --scope SCOPE`",
                err=True,
            )
    serving.run_gunicorn(config, bind=f"{host}:{port}", workers=workers, threads=threads)


def _any_active_key(conn: Any) -> bool:
    """Whether a key that is not revoked exists (yes, if the keys table is not there yet)."""
    try:
        return bool(keys.list_keys(conn))
    except psycopg.errors.UndefinedTable:
        return True  # unmigrated: requests will say so (503) more precisely than we can here


@main.command("worker")
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes to run under one supervisor.",
)
def worker_command(processes: int) -> None:
    """Process queued events until SIGTERM or Ctrl-C (then finish the batch in hand and exit 0)."""
    from eventflo import worker

    config = _config()
    _database_url(config)
    if processes == 1:
        worker.run_worker(config)
    else:
        sys.exit(worker.run_supervisor(config, processes))


class _Timestamp(click.ParamType):
    """ISO 8601 date or date-time; without a zone it means UTC."""

    name = "timestamp"

    def convert(self, value: Any, param: Any, ctx: Any) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 date or date-time (e.g. 2026-11-25T18:00:00Z)")
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class _EventId(click.ParamType):
    name = "event_id"

    def convert(self, value: Any, param: Any, ctx: Any) -> uuid.UUID:
        try:
            return uuid.UUID(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an event id (a UUID)")


class _Duration(click.ParamType):
    """An age: a whole number and d, h, m or s (30d, 12h, 90m, 3600s)."""

    name = "duration"

    def convert(self, value: Any, param: Any, ctx: Any) -> dt.timedelta:
        if isinstance(value, dt.timedelta):
            return value
        try:
            return retention.parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc))


# Without a terminal (cron, systemd, CI logs) progress comes as a line this often.
PROGRESS_LINE_SECONDS = 10.0


def _confirm_large(count: int, question: str, *, confirm_above: int, assume_yes: bool) -> None:
    """Ask before acting on more than ``confirm_above`` events unless --yes; "no" exits 1."""
    if count > confirm_above and not assume_yes:
        click.confirm(question, abort=True)


@contextlib.contextmanager
def _progress(length: int, label: str) -> Iterator[Callable[[int], None]]:
    """Progress on stderr: a bar on a terminal, else a line every PROGRESS_LINE_SECONDS.

    Yields ``advance(n)``, to call as each chunk of work is done.
    """
    if sys.stderr.isatty():
        with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
            yield bar.update
        return
    done = 0
    last_line = time.monotonic()

    def advance(n: int) -> None:
        nonlocal done, last_line
        done += n
        if time.monotonic() - last_line >= PROGRESS_LINE_SECONDS:
            last_line = time.monotonic()
            click.echo(f"{label}: {done:,} of {length:,} event(s)", err=True)

    yield advance


@main.command("replay")
@click.option(
    "--status",
    "statuses",
    type=click.Choice(["failed", "completed"]),
    multiple=True,
    help="Replay events in this status (repeatable). Default: failed.",
)
@click.option("--event-type", default=None, help="Only events of this type.")
@click.option(
    "--since", type=_Timestamp(), default=None, help="Only events created at or after this."
)
@click.option("--until", type=_Timestamp(), default=None, help="Only events created before this.")
@click.option(
    "--id", "event_ids", type=_EventId(), multiple=True, help="Only these events (repeatable)."
)
@click.option("--dry-run", is_flag=True, help="Show what would be replayed; change nothing.")
@click.option("--yes", "-y", "assume_yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--confirm-above",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Ask before replaying more events than this.",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Events requeued per transaction.",
)
@database_errors
def replay(
    statuses: tuple[str, ...],
    event_type: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    event_ids: tuple[uuid.UUID, ...],
    dry_run: bool,
    assume_yes: bool,
    confirm_above: int,
    chunk_size: int,
) -> None:
    """Requeue finished events so workers process them again.

    Only failed (default) or completed events are touched; an event that is
    queued or being processed is never changed, so it is safe while workers run.
    """
    if since and until and since >= until:
        raise click.BadParameter("--since must be earlier than --until", param_hint="--since")
    selection = queue.ReplaySelection(
        statuses=statuses or ("failed",),
        event_type=event_type,
        created_after=since,
        created_before=until,
        event_ids=event_ids or None,
    )
    with _connected("replay") as (config, conn):
        candidates = queue.replay_candidates(conn, selection)
        what = "/".join(selection.statuses)
        if not candidates:
            click.echo(f"no {what} events match; nothing to replay")
            return
        if dry_run:
            click.echo(f"would replay {len(candidates)} {what} event(s):")
            for event_id in candidates[:20]:
                click.echo(f"  {event_id}")
            if len(candidates) > 20:
                click.echo(f"  … and {len(candidates) - 20} more")
            return
        _confirm_large(
            len(candidates),
            f"Replay {len(candidates)} {what} event(s)?",
            confirm_above=confirm_above,
            assume_yes=assume_yes,
        )
        requeued = 0
        chunks = [candidates[i : i + chunk_size] for i in range(0, len(candidates), chunk_size)]
        with _progress(len(candidates), "replaying") as advance:
            for chunk in chunks:
                requeued += queue.replay(conn, chunk, selection.statuses)
                advance(len(chunk))
    skipped = len(candidates) - requeued
    note = f" ({skipped} changed status meanwhile and were left alone)" if skipped else ""
    click.echo(f"requeued {requeued} event(s){note}")


@main.command("purge")
@click.option(
    "--older-than",
    type=_Duration(),
    default=retention.DEFAULT_RETENTION,
    show_default=True,
    help="Delete events that finished longer ago than this: 30d, 12h, 90m or 3600s.",
)
@click.option(
    "--status",
    "statuses",
    type=click.Choice(retention.PURGEABLE_STATUSES),
    multiple=True,
    help="Delete events in this status (repeatable). Default: completed and failed.",
)
@click.option("--dry-run", is_flag=True, help="Show how many events would go; delete nothing.")
@click.option("--yes", "-y", "assume_yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--confirm-above",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Ask before deleting more events than this.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=retention.DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Events deleted per transaction.",
)
@click.option(
    "--pause",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to sleep between batches (lets replicas and vacuum keep up).",
)
@database_errors
def purge(
    older_than: dt.timedelta,
    statuses: tuple[str, ...],
    dry_run: bool,
    assume_yes: bool,
    confirm_above: int,
    batch_size: int,
    pause: float,
) -> None:
    """Delete finished events older than --older-than, with their results and attempt history.

    An event's age counts from its last update, which for a completed or
    failed event is when it finished. Queued and processing events are never
    deleted. Each batch is its own short transaction that skips rows other
    transactions hold, so it is safe while workers (and replays) run; a
    skipped event is left for the next run. EventFlo never deletes on its
    own: run this from cron or a systemd timer (see the README).
    """
    with _connected("purge") as (config, conn):
        selection = retention.select(
            conn, older_than=older_than, statuses=statuses or retention.PURGEABLE_STATUSES
        )
        what = "/".join(selection.statuses)
        when = f"finished before {_utc(selection.cutoff)}"
        found = retention.count(conn, selection)
        if not found.deleted:
            click.echo(f"no {what} events {when}; nothing to purge")
            return
        if dry_run:
            click.echo(f"would purge {found.deleted} event(s) {when} ({_by_status(found)})")
            return
        _confirm_large(
            found.deleted,
            f"Delete {found.deleted} {what} event(s) {when}?",
            confirm_above=confirm_above,
            assume_yes=assume_yes,
        )
        completed = failed = 0
        try:
            with _progress(found.deleted, "purging") as advance:
                batches = retention.purge_batches(
                    conn, selection, batch_size=batch_size, pause=pause
                )
                for batch in batches:
                    completed += batch.completed
                    failed += batch.failed
                    advance(batch.deleted)
        except (psycopg.errors.QueryCanceled, KeyboardInterrupt) as exc:
            why = (
                "interrupted"
                if isinstance(exc, KeyboardInterrupt)
                else "a batch exceeded EVENTFLO_STATEMENT_TIMEOUT (try a smaller --batch-size)"
            )
            raise click.ClickException(
                f"{why}; purged {completed + failed} event(s) before that, run again to go on"
            ) from None
        left = retention.count(conn, selection).deleted
    done = retention.Batch(completed=completed, failed=failed)
    note = f"; {left} held by other transactions meanwhile, left for the next run" if left else ""
    click.echo(f"purged {done.deleted} event(s) {when} ({_by_status(done)}){note}")


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _by_status(counts: retention.Batch) -> str:
    return f"{counts.completed} completed, {counts.failed} failed"


@main.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table (once).")
@click.option(
    "--watch",
    is_flag=True,
    help="Redraw every --interval seconds, with the running workers, until Ctrl-C.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Seconds between redraws with --watch.  [default: 2]",
)
@database_errors
def stats_command(as_json: bool, watch: bool, interval: float | None) -> None:
    """Counts by status and severity, and the age of the oldest due queued event.

    With --watch, a view that refreshes in the terminal and adds the
    throughput and the running workers; Ctrl-C quits (exit 0). --watch is
    for people: it cannot be combined with --json (run --json repeatedly,
    or scrape /metrics, for a machine).
    """
    if watch and as_json:
        raise click.UsageError("--watch cannot be combined with --json (a view for a terminal)")
    if interval is not None and not watch:
        raise click.UsageError("--interval needs --watch")
    config = _config()
    _database_url(config)
    if watch:
        _watch_stats(config, interval or 2.0)
        return
    with db.connect(config, "eventflo-cli stats") as conn:
        snapshot = stats.collect(conn)
    if as_json:
        click.echo(json.dumps(snapshot, indent=2))
        return
    click.echo(stats.render(snapshot))


def _watch_stats(config: Config, interval: float) -> None:
    """Clear and redraw every ``interval`` s until Ctrl-C.

    The first connection must succeed (or the command fails as usual); an
    outage after that shows in the view, which reconnects by itself.
    """
    clear = "\033[H\033[2J" if click.get_text_stream("stdout").isatty() else ""
    name = "eventflo-cli stats --watch"
    conn: psycopg.Connection[dict[str, Any]] | None = db.connect(config, name)
    previous: tuple[int, float] | None = None  # (completed, monotonic time) of the last frame
    try:
        while True:
            try:
                if conn is None:
                    conn = db.connect(config, name)
                snapshot = stats.collect(conn)
                running = registry.list_workers(conn, timeout=config.worker_timeout)
            except psycopg.OperationalError as exc:
                if conn is not None:
                    conn.close()
                conn, previous = None, None
                body = f"database unavailable: {_first_line(exc)}; retrying every {interval:g} s"
            else:
                completed, at = snapshot["by_status"]["completed"], time.monotonic()
                rate = (
                    None
                    if previous is None
                    else max(0, completed - previous[0]) / (at - previous[1])
                )
                previous = (completed, at)
                body = stats.render_watch(
                    snapshot,
                    running,
                    worker_timeout=config.worker_timeout,
                    interval=interval,
                    completed_per_s=rate,
                    now=dt.datetime.now().astimezone(),
                )
            click.echo(clear + body)
            time.sleep(interval)
    except KeyboardInterrupt:
        click.echo()
    finally:
        if conn is not None:
            conn.close()


@main.command("workers")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--all", "include_stopped", is_flag=True, help="Also list the workers stopped in the last hour."
)
@database_errors
def workers_command(as_json: bool, include_stopped: bool) -> None:
    """The worker processes in the registry: live, silent, and with --all recently stopped.

    A worker is silent when its last heartbeat is older than
    EVENTFLO_WORKER_TIMEOUT (it died, hangs, or lost the database; its leases
    are released at once). Silent workers are listed for a day, stopped ones
    for an hour.
    """
    with _connected("workers") as (config, conn):
        found = registry.list_workers(
            conn, timeout=config.worker_timeout, include_stopped=include_stopped
        )
    if as_json:
        document = {
            "worker_timeout_seconds": config.worker_timeout,
            "workers": [worker.to_json() for worker in found],
        }
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(registry.render(found, timeout=config.worker_timeout))


@main.group("keys")
def keys_group() -> None:
    """API keys: create (shown once, stored as a hash), list, revoke.

    The API does not ask for keys yet (see the README, "API keys").
    """


@keys_group.command("create")
@click.option("--name", required=True, help="Who or what the key is for (1 to 100 characters).")
@click.option(
    "--scope",
    type=click.Choice(keys.SCOPES),
    default="ingest",
    show_default=True,
    help="ingest: post events; read: read events; admin: everything, replay included.",
)
@database_errors
def keys_create(name: str, scope: str) -> None:
    """Make a key and print it once: only its hash is stored, so it cannot be shown again."""
    if not 1 <= len(name) <= 100:
        raise click.BadParameter("must be 1 to 100 characters", param_hint="--name")
    with _connected("keys") as (_, conn):
        record, key = keys.create(conn, name=name, scope=scope)
    click.echo(key)
    click.echo(
        f"created key {record.prefix}… ({record.id}) named {record.name!r}, scope {record.scope};"
        " it is shown only this once",
        err=True,
    )


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--all", "include_revoked", is_flag=True, help="Also list revoked keys.")
@database_errors
def keys_list(as_json: bool, include_revoked: bool) -> None:
    """The keys, newest first: id, prefix, name, scope, created, revoked; never a key itself."""
    with _connected("keys") as (_, conn):
        found = keys.list_keys(conn, include_revoked=include_revoked)
    if as_json:
        click.echo(json.dumps([key.to_json() for key in found], indent=2))
        return
    if not found:
        click.echo("no keys")
        return
    for key in found:
        revoked = f"  revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else ""
        click.echo(
            f"{key.id}  {key.prefix}…  {key.scope:<6}  {key.created_at:%Y-%m-%d %H:%M}"
            f"  {key.name}{revoked}"
        )


@keys_group.command("revoke")
@click.argument("key")
@database_errors
def keys_revoke(key: str) -> None:
    """Revoke the key with this id or prefix (as `eventflo keys list` shows them)."""
    with _connected("keys") as (_, conn):
        revoked = keys.revoke(conn, key.removesuffix("…"))
    if not revoked:
        raise click.ClickException(f"no key has the id or prefix {key!r}")
    for record in revoked:
        click.echo(f"revoked key {record.prefix}… ({record.id}) named {record.name!r}")


@main.command("dev")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--workers",
    "worker_processes",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Worker processes.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=".eventflo/pgdata",
    show_default=True,
    help="Embedded PostgreSQL's data (kept between runs).",
)
def dev(port: int, worker_processes: int, data_dir: str) -> None:
    """Run everything locally: PostgreSQL (embedded unless EVENTFLO_DATABASE_URL is set), migrations, API, workers."""
    from eventflo import devserver

    sys.exit(
        devserver.run(_config(), port=port, worker_processes=worker_processes, data_dir=data_dir)
    )


@main.command("bench")
@click.argument("modes", nargs=-1, metavar="[MODE]...", type=click.Choice(bench.MODE_NAMES))
@click.option(
    "--events",
    type=click.IntRange(min=1),
    default=100_000,
    show_default=True,
    help="Events per run.",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=4, show_default=True, help="Worker processes."
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Events a worker claims at once.",
)
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Runs per figure; the report shows their median and min-max.",
)
@click.option(
    "--growth-rows",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="Completed events stored for the second half of the growth mode.",
)
@click.option(
    "--latency-events",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Events sent one at a time per path in the latency mode.",
)
@click.option(
    "--clients",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Concurrent HTTP clients in the ingest mode.",
)
@click.option(
    "--ingest-requests",
    type=click.IntRange(min=1),
    default=5000,
    show_default=True,
    help="Single-event POSTs per ingest run (the batch run sends 10x as many events).",
)
@click.option(
    "--held-seconds",
    type=click.FloatRange(min=1),
    default=120,
    show_default=True,
    help="Length of a held-xmin run; its first and last windows are 10% of it "
    "(at least 10 s, at most half).",
)
@click.option(
    "--memory-events",
    type=click.IntRange(min=2),
    default=200_000,
    show_default=True,
    help="Events the one worker drains per memory run.",
)
@click.option(
    "--memory-first-events",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Events after which the memory mode takes its first RSS reading.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--keep", is_flag=True, help="Keep the scratch database afterwards.")
@database_errors
def bench_command(
    modes: tuple[str, ...],
    events: int,
    workers: int,
    batch_size: int,
    runs: int,
    growth_rows: int,
    latency_events: int,
    clients: int,
    ingest_requests: int,
    held_seconds: float,
    memory_events: int,
    memory_first_events: int,
    as_json: bool,
    keep: bool,
) -> None:
    """Measure throughput on this machine, like pgbench does for PostgreSQL.

    MODE is one or more of: drain (the real workers drain N queued events),
    floor (the minimal raw-SQL claim/complete loop, for comparison), growth
    (drain with an empty table vs with --growth-rows completed events
    stored), latency (one event at a time through idle workers, by SQL and
    through the HTTP API: p50/p95/p99), ingest (--clients concurrent clients
    POST events to the API under gunicorn, with and without the NOTIFY
    trigger, and in batches of 1,000), held-xmin (ingest and processing for
    --held-seconds while a REPEATABLE READ snapshot is held open: events/s in
    the first and last window, dead tuples at start and end), memory (one
    worker process drains --memory-events events: its RSS after
    --memory-first-events and at the end). Default: drain floor.

    Runs in a scratch database created on the configured server (the role
    needs CREATEDB) and dropped at the end; your data is never touched.
    """
    from eventflo.bench import report

    if "memory" in modes and memory_first_events >= memory_events:
        raise click.BadParameter(
            "must be smaller than --memory-events", param_hint="--memory-first-events"
        )
    config = _config()
    url = _database_url(config)
    settings = bench.Settings(
        events=events,
        workers=workers,
        batch_size=batch_size,
        runs=runs,
        growth_rows=growth_rows,
        latency_events=latency_events,
        clients=clients,
        ingest_requests=ingest_requests,
        held_seconds=held_seconds,
        memory_events=memory_events,
        memory_first_events=memory_first_events,
        keep=keep,
    )
    try:
        result = bench.run(
            url,
            settings,
            modes or bench.DEFAULT_MODES,
            statement_timeout=config.statement_timeout,
            progress=lambda line: click.echo(line, err=True),
        )
    except bench.BenchError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(report.to_json(result), indent=2) if as_json else report.render(result))
    if not result.ok:
        sys.exit(1)
