"""The commands that change stored events: ``replay`` (requeue) and ``purge`` (delete old ones)."""

from __future__ import annotations

import datetime as dt
import uuid

import click

from eventflo import queue, replay, retention
from eventflo.cli.context import CliState, pass_state
from eventflo.cli.interaction import confirm_large, progress
from eventflo.cli.params import Duration, Id, Timestamp
from eventflo.status import Status

# How many ids a dry run lists before it summarises the rest.
DRY_RUN_LISTED = 20


@click.command("replay")
@click.option(
    "--status",
    "statuses",
    type=click.Choice([Status.failed.value, Status.completed.value]),
    multiple=True,
    help="Replay events in this status (repeatable). Default: failed.",
)
@click.option("--event-type", default=None, help="Only events of this type.")
@click.option(
    "--since", type=Timestamp(), default=None, help="Only events created at or after this."
)
@click.option("--until", type=Timestamp(), default=None, help="Only events created before this.")
@click.option(
    "--id", "event_ids", type=Id("event"), multiple=True, help="Only these events (repeatable)."
)
@click.option(
    "--rules-version-before",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Only completed events judged by a rule version older than N.",
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
    default=replay.DEFAULT_CHUNK_SIZE,
    show_default=True,
    help="Events requeued per transaction.",
)
@pass_state
def replay_command(
    state: CliState,
    statuses: tuple[str, ...],
    event_type: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    event_ids: tuple[uuid.UUID, ...],
    rules_version_before: int | None,
    dry_run: bool,
    assume_yes: bool,
    confirm_above: int,
    chunk_size: int,
) -> None:
    """Requeue finished events so workers process them again.

    Only failed (default) or completed events are touched; an event that is
    queued or being processed is never changed, so it is safe while workers run.
    After `eventflo rules apply` (version N), `--status completed
    --rules-version-before N` judges again what older versions judged.
    """
    if since and until and since >= until:
        raise click.BadParameter("--since must be earlier than --until", param_hint="--since")
    if rules_version_before is not None and Status.completed.value not in statuses:
        raise click.BadParameter(
            "only completed events have a rules version; use it with --status completed",
            param_hint="--rules-version-before",
        )
    selection = queue.ReplaySelection(
        statuses=statuses or (Status.failed.value,),
        event_type=event_type,
        created_after=since,
        created_before=until,
        event_ids=event_ids or None,
        rules_version_before=rules_version_before,
    )
    with state.connect("replay") as conn:
        candidates = queue.replay_candidates(conn, selection)
        what = "/".join(selection.statuses)
        if not candidates:
            click.echo(f"no {what} events match; nothing to replay")
            return
        if dry_run:
            click.echo(f"would replay {len(candidates)} {what} event(s):")
            for event_id in candidates[:DRY_RUN_LISTED]:
                click.echo(f"  {event_id}")
            if len(candidates) > DRY_RUN_LISTED:
                click.echo(f"  … and {len(candidates) - DRY_RUN_LISTED} more")
            return
        confirm_large(
            len(candidates),
            f"Replay {len(candidates)} {what} event(s)?",
            confirm_above=confirm_above,
            assume_yes=assume_yes,
        )
        with progress(len(candidates), "replaying") as advance:
            requeued = replay.requeue(
                conn, candidates, selection.statuses, chunk_size=chunk_size, progress=advance
            )
    skipped = len(candidates) - requeued
    note = f" ({skipped} changed status meanwhile and were left alone)" if skipped else ""
    click.echo(f"requeued {requeued} event(s){note}")


@click.command("purge")
@click.option(
    "--older-than",
    type=Duration(),
    default=retention.DEFAULT_RETENTION,
    show_default=True,
    help="Delete events that finished longer ago than this: 30d, 12h, 90m or 3600s.",
)
@click.option(
    "--status",
    "statuses",
    type=click.Choice([status.value for status in retention.PURGEABLE_STATUSES]),
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
@pass_state
def purge(
    state: CliState,
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
    own: run this from cron or a systemd timer (see docs/operations.md).
    """
    with state.connect("purge") as conn:
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
        confirm_large(
            found.deleted,
            f"Delete {found.deleted} {what} event(s) {when}?",
            confirm_above=confirm_above,
            assume_yes=assume_yes,
        )
        try:
            with progress(found.deleted, "purging") as advance:
                done = retention.purge(
                    conn,
                    selection,
                    batch_size=batch_size,
                    pause=pause,
                    progress=lambda batch: advance(batch.deleted),
                )
        except retention.PurgeStopped as exc:
            why = (
                "a batch exceeded EVENTFLO_STATEMENT_TIMEOUT (try a smaller --batch-size)"
                if exc.timed_out
                else "interrupted"
            )
            raise click.ClickException(
                f"{why}; purged {exc.done.deleted} event(s) before that, run again to go on"
            ) from None
        left = retention.count(conn, selection).deleted
    note = f"; {left} held by other transactions meanwhile, left for the next run" if left else ""
    click.echo(f"purged {done.deleted} event(s) {when} ({_by_status(done)}){note}")


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _by_status(counts: retention.Batch) -> str:
    return f"{counts.completed} completed, {counts.failed} failed"
