"""The one table that turns errors into HTTP answers: complete, and right where it matters."""

from __future__ import annotations

import inspect

import pytest

from eventflo import errors, problems


def _error_classes(module: object) -> list[type[errors.EventFloError]]:
    return [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, errors.EventFloError) and cls is not errors.EventFloError
    ]


@pytest.mark.parametrize(
    "error_class",
    _error_classes(errors) + _error_classes(problems),
    ids=lambda cls: cls.__name__,
)
def test_every_error_we_raise_on_purpose_has_a_client_status(error_class):
    """A new error class without its own entry would answer as our bug: a 500."""
    problem = next(
        problems.PROBLEMS[cls] for cls in error_class.__mro__ if cls in problems.PROBLEMS
    )
    assert 400 <= problem.status < 600 and problem.status != 500
    assert problem.title


def test_the_statuses_clients_rely_on():
    statuses = {cls.__name__: entry.status for cls, entry in problems.PROBLEMS.items()}
    assert statuses == {
        "MalformedRequest": 400,
        "InvalidEvent": 422,
        "ValidationError": 422,
        "InvalidRuleFile": 422,
        "EventNotFound": 404,
        "InvalidEndpoint": 422,
        "EndpointExists": 409,
        "EndpointNotFound": 404,
        "DeliveryNotFound": 404,
        "DeliveryBusy": 409,
        "IdempotencyConflict": 409,
        "DatabaseUnavailable": 503,
        "SchemaNotCurrent": 503,
        "TooManyLongPolls": 503,
        "Unauthenticated": 401,
        "InsufficientScope": 403,
        "CrossSiteRequest": 403,
        "NotReady": 503,
        "BodyTooLarge": 413,
    }


def test_a_subclass_answers_as_its_parent_with_its_own_challenge():
    missing = problems.Unauthenticated("no key")
    invalid = problems.InvalidKey("no such key")
    entry = problems.problem_for(invalid)
    assert entry is problems.problem_for(missing)
    assert entry.headers is not None
    assert entry.headers(missing) == {"WWW-Authenticate": 'Bearer realm="eventflo"'}
    assert 'error="invalid_token"' in entry.headers(invalid)["WWW-Authenticate"]


def test_headers_come_from_the_error():
    busy = errors.TooManyLongPolls("busy", retry_after_seconds=3)
    entry = problems.problem_for(busy)
    assert entry.headers is not None and entry.headers(busy) == {"Retry-After": "3"}
    scope = problems.InsufficientScope("read only", needed="admin")
    entry = problems.problem_for(scope)
    assert entry.headers is not None
    assert 'scope="admin"' in entry.headers(scope)["WWW-Authenticate"]


def test_anything_else_is_a_500():
    assert problems.problem_for(KeyError("x")).status == 500
    assert problems.problem_for(errors.EventFloError("unclassified")).status == 500


def test_a_body_too_large_names_its_limit_and_setting():
    error = problems.BodyTooLarge(1048576, "EVENTFLO_MAX_BODY_BYTES")
    assert error.detail == (
        "The body is larger than the limit of 1048576 bytes (EVENTFLO_MAX_BODY_BYTES)."
    )
