"""How every EventFlo process reacts to SIGTERM and SIGINT, written once.

Three behaviours cover all of them:
- a long-running process (worker, supervisor, ``eventflo dev``) stops
  gracefully on the first signal and hard on the second
  (``install_graceful_stop``);
- a child whose parent forwards the stop ignores the terminal's Ctrl-C, so a
  single keypress is not counted twice (``ignore_terminal_interrupt``);
- a command that must clean up on the way out (the bench's scratch database)
  unwinds on SIGTERM as it does on Ctrl-C (``sigterm_unwinds``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from types import FrameType

log = logging.getLogger(__name__)

GRACEFUL_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def install_graceful_stop(
    stop: threading.Event,
    signals: Iterable[int] = GRACEFUL_SIGNALS,
    *,
    on_second: Callable[[int], None] | None = None,
    message: str = "finishing the work in hand, then exiting",
) -> None:
    """The first signal sets ``stop``; the second calls ``on_second`` or, by default, kills.

    By default the second signal restores the default action and re-raises
    itself, so the process dies at once as an operator who pressed Ctrl-C
    twice expects. Only the main thread may call this (Python's rule).
    """

    def handle(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            log.info("received %s: %s", signal.Signals(signum).name, message)
            stop.set()
        elif on_second is not None:
            on_second(signum)
        else:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    for signum in signals:
        signal.signal(signum, handle)


def ignore_terminal_interrupt() -> None:
    """For a child whose parent stops it: Ctrl-C reaches the whole group, the parent acts."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Inside the block SIGTERM raises KeyboardInterrupt, so ``finally`` clauses run as on Ctrl-C.

    Outside the main thread signals cannot be handled; there the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
