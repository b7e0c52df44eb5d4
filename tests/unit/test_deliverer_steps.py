"""What an attempt's outcome does to its delivery and its endpoint (no database, no network)."""

from __future__ import annotations

import random

import pytest

from eventflo.deliverer import endpoint_at_fault, endpoint_pause, next_step
from eventflo.sender import Outcome

SCHEDULE = (0.0, 5.0, 300.0, 1800.0)


def answer(code, retry_after=None):
    return Outcome(code, "", None, 1.0, retry_after)


NO_ANSWER = Outcome(None, None, "timed out: read", 1000.0)


@pytest.mark.parametrize(
    ("attempts", "outcome", "status", "low", "high"),
    [
        (1, answer(200), "delivered", 0, 0),
        (1, answer(204), "delivered", 0, 0),
        (1, answer(410), "failed", 0, 0),
        (1, answer(500), "pending", 4.5, 5.5),  # the schedule's second delay, ±10 %
        (2, NO_ANSWER, "pending", 270, 330),
        (4, answer(500), "failed", 0, 0),  # the schedule is spent
        (1, answer(429, retry_after=120.0), "pending", 120, 120),
        (1, answer(503, retry_after=0.0), "pending", 4.5, 5.5),  # never shorter than the schedule
        (1, Outcome(None, None, "its event no longer exists", 0.0, gone=True), "failed", 0, 0),
    ],
)
def test_the_next_step(attempts, outcome, status, low, high):
    got, delay = next_step(attempts, outcome, SCHEDULE, random.Random(7))
    assert got == status and low <= delay <= high


@pytest.mark.parametrize(
    ("outcome", "at_fault"),
    [
        (NO_ANSWER, True),
        (answer(500), True),
        (answer(503), True),
        (answer(429), True),
        (answer(400), False),  # the endpoint is up: it refused this message
        (answer(413), False),
        (answer(302), False),
    ],
)
def test_which_failures_pause_the_endpoint(outcome, at_fault):
    assert endpoint_at_fault(outcome) is at_fault


def test_an_endpoints_pause_follows_its_own_streak_and_honours_retry_after():
    assert endpoint_pause(SCHEDULE, 1, NO_ANSWER) == 5.0
    assert endpoint_pause(SCHEDULE, 2, NO_ANSWER) == 300.0
    assert endpoint_pause(SCHEDULE, 99, NO_ANSWER) == 1800.0
    assert endpoint_pause(SCHEDULE, 1, answer(429, retry_after=3600.0)) == 3600.0
    assert endpoint_pause((0.0,), 1, NO_ANSWER) == 5.0  # a one-step schedule still pauses
