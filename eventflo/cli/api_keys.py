"""``eventflo keys``: make, list and revoke the API keys clients present."""

from __future__ import annotations

import json

import click

from eventflo import keys
from eventflo.cli.context import CliState, pass_state


@click.group("keys")
def keys_group() -> None:
    """API keys: create (shown once, stored as a hash), list, revoke.

    With EVENTFLO_AUTH on (the default), every API request but the probes,
    metrics and docs needs a key (Authorization: Bearer KEY), and the
    dashboard asks for one to sign in; a revoked key stops working with the
    next request. See docs/operations.md.
    """


@keys_group.command("create")
@click.option("--name", required=True, help="Who or what the key is for (1 to 100 characters).")
@click.option(
    "--scope",
    type=click.Choice(keys.SCOPES),
    default="ingest",
    show_default=True,
    help=(
        "ingest: post events; read: read events and view the dashboard;"
        " admin: everything, the dashboard's replay included."
    ),
)
@pass_state
def keys_create(state: CliState, name: str, scope: str) -> None:
    """Make a key and print it once: only its hash is stored, so it cannot be shown again."""
    if not 1 <= len(name) <= 100:
        raise click.BadParameter("must be 1 to 100 characters", param_hint="--name")
    with state.connect("keys") as conn:
        record, key = keys.create(conn, name=name, scope=scope)
    click.echo(key)
    click.echo(
        f"created key {record.prefix}… ({record.id}) named {record.name!r}, scope {record.scope};"
        " it is shown only this once",
        err=True,
    )
    unchecked = _why_keys_are_not_checked(state)
    if unchecked:
        click.echo(
            f"note: keys are not checked in this mode ({unchecked}): the API accepts requests"
            " without one; the key works once EVENTFLO_AUTH is on",
            err=True,
        )


def _why_keys_are_not_checked(state: CliState) -> str | None:
    """Why the API this key is for would not ask for it, if it would not."""
    if not state.config.auth:
        return "EVENTFLO_AUTH=off"
    dev = state.dev_instance
    if dev is not None and not dev.auth:
        return f"the `eventflo dev` on port {dev.port} runs with EVENTFLO_AUTH=off"
    return None


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--all", "include_revoked", is_flag=True, help="Also list revoked keys.")
@pass_state
def keys_list(state: CliState, as_json: bool, include_revoked: bool) -> None:
    """The keys, newest first: id, prefix, scope, created, name, revoked; never a key itself."""
    with state.connect("keys") as conn:
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
@pass_state
def keys_revoke(state: CliState, key: str) -> None:
    """Revoke the key with this id or prefix (as `eventflo keys list` shows them)."""
    with state.connect("keys") as conn:
        revoked = keys.revoke(conn, key.removesuffix("…"))
    if not revoked:
        raise click.ClickException(f"no key has the id or prefix {key!r}")
    for record in revoked:
        click.echo(f"revoked key {record.prefix}… ({record.id}) named {record.name!r}")
