"""An idle worker's wait on LISTEN: until a NOTIFY, the jittered poll, its heartbeat, or a stop.

NOTIFY is only a hint, so the poll is the fallback that finds work whatever
happened to the notifications.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from eventflo.listener import Listener

# Signals do not interrupt the wait on the socket: short slices keep a stop request prompt.
STOP_CHECK_SECONDS = 0.5


class IdleWait:
    """The idle wait of one worker; it keeps its poll deadline across heartbeats."""

    def __init__(
        self,
        listener: Listener,
        *,
        poll_interval: float,
        should_stop: Callable[[], bool],
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._listener = listener
        self._poll_interval = poll_interval
        self._should_stop = should_stop
        self._rng = rng or random.Random()
        self._clock = clock
        self._poll_at: float | None = None  # when the current wait ends with a poll

    def wait(self, *, heartbeat_at: float) -> bool:
        """Block until there may be work (True), or only the heartbeat at ``heartbeat_at`` is due.

        True on a NOTIFY, a listener reconnect, the poll interval, or a stop.
        False when only the heartbeat is due, however long the poll interval:
        the next call resumes the same wait, so heartbeats neither wait for
        the poll nor postpone it.
        """
        if self._poll_at is None:
            self._poll_at = self._clock() + self._poll_interval * self._rng.uniform(0.8, 1.2)
        while not self._should_stop():
            now = self._clock()
            if now >= self._poll_at:
                break
            if now >= heartbeat_at:
                return False
            timeout = min(self._poll_at, heartbeat_at, now + STOP_CHECK_SECONDS) - now
            if self._listener.wait(timeout):
                break
        self._poll_at = None
        return True

    def look_now(self) -> None:
        """Forget the pending poll: after a database error the loop looks for work at once."""
        self._poll_at = None
