"""Fixtures for the API tests: the Flask app on the test's own database, closed after the test."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import flask
import flask.testing
import pytest
from click.testing import CliRunner

from eventflo import appstate, cli, create_app
from eventflo.config import Config

MakeApp = Callable[..., flask.Flask]


@pytest.fixture
def make_app(config: Config) -> Iterator[MakeApp]:
    """Apps on the test's database, with per-call settings; closes their pools and watchers."""
    apps: list[flask.Flask] = []

    def make(**overrides: Any) -> flask.Flask:
        app = create_app(dataclasses.replace(config, **overrides))
        app.testing = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        appstate.of(app).close()


@pytest.fixture
def app(make_app: MakeApp) -> flask.Flask:
    return make_app()


@pytest.fixture
def client(app: flask.Flask) -> flask.testing.FlaskClient:
    return app.test_client()


# -- the CLI in-process ------------------------------------------------------


def cli_env(database_url: str | None = None, **settings: Any) -> dict[str, str | None]:
    """Only the EVENTFLO_* variables given here; any from the calling shell are hidden."""
    env: dict[str, str | None] = {name: None for name in os.environ if name.startswith("EVENTFLO_")}
    if database_url is not None:
        env["EVENTFLO_DATABASE_URL"] = database_url
    env.update({f"EVENTFLO_{key.upper()}": value for key, value in settings.items()})
    return env


@pytest.fixture
def invoke(database_url: str, tmp_path: pathlib.Path) -> Callable[..., Any]:
    """Run ``eventflo <args>`` in-process against the test's database.

    It runs in the test's own directory (``tmp_path``), not in the checkout:
    an ``eventflo dev`` running there, whose database a command without a URL
    would use, stays out of the tests.
    """

    def run(*args: str, env: dict[str, str | None] | None = None, input: str | None = None) -> Any:
        with contextlib.chdir(tmp_path):
            return CliRunner().invoke(
                cli.main,
                list(args),
                env=env if env is not None else cli_env(database_url),
                input=input,
            )

    return run


def assert_clean_exit(result: Any, code: int) -> None:
    """The exit status a user sees, with no Python exception (so no traceback) behind it."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
