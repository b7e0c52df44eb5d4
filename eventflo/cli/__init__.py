"""The ``eventflo`` command: migrate, serve, workers, replay, purge, stats, keys, rules, …

This package holds only the command line: each command parses its options,
calls the module that does the work, and prints. The settings are read once
per invocation (context.CliState) and database errors are translated once,
for every command, by the group. Importing it loads neither the web stack
nor the bench: the commands that need them import them when they run.
"""

from __future__ import annotations

from typing import Any

import click

from eventflo.cli.api_keys import keys_group
from eventflo.cli.benchmark import bench_command
from eventflo.cli.context import CliState, database_errors
from eventflo.cli.deliveries import deliveries_group
from eventflo.cli.endpoints import endpoints_group
from eventflo.cli.maintenance import purge, replay_command
from eventflo.cli.migrations import migrate_command
from eventflo.cli.monitoring import stats_command, workers_command
from eventflo.cli.processes import deliver_command, dev, serve, worker_command
from eventflo.cli.rules import rules_group


class EventFloGroup(click.Group):
    """A group whose commands all get the one translation of database errors."""

    def invoke(self, ctx: click.Context) -> Any:
        with database_errors():
            return super().invoke(ctx)


@click.group(cls=EventFloGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="eventflo")
@click.pass_context
def main(ctx: click.Context) -> None:
    """EventFlo: an event-processing backend in which PostgreSQL is the queue.

    Settings come from EVENTFLO_* environment variables (see
    docs/configuration.md). Without EVENTFLO_DATABASE_URL, the commands use
    the database of the `eventflo dev` running from this directory, and say so.
    """
    ctx.ensure_object(CliState)


for command in (
    migrate_command,
    serve,
    worker_command,
    deliver_command,
    replay_command,
    purge,
    stats_command,
    workers_command,
    keys_group,
    rules_group,
    endpoints_group,
    deliveries_group,
    dev,
    bench_command,
):
    main.add_command(command)

__all__ = ["main", "serve"]
