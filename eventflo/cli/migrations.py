"""``eventflo migrate``: apply, list or roll back the schema migrations."""

from __future__ import annotations

import click

from eventflo import migrate
from eventflo.cli.context import CliState, pass_state


@click.command("migrate")
@click.option(
    "--rollback",
    "rollback_steps",
    type=click.IntRange(min=1),
    default=None,
    help="Roll back this many of the newest migrations instead of applying.",
)
@click.option("--list", "list_pending", is_flag=True, help="Only list pending migrations.")
@pass_state
def migrate_command(state: CliState, rollback_steps: int | None, list_pending: bool) -> None:
    """Apply the schema migrations (plain SQL files in migrations/).

    Only pending migrations are applied, under a lock in the database, so
    two runs at once are safe.
    """
    url = state.database_url
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
