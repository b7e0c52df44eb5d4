"""Swagger UI at /docs, with its assets served from an installed package.

flask-smorest renders the page from the live OpenAPI document; its default
asset URL is a CDN, which fails on a machine without internet (and leaks
every visit to a third party). flask-swagger-ui ships the same assets in its
wheel; this blueprint serves them from there.
"""

from __future__ import annotations

import importlib.resources

import flask

ASSETS_URL = "/docs/assets/"
_ASSETS_DIR = str(importlib.resources.files("flask_swagger_ui") / "dist")

blp = flask.Blueprint("docs_assets", __name__)


@blp.get(ASSETS_URL + "<path:filename>")
def asset(filename: str) -> flask.Response:
    # max_age: the assets change only with the installed package.
    return flask.send_from_directory(_ASSETS_DIR, filename, max_age=3600)
