"""EventFlo: an event-processing backend in which PostgreSQL is the queue."""

from __future__ import annotations

import os
import threading

import flask
import psycopg_pool

from eventflo import api as views
from eventflo import apidocs, auth, dashboard, db, errors, health, logs, metrics
from eventflo.config import Config
from eventflo.listener import FinishedWatcher

__version__ = "0.1.0"


class AppState:
    """What the views share: the settings, and this process's pool and long-poll watcher.

    Connections and threads do not survive a fork, so both are made on first
    use in each process: an app built before gunicorn forks (``--preload``)
    still gives every worker its own.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._pool: psycopg_pool.ConnectionPool | None = None
        self._watcher: FinishedWatcher | None = None

    def _for_this_process(self) -> tuple[psycopg_pool.ConnectionPool, FinishedWatcher]:
        with self._lock:
            if self._pid != os.getpid() or self._pool is None or self._watcher is None:
                # Whatever a parent process left here is its own; never close it from the child.
                self._pool = db.create_pool(self.config)
                self._watcher = FinishedWatcher(self.config)
                self._pid = os.getpid()
            return self._pool, self._watcher

    @property
    def pool(self) -> psycopg_pool.ConnectionPool:
        return self._for_this_process()[0]

    @property
    def finished_listener(self) -> FinishedWatcher:
        return self._for_this_process()[1]

    def close(self) -> None:
        """Release this process's database resources: the long-poll watcher, then the pool."""
        with self._lock:
            if self._pid == os.getpid() and self._pool is not None and self._watcher is not None:
                self._watcher.close()
                self._pool.close()
            self._pool = self._watcher = None
            self._pid = None


def create_app(config: Config | None = None) -> flask.Flask:
    """Build the Flask app; a bad setting fails here. The pool opens on the first request.

    While the database is unreachable — at start-up too — requests answer 503.
    With ``config.auth`` (the default), requests need an API key (eventflo.auth).
    """
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
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=apidocs.ASSETS_URL,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]

    api = errors.ProblemApi(app)
    api.register_blueprint(views.blp)
    api.register_blueprint(health.blp)
    api.register_blueprint(metrics.blp)
    app.register_blueprint(apidocs.blp)
    app.register_blueprint(dashboard.blp)
    errors.register(app)

    config.require_database_url()
    app.extensions["eventflo"] = AppState(config)
    auth.init_app(app, api)
    return app
