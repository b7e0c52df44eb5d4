"""``eventflo deliveries``: list the outbox, and send deliveries again."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import click

from eventflo import deliveries, endpoints, errors
from eventflo.cli.context import CliState, pass_state
from eventflo.cli.interaction import confirm_large
from eventflo.cli.params import Id, Timestamp


@click.group("deliveries")
def deliveries_group() -> None:
    """Deliveries of verdicts to endpoints: list them, replay the failed ones.

    Each delivery keeps its id across attempts and replays: receivers see it
    as the webhook-id, and dedupe on it. See docs/delivery.md.
    """


@deliveries_group.command("list")
@click.option("--endpoint", default=None, help="Only deliveries to this endpoint.")
@click.option(
    "--status", type=click.Choice(deliveries.STATUSES), default=None, help="Only this status."
)
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="At most N."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_state
def deliveries_list(
    state: CliState, endpoint: str | None, status: str | None, limit: int, as_json: bool
) -> None:
    """Deliveries, newest first: id, endpoint, event, status, attempts, last status code."""
    with state.connect("deliveries") as conn:
        if endpoint is not None:
            try:
                endpoints.get(conn, endpoint)  # an unknown name is an error, not an empty list
            except errors.EndpointNotFound as exc:
                raise click.ClickException(str(exc)) from None
        found = deliveries.list_deliveries(conn, endpoint=endpoint, status=status, limit=limit)
    if as_json:
        click.echo(json.dumps([_json(row) for row in found], indent=2))
        return
    if not found:
        click.echo("no deliveries")
        return
    for row in found:
        code = row["last_status_code"]
        click.echo(
            f"{row['id']}  {row['endpoint']}  event {row['event_id']}  {row['status']:<9}"
            f"  attempts {row['attempts']}  last status {code if code is not None else '-'}"
            f"  {row['created_at']:%Y-%m-%d %H:%M:%S}"
        )


def _json(row: dict[str, Any]) -> dict[str, Any]:
    entry = {**row, "id": str(row["id"]), "event_id": str(row["event_id"])}
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in entry.items()}


@deliveries_group.command("replay")
@click.option("--id", "delivery_id", type=Id("delivery"), default=None, help="This delivery.")
@click.option("--endpoint", default=None, help="This endpoint's failed deliveries.")
@click.option(
    "--status",
    type=click.Choice(["failed"]),
    default=None,
    help="With --endpoint: the status to replay (failed).",
)
@click.option(
    "--since", type=Timestamp(), default=None, help="With --endpoint: made at or after this."
)
@click.option("--dry-run", is_flag=True, help="Count what would be replayed; change nothing.")
@click.option("--yes", "-y", "assume_yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--confirm-above",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Ask before replaying more deliveries than this.",
)
@pass_state
def deliveries_replay(
    state: CliState,
    delivery_id: uuid.UUID | None,
    endpoint: str | None,
    status: str | None,
    since: dt.datetime | None,
    dry_run: bool,
    assume_yes: bool,
    confirm_above: int,
) -> None:
    """Send deliveries again: one by --id (whatever its status), or an endpoint's failed ones.

    A replayed delivery starts a new run of attempts, due now, with the same
    id, so its receiver sees the same webhook-id.
    """
    if (delivery_id is None) == (endpoint is None):
        raise click.UsageError("give either --id ID, or --endpoint NAME --status failed")
    if delivery_id is not None:
        if status is not None or since is not None:
            raise click.UsageError("--status and --since go with --endpoint, not with --id")
        if dry_run:
            click.echo(f"would replay delivery {delivery_id}")
            return
        with state.connect("deliveries") as conn:
            try:
                deliveries.replay_one(conn, delivery_id)
            except (errors.DeliveryNotFound, errors.DeliveryBusy) as exc:
                raise click.ClickException(str(exc)) from None
        click.echo(f"replayed delivery {delivery_id}: due now")
        return
    assert endpoint is not None
    if status is None:
        raise click.UsageError("--endpoint needs --status failed (the deliveries to replay)")
    with state.connect("deliveries") as conn:
        try:
            endpoints.get(conn, endpoint)
        except errors.EndpointNotFound as exc:
            raise click.ClickException(str(exc)) from None
        count = deliveries.count_failed(conn, endpoint, since)
        if dry_run or not count:
            verb = "would replay" if dry_run else "nothing to replay:"
            click.echo(f"{verb} {count} failed deliveries to {endpoint!r}")
            return
        confirm_large(
            count,
            f"replay {count} failed deliveries to {endpoint!r}?",
            confirm_above=confirm_above,
            assume_yes=assume_yes,
        )
        replayed = deliveries.replay_failed(conn, endpoint, since)
    click.echo(f"replayed {replayed} failed deliveries to {endpoint!r}: due now")
