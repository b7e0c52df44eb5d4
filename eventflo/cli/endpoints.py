"""``eventflo endpoints``: register, inspect and manage where verdicts are delivered."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

import click

from eventflo import delivery_filter, endpoints
from eventflo.cli.context import CliState, pass_state


@click.group("endpoints")
def endpoints_group() -> None:
    """Endpoints: where verdicts go (Standard Webhooks, Slack, PagerDuty).

    Each completed event whose verdict matches an enabled endpoint's filter
    gets a delivery to it, written in the same transaction as the verdict.
    URLs must be https:// and public unless EVENTFLO_ALLOW_PRIVATE_ENDPOINTS
    is on. See docs/delivery.md.
    """


def _errors(action: Callable[[], Any]) -> Any:
    """Run ``action``; an endpoint error is a one-line CLI error (exit 1)."""
    try:
        return action()
    except (endpoints.EndpointError, endpoints.EndpointNotFound) as exc:
        raise click.ClickException(str(exc)) from None


@endpoints_group.command("add")
@click.option("--name", required=True, help=f"A unique name: {endpoints.NAME_PATTERN} characters.")
@click.option("--url", required=True, help="Where to send: https:// and a public address.")
@click.option(
    "--format",
    "format_",
    type=click.Choice(endpoints.FORMATS),
    default="standard",
    show_default=True,
    help="standard: a signed Standard Webhooks request; slack: an incoming-webhook message;"
    " pagerduty: an Events API v2 trigger.",
)
@click.option(
    "--filter",
    "filter_",
    default=delivery_filter.DEFAULT,
    show_default=True,
    help="A CEL expression over event and result: the verdicts this endpoint receives.",
)
@click.option("--routing-key", help="PagerDuty's integration key (the pagerduty format only).")
@pass_state
def endpoints_add(
    state: CliState,
    name: str,
    url: str,
    format_: str,
    filter_: str,
    routing_key: str | None,
) -> None:
    """Register an endpoint; a standard one's signing secret is printed once."""
    allow_private = state.config.allow_private_endpoints
    with state.connect("endpoints") as conn:
        created = _errors(
            lambda: endpoints.create(
                conn,
                name=name,
                url=url,
                format=format_,
                filter=filter_,
                routing_key=routing_key,
                allow_private=allow_private,
            )
        )
    endpoint = created.endpoint
    if created.secret is not None:
        click.echo(created.secret)
        click.echo(
            f"created endpoint {endpoint.name!r} ({endpoint.format}, {endpoint.shown_url});"
            " its signing secret is above, shown only this once",
            err=True,
        )
    else:
        click.echo(f"created endpoint {endpoint.name!r} ({endpoint.format}, {endpoint.shown_url})")


@endpoints_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_state
def endpoints_list(state: CliState, as_json: bool) -> None:
    """Every endpoint by name: format, state, deliveries pending and failed, URL; no secret."""
    with state.connect("endpoints") as conn:
        found = endpoints.list_endpoints(conn)
    if as_json:
        click.echo(json.dumps([e.to_json() for e in found], indent=2))
        return
    if not found:
        click.echo("no endpoints")
        return
    width = max(len(endpoint.name) for endpoint in found)
    for endpoint in found:
        click.echo(
            f"{endpoint.name:<{width}}  {endpoint.format:<9}  {_state(endpoint):<8}"
            f"  pending {endpoint.pending}  failed {endpoint.failed}  {endpoint.shown_url}"
        )


def _state(endpoint: endpoints.Endpoint) -> str:
    if not endpoint.enabled:
        return "disabled"
    return "failing" if endpoint.failure_streak else "ok"


@endpoints_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_state
def endpoints_show(state: CliState, name: str, as_json: bool) -> None:
    """One endpoint: its settings, its health and its recent deliveries; no secret."""
    with state.connect("endpoints") as conn:
        endpoint = _errors(lambda: endpoints.get(conn, name))
        recent = endpoints.recent_deliveries(conn, endpoint)
    if as_json:
        entry = endpoint.to_json()
        entry["recent_deliveries"] = [_delivery_json(d) for d in recent]
        click.echo(json.dumps(entry, indent=2))
        return
    for line in _describe(endpoint):
        click.echo(line)
    click.echo(f"recent deliveries ({len(recent)}):" if recent else "no deliveries yet")
    for delivery in recent:
        code = delivery["last_status_code"]
        click.echo(
            f"  {delivery['id']}  event {delivery['event_id']}  {delivery['status']:<9}"
            f"  attempts {delivery['attempts']}  last status {code if code is not None else '-'}"
        )


def _describe(endpoint: endpoints.Endpoint) -> Iterator[str]:
    yield f"name:         {endpoint.name}"
    yield f"url:          {endpoint.shown_url}"
    yield f"format:       {endpoint.format}"
    yield f"filter:       {endpoint.filter}"
    if endpoint.routing_key is not None:
        yield f"routing key:  {endpoints.shorten(endpoint.routing_key)}"
    if endpoint.enabled:
        yield "state:        enabled"
    else:
        yield f"state:        disabled {_when(endpoint.disabled_at)} ({endpoint.disabled_reason})"
    success = endpoint.last_success_at
    yield f"last success: {_when(success) if success else 'never'}"
    if endpoint.failure_streak:
        yield (
            f"failing:      {endpoint.failure_streak} attempts in a row,"
            f" since {_when(endpoint.failing_since)}"
        )
    if endpoint.rotation_ends_at is not None:
        until = _when(endpoint.rotation_ends_at)
        yield f"rotation:     the previous secret also signs until {until}"
    yield f"deliveries:   {endpoint.pending} pending, {endpoint.failed} failed"


def _when(moment: dt.datetime | None) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S %Z}"


def _delivery_json(delivery: dict[str, Any]) -> dict[str, Any]:
    return {
        key: (value.isoformat() if hasattr(value, "isoformat") else value)
        for key, value in {
            **delivery,
            "id": str(delivery["id"]),
            "event_id": str(delivery["event_id"]),
        }.items()
    }


@endpoints_group.command("disable")
@click.argument("name")
@pass_state
def endpoints_disable(state: CliState, name: str) -> None:
    """Stop delivering to NAME; its pending deliveries wait until it is enabled again."""
    with state.connect("endpoints") as conn:
        endpoint = _errors(lambda: endpoints.disable(conn, name, reason="disabled by an operator"))
    click.echo(f"disabled endpoint {endpoint.name!r} ({endpoint.disabled_reason})")


@endpoints_group.command("enable")
@click.argument("name")
@pass_state
def endpoints_enable(state: CliState, name: str) -> None:
    """Deliver to NAME again, its failure record cleared; waiting deliveries go out."""
    with state.connect("endpoints") as conn:
        endpoint = _errors(lambda: endpoints.enable(conn, name))
    click.echo(f"enabled endpoint {endpoint.name!r}")


@endpoints_group.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def endpoints_remove(state: CliState, name: str, yes: bool) -> None:
    """Remove NAME and every delivery to it (pending ones are never sent)."""
    with state.connect("endpoints") as conn:
        endpoint = _errors(lambda: endpoints.get(conn, name))
        if not yes and endpoint.pending:
            click.confirm(
                f"{endpoint.name!r} has {endpoint.pending} pending deliveries, which will never"
                " be sent; remove it?",
                abort=True,
            )
        removed = _errors(lambda: endpoints.remove(conn, name))
    click.echo(f"removed endpoint {name!r} and its {removed} deliveries")


@endpoints_group.command("rotate-secret")
@click.argument("name")
@pass_state
def endpoints_rotate_secret(state: CliState, name: str) -> None:
    """A new signing secret for NAME, printed once; the old one signs beside it for 24 hours."""
    with state.connect("endpoints") as conn:
        secret, until = _errors(lambda: endpoints.rotate_secret(conn, name))
    click.echo(secret)
    click.echo(
        f"rotated the secret of {name!r}: requests carry signatures with both secrets"
        f" until {until:%Y-%m-%d %H:%M:%S %Z}; give the receiver the new one before then",
        err=True,
    )
