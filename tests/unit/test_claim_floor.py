"""queue.ClaimFloor: where a worker's next claim starts reading the claim index."""

from __future__ import annotations

import datetime as dt
import uuid

from eventflo.queue import Claimed, ClaimFloor

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _event(run_at: dt.datetime) -> Claimed:
    return Claimed(uuid.uuid4(), "tick", None, {}, 1, T0 + dt.timedelta(minutes=5), run_at)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_claim_reads_from_the_front():
    assert ClaimFloor(clock=_Clock()).not_before() is None


def test_the_floor_sits_a_margin_below_the_oldest_event_of_the_last_batch():
    floor = ClaimFloor(clock=_Clock())
    floor.not_before()
    floor.claimed([_event(T0 + dt.timedelta(seconds=3)), _event(T0), _event(T0 + dt.timedelta(1))])
    assert floor.not_before() == T0 - ClaimFloor.MARGIN


def test_an_empty_claim_keeps_the_floor():
    floor = ClaimFloor(clock=_Clock())
    floor.not_before()
    floor.claimed([_event(T0)])
    floor.claimed([])
    assert floor.not_before() == T0 - ClaimFloor.MARGIN


def test_a_sweep_from_the_front_comes_round_every_sweep_interval():
    clock = _Clock()
    floor = ClaimFloor(clock=clock)
    assert floor.not_before() is None
    floor.claimed([_event(T0)])
    clock.now += ClaimFloor.SWEEP_SECONDS - 0.001
    assert floor.not_before() == T0 - ClaimFloor.MARGIN
    clock.now += 0.001
    assert floor.not_before() is None
    assert floor.not_before() == T0 - ClaimFloor.MARGIN
