"""/rules: the active rule version as clients read it, and drafts tried against it.

GET /rules shows the active version; POST /rules/simulate judges events with
a draft rule set beside it (eventflo/backtest.py, as `rules apply --dry-run`
does) and stores nothing.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_smorest import Blueprint

from eventflo import appstate, auth, backtest, db, rules, ruleversions
from eventflo.api import StrictJSONParser
from eventflo.apidocs import problem_response
from eventflo.errors import InvalidRuleFile
from eventflo.schemas import EVENT_TYPE_PATTERN, FullMatch

MAX_SIMULATE_EVENTS = 1000
MAX_SIMULATE_LAST = 10_000


class RulesBlueprint(Blueprint):
    ARGUMENTS_PARSER = StrictJSONParser()


blp = RulesBlueprint(
    "rules", __name__, url_prefix="/rules", description="The active rule set, and drafts tried"
)


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


# -- POST /rules/simulate ------------------------------------------------------------------


class SimulateEventSchema(ma.Schema):
    """An event to judge, as POST /events takes it (not checked against any declared fields)."""

    class Meta:
        unknown = ma.RAISE

    event_type = ma.fields.String(
        required=True,
        validate=FullMatch(
            EVENT_TYPE_PATTERN,
            error="Must start with a lowercase letter and use only a-z, 0-9, '_', '.', '-' "
            "(at most 100 characters).",
        ),
        metadata={"example": "disk_full"},
    )
    source = ma.fields.String(
        load_default=None, allow_none=True, validate=ma.validate.Length(min=1, max=200)
    )
    payload = ma.fields.Dict(
        keys=ma.fields.String(), load_default=dict, metadata={"example": {"percent": 95}}
    )


class SimulateSchema(ma.Schema):
    """The body of POST /rules/simulate: a draft, and either events or how many stored ones."""

    class Meta:
        unknown = ma.RAISE

    rules = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1),
        metadata={"description": "The draft rule set: a rule file's YAML text"},
    )
    events = ma.fields.List(
        ma.fields.Nested(SimulateEventSchema),
        validate=ma.validate.Length(min=1, max=MAX_SIMULATE_EVENTS),
        metadata={"description": f"1 to {MAX_SIMULATE_EVENTS} events to judge"},
    )
    last = ma.fields.Integer(
        strict=True,
        validate=ma.validate.Range(min=1, max=MAX_SIMULATE_LAST),
        metadata={
            "description": f"Backtest the newest N stored events instead (1 to"
            f" {MAX_SIMULATE_LAST:,}), as `eventflo rules apply --dry-run` does"
        },
    )

    @ma.validates_schema
    def _events_or_last(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("events" in data) == ("last" in data):
            raise ma.ValidationError('Send either "events" or "last", not both.')


class VerdictSchema(ma.Schema):
    """One rule set's verdict on one event; ``error`` (and nulls) when a rule failed on it."""

    rule = ma.fields.String(
        allow_none=True, metadata={"description": "The rule that matched, or that failed"}
    )
    severity = ma.fields.String(allow_none=True, metadata={"example": "CRITICAL"})
    escalate = ma.fields.Boolean(allow_none=True)
    reason = ma.fields.String(allow_none=True)
    recommendation = ma.fields.String(allow_none=True)
    error = ma.fields.String(
        allow_none=True, metadata={"description": "Why the event fails, as a worker would say"}
    )


class SimulatedVerdictSchema(VerdictSchema):
    """The draft's verdict on one given event, with the active version's beside it."""

    active = ma.fields.Nested(VerdictSchema, metadata={"description": "The active version's"})
    changed = ma.fields.Boolean(
        metadata={"description": "Another rule, severity or escalation than the active version's"}
    )


class ChangeSchema(ma.Schema):
    before = ma.fields.String(
        data_key="from", attribute="from", allow_none=True, metadata={"description": "null: fails"}
    )
    after = ma.fields.String(
        data_key="to", attribute="to", allow_none=True, metadata={"description": "null: fails"}
    )
    count = ma.fields.Integer()
    examples = ma.fields.List(
        ma.fields.String(), metadata={"description": f"Up to {backtest.EXAMPLES} event ids"}
    )


class FailureSchema(ma.Schema):
    rule = ma.fields.String(allow_none=True)
    count = ma.fields.Integer()
    error = ma.fields.String(metadata={"description": "The first failure's message"})
    examples = ma.fields.List(ma.fields.String())


class BacktestSchema(ma.Schema):
    """What the draft would change on the newest stored events (any status)."""

    judged = ma.fields.Integer(metadata={"description": "Stored events judged"})
    changed = ma.fields.Integer(
        metadata={"description": "Events given another rule, severity or escalation"}
    )
    failing_active = ma.fields.Integer()
    failing_draft = ma.fields.Integer()
    rule_changes = ma.fields.List(ma.fields.Nested(ChangeSchema))
    severity_changes = ma.fields.List(ma.fields.Nested(ChangeSchema))
    draft_failures = ma.fields.List(ma.fields.Nested(FailureSchema))


class DraftTestsSchema(ma.Schema):
    count = ma.fields.Integer(metadata={"description": "The draft's own tests"})
    failures = ma.fields.List(
        ma.fields.String(), metadata={"description": "Each failing test, as line N: ..."}
    )


class SimulationSchema(ma.Schema):
    """The answer of POST /rules/simulate: nothing was stored."""

    active_version = ma.fields.Integer(metadata={"example": 1})
    tests = ma.fields.Nested(DraftTestsSchema)
    verdicts = ma.fields.List(
        ma.fields.Nested(SimulatedVerdictSchema),
        metadata={"description": "With events: one per event, in order"},
    )
    backtest = ma.fields.Nested(BacktestSchema, metadata={"description": "With last"})


@blp.route("/simulate", methods=["POST"])
@auth.requires("admin", blp)
@blp.arguments(SimulateSchema)
@blp.response(200, SimulationSchema)
@problem_response(blp, 400, "Malformed JSON")
@problem_response(blp, 413, "Body too large")
@problem_response(blp, 415, "Body is not JSON")
@problem_response(blp, 503, "Database unavailable")
def simulate_rules(body: dict[str, Any]) -> Any:
    """Judge events with a draft rule set beside the active version; nothing is stored.

    A draft that does not load is a 422 listing every problem with its line.
    """
    draft = _draft(body["rules"])
    state = appstate.current()
    with db.borrow(state.pool) as conn:
        active = ruleversions.active(conn)
        active_set = state.active_rules.compiled(conn, active.version)
        summary = (
            backtest.backtest(conn, active_set, draft, last=body["last"])
            if "last" in body
            else None
        )
    answer: dict[str, Any] = {
        "active_version": active.version,
        "tests": {"count": len(draft.tests), "failures": [str(p) for p in draft.run_tests()]},
    }
    if summary is not None:
        answer["backtest"] = summary.as_dict()
    else:
        answer["verdicts"] = [_simulated(active_set, draft, event) for event in body["events"]]
    return answer


def _draft(text: str) -> rules.RuleSet:
    """The draft compiled (its tests are reported, not required), or a 422 listing its problems."""
    try:
        return rules.load(text, run_tests=False)
    except rules.RuleFileError as exc:
        count = f"{len(exc.problems)} problem" + ("s" if len(exc.problems) != 1 else "")
        raise InvalidRuleFile(
            f"The draft rule set cannot be used: {count}; see errors.",
            field_errors={"rules": [str(problem) for problem in exc.problems]},
        ) from None


def _simulated(
    active_set: rules.RuleSet, draft: rules.RuleSet, event: dict[str, Any]
) -> dict[str, Any]:
    event_type, source, payload = event["event_type"], event["source"], event["payload"]
    before = backtest.judge(active_set, event_type, source, payload)
    after = backtest.judge(draft, event_type, source, payload)
    return {**after.as_dict(), "active": before.as_dict(), "changed": before.key() != after.key()}
