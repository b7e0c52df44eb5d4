"""The ingest mode's yardstick: ``POST /events`` as bare as Flask, psycopg and gunicorn allow.

EventFlo's ``POST /events`` answers for more than storing a row: the strict
JSON parser, marshmallow validation, idempotency keys, problem+json errors,
an explicit transaction. This app does none of it. Its one view parses the
JSON body with Flask's own parser, runs one plain INSERT on an autocommit
connection from a pool made like the API's (``db.create_pool``: same size,
timeouts and connection check), and answers 202 with the id. The ``ingest``
mode serves it with ``eventflo serve``'s options and gunicorn settings
(``serving.gunicorn_options``), sends it the same bodies from the same
clients, and reports EventFlo's rate as a fraction of this one: the part of
the cost that is EventFlo's own, not the framework's or the database's.

Only the bench runs it, in a scratch database; it is not an API to deploy::

    python -m eventflo.bench.bare_api serve --port 8001 --workers 2
"""

from __future__ import annotations

import click
import flask
from flask.typing import ResponseReturnValue
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from eventflo import db, serving
from eventflo.bench import QUERIES
from eventflo.config import Config
from eventflo.serve_options import serve_options

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
        with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
            row = cursor.execute(
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


def server(config: Config, *, bind: str, workers: int, threads: int) -> serving.GunicornServer:
    """The bare server with ``eventflo serve``'s gunicorn settings; only its process name differs.

    The name tells the two servers apart in ``ps`` while the ingest mode runs both.
    """
    options = serving.gunicorn_options(bind=bind, workers=workers, threads=threads)
    return serving.GunicornServer(
        {**options, "proc_name": APPLICATION_NAME}, lambda: create_app(config)
    )


# ``eventflo serve``'s own options and defaults, so the two servers differ only in their app.
@click.group("bare_api")
def main() -> None:
    """The bench's bare insert endpoint, for the ingest mode's comparison."""


@main.command("serve")
@serve_options
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Serve POST /events of the bare app with gunicorn, until SIGTERM or SIGINT."""
    server(Config.from_env(), bind=f"{host}:{port}", workers=workers, threads=threads).run()


if __name__ == "__main__":
    main()
