"""The wait between attempts to reach a database that does not answer."""

from __future__ import annotations

from eventflo.db import ReconnectBackoff


def test_waits_double_from_the_first_up_to_the_cap():
    backoff = ReconnectBackoff(first=0.2, cap=1.0)
    assert [backoff.failed() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]


def test_a_success_makes_the_next_outage_start_short_again():
    backoff = ReconnectBackoff(first=0.1, cap=5.0)
    backoff.failed()
    backoff.failed()
    backoff.succeeded()
    assert backoff.current == 0.0
    assert backoff.failed() == 0.1
