"""The ingest mode's yardstick: ``POST /events`` as bare as Flask, psycopg and gunicorn allow.

EventFlo's ``POST /events`` answers for more than storing a row: the strict
JSON parser, marshmallow validation, idempotency keys, problem+json errors,
an explicit transaction. This app does none of it. Its one view parses the
JSON body with Flask's own parser, runs one plain INSERT on an autocommit
connection from a pool made like the API's (``db.create_pool``: same size,
timeouts and connection check), and answers 202 with the id. The ``ingest``
mode serves it with ``eventflo serve``'s options and gunicorn settings
(``serving.run_gunicorn``), sends it the same bodies from the same clients,
and reports EventFlo's rate as a fraction of this one: the part of the cost
that is EventFlo's own, not the framework's or the database's.

Only the bench runs it, in a scratch database; it is not an API to deploy::

    python -m eventflo.bench.bare_api serve --port 8001 --workers 2
"""

from __future__ import annotations

import click
import flask
from flask.typing import ResponseReturnValue
from psycopg.types.json import Jsonb

from eventflo import cli, db, serving
from eventflo.bench import QUERIES
from eventflo.config import Config

APPLICATION_NAME = "eventflo-bench-bare"


def create_app(config: Config) -> flask.Flask:
    """The bare app of one gunicorn worker; its pool is made here, after the fork, and connected."""
    pool = db.create_pool(config, APPLICATION_NAME)
    # A wrong URL stops the worker at boot, so the bench sees the server exit.
    pool.wait(timeout=config.pool_timeout)
    app = flask.Flask(__name__)
    # A test closes it; a gunicorn worker's goes with its process, as the API's does.
    app.extensions["eventflo_bare_pool"] = pool

    @app.post("/events")
    def create_event() -> ResponseReturnValue:
        body = flask.request.get_json()
        with pool.connection() as conn:
            row = conn.execute(
                QUERIES["bare_insert_event"],
                {
                    "event_type": body["event_type"],
                    "source": body.get("source"),
                    "payload": Jsonb(body["payload"]),
                },
            ).fetchone()
        assert row is not None
        return {"event_id": str(row["id"])}, 202

    return app


def _serve(host: str, port: int, workers: int, threads: int) -> None:
    serving.run_gunicorn(
        Config.from_env(), bind=f"{host}:{port}", workers=workers, threads=threads, app=create_app
    )


# ``eventflo serve``'s own options and defaults, so the two servers differ only in their app.
main = click.Group(
    "bare_api", commands=[click.Command("serve", params=cli.serve.params, callback=_serve)]
)

if __name__ == "__main__":
    main()
