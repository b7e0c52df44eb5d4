"""The web application: ``create_app`` puts the settings, blueprints and error handling together."""

from __future__ import annotations

import logging

import flask

import eventflo
from eventflo import api as views
from eventflo import (
    apidocs,
    appstate,
    auth,
    dashboard,
    endpoints_api,
    health,
    logs,
    metrics,
    problems,
    rules,
    rules_api,
)
from eventflo.appstate import AppState
from eventflo.config import Config

__all__ = ["AppState", "create_app"]

log = logging.getLogger(__name__)


def create_app(
    config: Config | None = None, *, rule_set: rules.RuleSet | None = None
) -> flask.Flask:
    """Build the Flask app; a bad setting fails here. The pool opens on the first request.

    While the database is unreachable — at start-up too — requests answer 503.
    With ``config.auth`` (the default), requests need an API key (eventflo.auth).
    Events are validated against the declared fields of the active rule
    version, or of ``rule_set`` when one is given (tests pin one).
    """
    config = config or Config.from_env()
    logs.configure(config)
    app = flask.Flask("eventflo")
    app.config.update(
        MAX_CONTENT_LENGTH=config.max_body_bytes,
        API_TITLE="EventFlo",
        API_VERSION=eventflo.__version__,
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=apidocs.ASSETS_URL,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]

    api = apidocs.ProblemApi(app)
    api.register_blueprint(views.blp)
    api.register_blueprint(health.blp)
    api.register_blueprint(metrics.blp)
    api.register_blueprint(rules_api.blp)
    api.register_blueprint(endpoints_api.blp)
    app.register_blueprint(apidocs.blp)
    app.register_blueprint(dashboard.blp)
    problems.register(app)

    config.require_database_url()
    appstate.install(app, AppState(config, rule_set))
    auth.init_app(app, api)
    if config.allow_private_endpoints:
        log.warning(
            "EVENTFLO_ALLOW_PRIVATE_ENDPOINTS=on: endpoints may be plain http:// and on private"
            " or loopback addresses; use this only for development, tests or receivers on your"
            " own network"
        )
    return app
