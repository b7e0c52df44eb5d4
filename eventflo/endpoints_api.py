"""/endpoints: what `eventflo endpoints` does, for admins over HTTP.

Every route needs the admin scope: endpoints decide where verdicts go, and
their secrets sign requests as EventFlo. A secret appears in one answer
only, the one that made it (POST /endpoints, POST .../rotate-secret).
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_smorest import Blueprint

from eventflo import appstate, auth, db, delivery_filter, endpoints
from eventflo.api import StrictJSONParser
from eventflo.apidocs import problem_response


class EndpointsBlueprint(Blueprint):
    ARGUMENTS_PARSER = StrictJSONParser()


blp = EndpointsBlueprint(
    "endpoints",
    __name__,
    url_prefix="/endpoints",
    description="Where verdicts are delivered: signed webhooks, Slack, PagerDuty",
)


class NewEndpointSchema(ma.Schema):
    """The body of POST /endpoints, as `eventflo endpoints add` takes it."""

    class Meta:
        unknown = ma.RAISE

    name = ma.fields.String(
        required=True,
        metadata={"description": f"Unique: {endpoints.NAME_PATTERN} characters", "example": "ops"},
    )
    url = ma.fields.String(
        required=True,
        metadata={
            "description": "https:// and a public address (unless private endpoints are allowed)",
            "example": "https://hooks.example.com/eventflo",
        },
    )
    format = ma.fields.String(
        load_default="standard",
        validate=ma.validate.OneOf(endpoints.FORMATS),
        metadata={"description": "standard, slack or pagerduty"},
    )
    filter = ma.fields.String(
        load_default=delivery_filter.DEFAULT,
        metadata={"description": "A CEL expression over event and result"},
    )
    routing_key = ma.fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "PagerDuty's integration key (the pagerduty format only)"},
    )


class DeliveryBriefSchema(ma.Schema):
    id = ma.fields.UUID(metadata={"description": "Also the webhook-id a receiver sees"})
    event_id = ma.fields.UUID()
    status = ma.fields.String(metadata={"example": "pending"})
    attempts = ma.fields.Integer()
    last_status_code = ma.fields.Integer(allow_none=True)
    last_error = ma.fields.String(allow_none=True)
    run_at = ma.fields.DateTime(metadata={"description": "When the next attempt is due"})
    created_at = ma.fields.DateTime()
    delivered_at = ma.fields.DateTime(allow_none=True)


class EndpointSchema(ma.Schema):
    """An endpoint as operators see it: never its secret; a Slack token or routing key shortened."""

    id = ma.fields.UUID()
    name = ma.fields.String(metadata={"example": "ops"})
    url = ma.fields.String(metadata={"description": "Without a query string or Slack token"})
    format = ma.fields.String(metadata={"example": "standard"})
    filter = ma.fields.String(metadata={"example": delivery_filter.DEFAULT})
    routing_key = ma.fields.String(allow_none=True, metadata={"description": "Its last 4 chars"})
    enabled = ma.fields.Boolean()
    disabled_at = ma.fields.DateTime(allow_none=True)
    disabled_reason = ma.fields.String(allow_none=True)
    last_success_at = ma.fields.DateTime(allow_none=True)
    failing_since = ma.fields.DateTime(allow_none=True)
    failure_streak = ma.fields.Integer()
    rotation_ends_at = ma.fields.DateTime(
        allow_none=True, metadata={"description": "While a rotated-out secret still signs"}
    )
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()
    pending = ma.fields.Integer(metadata={"description": "Deliveries waiting"})
    failed = ma.fields.Integer(metadata={"description": "Deliveries that failed"})


class EndpointDetailSchema(EndpointSchema):
    recent_deliveries = ma.fields.List(
        ma.fields.Nested(DeliveryBriefSchema),
        metadata={"description": "Its pending and failed deliveries and the last hour's"},
    )


class CreatedEndpointSchema(EndpointSchema):
    secret = ma.fields.String(
        allow_none=True,
        metadata={"description": "The signing secret (standard format): shown only here, once"},
    )


class RotatedSecretSchema(ma.Schema):
    secret = ma.fields.String(metadata={"description": "The new signing secret, shown once"})
    rotation_ends_at = ma.fields.DateTime(
        metadata={"description": "Until then the previous secret signs beside it"}
    )


class RemovedSchema(ma.Schema):
    removed_deliveries = ma.fields.Integer()


def _shown(endpoint: endpoints.Endpoint) -> dict[str, Any]:
    """As ``to_json`` shows it (URL and routing key shortened), for the schemas to render."""
    return {
        **endpoint.__dict__,
        "url": endpoint.shown_url,
        "routing_key": endpoint.to_json()["routing_key"],
    }


@blp.route("", methods=["GET"])
@auth.requires("admin", blp)
@blp.response(200, EndpointSchema(many=True))
@problem_response(blp, 503, "Database unavailable")
def list_endpoints() -> Any:
    """Every endpoint by name, with its deliveries pending and failed; no secret."""
    with db.borrow(appstate.current().pool) as conn:
        return [_shown(e) for e in endpoints.list_endpoints(conn)]


@blp.route("", methods=["POST"])
@auth.requires("admin", blp)
@blp.arguments(NewEndpointSchema)
@blp.response(201, CreatedEndpointSchema)
@problem_response(blp, 400, "Malformed JSON")
@problem_response(blp, 409, "Endpoint exists")
@problem_response(blp, 503, "Database unavailable")
def add_endpoint(body: dict[str, Any]) -> Any:
    """Register an endpoint; a standard one's signing secret is in this answer, and only here.

    A refused URL, filter, name, format or routing key is a 422 saying why.
    """
    state = appstate.current()
    with db.borrow(state.pool) as conn:
        created = endpoints.create(
            conn,
            name=body["name"],
            url=body["url"],
            format=body["format"],
            filter=body["filter"],
            routing_key=body["routing_key"],
            allow_private=state.config.allow_private_endpoints,
        )
    return {**_shown(created.endpoint), "secret": created.secret}


@blp.route("/<name>", methods=["GET"])
@auth.requires("admin", blp)
@blp.response(200, EndpointDetailSchema)
@problem_response(blp, 404, "Endpoint not found")
@problem_response(blp, 503, "Database unavailable")
def show_endpoint(name: str) -> Any:
    """One endpoint: its settings, its health and its recent deliveries; no secret."""
    with db.borrow(appstate.current().pool) as conn:
        endpoint = endpoints.get(conn, name)
        recent = endpoints.recent_deliveries(conn, endpoint)
    return {**_shown(endpoint), "recent_deliveries": recent}


@blp.route("/<name>/disable", methods=["POST"])
@auth.requires("admin", blp)
@blp.response(200, EndpointSchema)
@problem_response(blp, 404, "Endpoint not found")
@problem_response(blp, 503, "Database unavailable")
def disable_endpoint(name: str) -> Any:
    """Stop delivering to it; its pending deliveries wait until it is enabled again."""
    with db.borrow(appstate.current().pool) as conn:
        return _shown(endpoints.disable(conn, name, reason="disabled by an operator"))


@blp.route("/<name>/enable", methods=["POST"])
@auth.requires("admin", blp)
@blp.response(200, EndpointSchema)
@problem_response(blp, 404, "Endpoint not found")
@problem_response(blp, 503, "Database unavailable")
def enable_endpoint(name: str) -> Any:
    """Deliver to it again, its failure record cleared."""
    with db.borrow(appstate.current().pool) as conn:
        return _shown(endpoints.enable(conn, name))


@blp.route("/<name>/rotate-secret", methods=["POST"])
@auth.requires("admin", blp)
@blp.response(200, RotatedSecretSchema)
@problem_response(blp, 404, "Endpoint not found")
@problem_response(blp, 503, "Database unavailable")
def rotate_endpoint_secret(name: str) -> Any:
    """A new signing secret, in this answer only; the previous one signs beside it for 24 h.

    An endpoint of another format than standard has no secret: a 422.
    """
    with db.borrow(appstate.current().pool) as conn:
        secret, until = endpoints.rotate_secret(conn, name)
    return {"secret": secret, "rotation_ends_at": until}


@blp.route("/<name>", methods=["DELETE"])
@auth.requires("admin", blp)
@blp.response(200, RemovedSchema)
@problem_response(blp, 404, "Endpoint not found")
@problem_response(blp, 503, "Database unavailable")
def remove_endpoint(name: str) -> Any:
    """Remove it with every delivery to it (pending ones are never sent)."""
    with db.borrow(appstate.current().pool) as conn:
        return {"removed_deliveries": endpoints.remove(conn, name)}
