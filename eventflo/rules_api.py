"""GET /rules: the active rule version, what it declares and how it judges, as clients read it."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_smorest import Blueprint

from eventflo import appstate, auth, db, rules, ruleversions
from eventflo.apidocs import problem_response

blp = Blueprint("rules", __name__, url_prefix="/rules", description="The active rule set")


class DeclaredFieldSchema(ma.Schema):
    type = ma.fields.String(metadata={"example": "number"})
    required = ma.fields.Boolean(metadata={"description": "False when the field has a default"})
    default = ma.fields.Raw(
        allow_none=True, metadata={"description": "Used when the payload lacks the field"}
    )


class RuleSchema(ma.Schema):
    id = ma.fields.String(metadata={"example": "disk_full.critical"})
    event_types = ma.fields.List(
        ma.fields.String(),
        allow_none=True,
        metadata={"description": "The event types it applies to; null for every type"},
    )
    when = ma.fields.String(
        allow_none=True, metadata={"description": "The CEL condition; null for always"}
    )
    severity = ma.fields.String(metadata={"example": "CRITICAL"})
    escalate = ma.fields.Boolean()
    reason = ma.fields.String()
    recommendation = ma.fields.String()


class ActiveRulesSchema(ma.Schema):
    """The active rule version (GET /rules)."""

    version = ma.fields.Integer(metadata={"example": 2})
    sha256 = ma.fields.String(metadata={"description": "Of the rule set's canonical form"})
    message = ma.fields.String()
    created_by = ma.fields.String()
    created_at = ma.fields.DateTime()
    # Shown as "fields"; named otherwise here, where ``fields`` is marshmallow's own attribute.
    payload_fields = ma.fields.Dict(
        data_key="fields",
        keys=ma.fields.String(),
        values=ma.fields.Dict(
            keys=ma.fields.String(), values=ma.fields.Nested(DeclaredFieldSchema)
        ),
        metadata={"description": "Declared payload fields, by event type, then by field name"},
    )
    rules = ma.fields.List(
        ma.fields.Nested(RuleSchema), metadata={"description": "In order: the first match wins"}
    )


@blp.route("", methods=["GET"])
@auth.requires("read", blp)
@blp.response(200, ActiveRulesSchema)
@problem_response(blp, 503, "Database unavailable")
def get_rules() -> Any:
    """The active rule version: number, sha256, who stored it, its declared fields and its rules."""
    state = appstate.current()
    with db.borrow(state.pool) as conn:
        active = ruleversions.active(conn)
        rule_set = state.active_rules.compiled(conn, active.version)
    return {
        "version": active.version,
        "sha256": active.sha256,
        "message": active.message,
        "created_by": active.created_by,
        "created_at": active.created_at,
        "payload_fields": _declared(rule_set),
        "rules": [_rule(rule) for rule in rule_set.rules],
    }


def _declared(rule_set: rules.RuleSet) -> dict[str, dict[str, dict[str, Any]]]:
    return {
        event_type: {
            name: {
                "type": field.type.name,
                "required": field.required,
                "default": None if field.required else field.default,
            }
            for name, field in declared.items()
        }
        for event_type, declared in rule_set.fields.items()
    }


def _rule(rule: rules.Rule) -> dict[str, Any]:
    return {
        "id": rule.rule_id,
        "event_types": None if rule.event_types is None else list(rule.event_types),
        "when": rule.condition,
        "severity": rule.severity.value,
        "escalate": rule.should_escalate,
        "reason": rule.reason,
        "recommendation": rule.recommendation,
    }
