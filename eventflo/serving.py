"""Serving the API with gunicorn from inside the ``eventflo`` command."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import flask
from gunicorn.app.base import BaseApplication

from eventflo.config import Config

# gunicorn's default access line without %(u)s, the user name of Basic auth: a
# client that sends its API key as `curl -u KEY:` would have it logged.
ACCESS_LOG_FORMAT = '%(h)s %(l)s - %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'


def gunicorn_options(*, bind: str, workers: int, threads: int) -> dict[str, Any]:
    """The gunicorn settings ``eventflo serve`` runs with, for a bind address and pool sizes.

    Public so that another server of the same WSGI stack (a comparison's
    yardstick, say) can be started with exactly these settings.
    """
    return {
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
        # Each worker's heartbeat file: in memory where Linux has it, which also works
        # with a read-only root filesystem (containers); else gunicorn's default, $TMPDIR.
        "worker_tmp_dir": "/dev/shm" if os.access("/dev/shm", os.W_OK) else None,
    }


class GunicornServer(BaseApplication):
    """gunicorn with the given settings; each worker process builds its own app after the fork.

    ``build_app`` runs in every worker, so each gets its own pool and
    threads: connections made before a fork would be shared by all of them.
    """

    def __init__(self, options: dict[str, Any], build_app: Callable[[], flask.Flask]) -> None:
        self._options = options
        self._build_app = build_app
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> flask.Flask:
        return self._build_app()


def run_gunicorn(config: Config, *, bind: str, workers: int, threads: int) -> None:
    """Block serving the API until gunicorn is told to stop (SIGTERM: graceful, SIGINT: quick)."""

    def build_app() -> flask.Flask:
        from eventflo.app import create_app

        return create_app(config)

    options = gunicorn_options(bind=bind, workers=workers, threads=threads)
    GunicornServer(options, build_app).run()
