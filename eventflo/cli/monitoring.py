"""The commands that only read: ``stats`` (the queue, once or live) and ``workers``."""

from __future__ import annotations

import json
import sys

import click

from eventflo import db, registry, stats
from eventflo.cli.context import CliState, pass_state

DEFAULT_WATCH_INTERVAL = 2.0


@click.command("stats")
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
    help=f"Seconds between redraws with --watch.  [default: {DEFAULT_WATCH_INTERVAL:g}]",
)
@pass_state
def stats_command(state: CliState, as_json: bool, watch: bool, interval: float | None) -> None:
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
    config = state.database_config
    if watch:
        clear = "\033[H\033[2J" if sys.stdout.isatty() else ""
        stats.watch(
            lambda: db.connect(config, "eventflo-cli stats --watch"),
            worker_timeout=config.worker_timeout,
            interval=interval or DEFAULT_WATCH_INTERVAL,
            show=lambda frame: click.echo(clear + frame),
        )
        click.echo()  # after Ctrl-C, the shell's prompt on a line of its own
        return
    with state.connect("stats") as conn:
        snapshot = stats.collect(conn)
    if as_json:
        click.echo(json.dumps(snapshot, indent=2))
        return
    click.echo(stats.render(snapshot))


@click.command("workers")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--all",
    "include_stopped",
    is_flag=True,
    help="Also list the workers stopped or reaped in the last hour.",
)
@pass_state
def workers_command(state: CliState, as_json: bool, include_stopped: bool) -> None:
    """The worker processes in the registry: live, silent, and with --all stopped or reaped.

    A worker is silent when its last heartbeat is older than
    EVENTFLO_WORKER_TIMEOUT (it died, hangs, or lost the database); the next
    rescue releases its leases. A worker is reaped once it is known dead: its
    supervisor saw it exit, or it has been silent for 10 minutes and holds no
    lease any more (a heartbeat makes it live again). Stopped and reaped
    workers are listed with --all for an hour.
    """
    config = state.database_config
    with state.connect("workers") as conn:
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
