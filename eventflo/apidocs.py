"""Swagger UI at /docs, with its assets served from an installed package.

flask-smorest renders the page from the live OpenAPI document; its default
asset URL is a CDN, which fails on a machine without internet (and leaks
every visit to a third party). flask-swagger-ui ships the same assets in its
wheel; this blueprint serves them from there, and gives the page the
security headers of the dashboard. Its one inline script (flask-smorest's
template) is allowed by its hash, so no other inline script can run.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import re

import flask

ASSETS_URL = "/docs/assets/"
_ASSETS_DIR = str(importlib.resources.files("flask_swagger_ui") / "dist")

blp = flask.Blueprint("docs_assets", __name__)


@blp.get(ASSETS_URL + "<path:filename>")
def asset(filename: str) -> flask.Response:
    # max_age: the assets change only with the installed package.
    return flask.send_from_directory(_ASSETS_DIR, filename, max_age=3600)


SWAGGER_UI_ENDPOINT = "api-docs.openapi_swagger_ui"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


@blp.after_app_request
def security_headers(response: flask.Response) -> flask.Response:
    """The /docs page and its assets: nothing from elsewhere, no framing, no sniffing."""
    if flask.request.endpoint == SWAGGER_UI_ENDPOINT:
        hashes = " ".join(
            f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
            for script in _INLINE_SCRIPT.findall(response.get_data(as_text=True))
        )
        response.headers["Content-Security-Policy"] = (
            f"default-src 'self'; script-src 'self' {hashes}; "
            # Swagger UI draws its icons as data: images and sets element styles.
            "img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
        )
    if flask.request.endpoint in (SWAGGER_UI_ENDPOINT, "docs_assets.asset"):
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
    return response
