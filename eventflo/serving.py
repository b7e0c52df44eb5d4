"""Serving the API with gunicorn from inside the ``eventflo`` command."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flask
from gunicorn.app.base import BaseApplication

from eventflo.config import Config

# gunicorn's default access line without %(u)s, the user name of Basic auth: a
# client that sends its API key as `curl -u KEY:` would have it logged.
ACCESS_LOG_FORMAT = '%(h)s %(l)s - %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

# Builds the WSGI app in each gunicorn worker, after the fork.
AppFactory = Callable[[Config], flask.Flask]


def _create_eventflo_app(config: Config) -> flask.Flask:
    from eventflo import create_app

    return create_app(config)


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    """gunicorn with our settings; each worker builds its own app (and pool) after the fork."""

    def __init__(self, config: Config, options: dict[str, Any], app: AppFactory) -> None:
        self._config = config
        self._options = options
        self._app = app
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> flask.Flask:
        return self._app(self._config)


def run_gunicorn(
    config: Config,
    *,
    bind: str,
    workers: int,
    threads: int,
    app: AppFactory = _create_eventflo_app,
) -> None:
    """Block serving until gunicorn is told to stop (SIGTERM: graceful, SIGINT: quick).

    ``app`` is EventFlo's API unless given; the bench serves its bare insert
    endpoint (``eventflo.bench.bare_api``) this way, with the same settings.
    """
    _Gunicorn(
        config,
        {
            "bind": bind,
            "workers": workers,
            # gthread: a long-poll (GET ?wait=) holds a thread, not a whole process.
            "worker_class": "gthread",
            "threads": threads,
            "accesslog": "-",
            "access_log_format": ACCESS_LOG_FORMAT,
            "graceful_timeout": 30,
            "proc_name": "eventflo-api",
            # gunicorn 27's control socket defaults to one path per user, so a
            # second instance would take it over; EventFlo does not use it.
            "control_socket_disable": True,
        },
        app,
    ).run()
