"""The API's documentation: problem documents in the OpenAPI document, and Swagger UI at /docs.

Every error an operation can answer is listed with its status as an
``application/problem+json`` body (ProblemSchema), never as flask-smorest's
own error shape, and no operation has a catch-all ``default`` response.

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
import http
import importlib.resources
import re
from typing import Any

import flask
import flask_smorest
import marshmallow as ma
from flask_smorest.utils import prepare_response

from eventflo.problems import PROBLEM_MIMETYPE


class ProblemSchema(ma.Schema):
    """The shape of every error body; documents it in the OpenAPI spec."""

    type = ma.fields.String(
        required=True, metadata={"description": "A URI reference naming the problem type"}
    )
    title = ma.fields.String(
        required=True, metadata={"description": "A short summary of the problem type"}
    )
    status = ma.fields.Integer(required=True, metadata={"description": "The HTTP status code"})
    detail = ma.fields.String(
        required=True, metadata={"description": "What went wrong with this request"}
    )
    errors = ma.fields.Dict(
        metadata={"description": "Per-field messages, when fields were invalid"}
    )


class ProblemApi(flask_smorest.Api):
    """flask-smorest's Api, documenting errors the way they are sent.

    Error responses are ``application/problem+json`` bodies of ProblemSchema
    (flask-smorest's defaults say ``application/json`` and its own Error
    shape). No operation gets a ``default`` response: each lists the statuses
    it can answer, so a client — and the fuzz test — can rely on the list.
    """

    ERROR_SCHEMA = ProblemSchema
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_responses(self) -> None:
        """The lazily registered responses per status (e.g. webargs' 422), as problem documents."""
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            content_type = self.DEFAULT_RESPONSE_CONTENT_TYPE
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
                content_type = PROBLEM_MIMETYPE
            prepare_response(response, self.spec, content_type)
            self.spec.components.response(status.name, response, lazy=True)


def problem_response(blueprint: flask_smorest.Blueprint, status: int, description: str) -> Any:
    """Document an error status of an operation as a problem document (a decorator)."""
    return blueprint.alt_response(
        status, schema=ProblemSchema, content_type=PROBLEM_MIMETYPE, description=description
    )


# -- Swagger UI ------------------------------------------------------------------------------

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
