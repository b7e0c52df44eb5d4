"""EventFlo: an event-processing backend in which PostgreSQL is the queue."""

from __future__ import annotations

import dataclasses

import flask
import flask_smorest
import psycopg_pool

from eventflo import api as views
from eventflo import db, errors, logs
from eventflo.config import Config
from eventflo.listener import FinishedWatcher

__version__ = "0.1.0"


@dataclasses.dataclass
class AppState:
    """What the views share within one process: the settings, the pool and the long-poll watcher."""

    config: Config
    pool: psycopg_pool.ConnectionPool
    finished_listener: FinishedWatcher

    def close(self) -> None:
        """Release the process's database resources: the long-poll watcher, then the pool."""
        self.finished_listener.close()
        self.pool.close()


def create_app(config: Config | None = None) -> flask.Flask:
    """Build the Flask app and open its pool; a bad setting or an unreachable database fails here."""
    config = config or Config.from_env()
    logs.configure(config)
    app = flask.Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=config.max_body_bytes,
        API_TITLE="EventFlo",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]

    api = flask_smorest.Api(app)
    api.register_blueprint(views.blp)
    errors.register(app)

    pool = db.create_pool(config)
    app.extensions["eventflo"] = AppState(config, pool, FinishedWatcher(config))
    return app
