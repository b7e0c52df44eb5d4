"""Fixtures for the API tests: the Flask app on the test's own database, closed after the test."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import flask
import flask.testing
import pytest

from eventflo import create_app
from eventflo.config import Config

MakeApp = Callable[..., flask.Flask]


@pytest.fixture
def make_app(config: Config) -> Iterator[MakeApp]:
    """Build apps on the test's database, with settings overridden per call; closes their pools and watchers."""
    apps: list[flask.Flask] = []

    def make(**overrides: Any) -> flask.Flask:
        app = create_app(dataclasses.replace(config, **overrides))
        app.testing = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["eventflo"].close()


@pytest.fixture
def app(make_app: MakeApp) -> flask.Flask:
    return make_app()


@pytest.fixture
def client(app: flask.Flask) -> flask.testing.FlaskClient:
    return app.test_client()
