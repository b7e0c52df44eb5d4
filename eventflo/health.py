"""Liveness and readiness for load balancers and orchestrators.

``/healthz`` says the process answers and touches nothing else: a database
outage must not make an orchestrator restart healthy API processes.
``/readyz`` says this process can serve: the database answers and every
migration this code knows is applied. A database with migrations this code
does not know (a newer release migrated it first, during a rolling deploy)
is ready: migrations only ever add what older code can ignore.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_smorest import Blueprint

from eventflo import appstate, auth, db, errors, migrate
from eventflo.apidocs import problem_response
from eventflo.problems import NotReady
from eventflo.sql import QUERIES

blp = Blueprint("health", __name__, description="Liveness and readiness probes")


class HealthSchema(ma.Schema):
    status = ma.fields.String(required=True, metadata={"example": "ok"})


class ReadySchema(HealthSchema):
    migrations = ma.fields.List(
        ma.fields.String(),
        required=True,
        metadata={"description": "Applied migrations this code knows"},
    )


@blp.route("/healthz")
@auth.public
@blp.response(200, HealthSchema, description="The process answers")
def healthz() -> Any:
    """Liveness: the process answers; the database is not consulted."""
    return {"status": "ok"}


@blp.route("/readyz")
@auth.public
@blp.response(200, ReadySchema, description="The database answers and the schema is current")
@problem_response(blp, 503, "Database unavailable or migrations pending")
def readyz() -> Any:
    """Readiness: the database answers and every migration this code knows is applied.

    An unreachable database is the API's usual 503 (problem type "Database unavailable").
    """
    known = migrate.migration_ids()
    try:
        with db.borrow(appstate.current().pool) as conn:
            applied = {row["migration_id"] for row in conn.execute(QUERIES["applied_migrations"])}
    except errors.SchemaNotCurrent:
        raise NotReady("The database has no schema yet; run `eventflo migrate`.") from None
    pending = [migration for migration in known if migration not in applied]
    if pending:
        raise NotReady(f"Migrations pending: {', '.join(pending)}; run `eventflo migrate`.")
    return {"status": "ready", "migrations": known}
