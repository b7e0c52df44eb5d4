"""LISTEN connections that survive the database going away.

A NOTIFY is only a hint: a dropped connection silently delivers nothing, so
after every reconnect the caller is told to look (poll) at once.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg

from eventflo import db
from eventflo.config import Config
from eventflo.sql import QUERIES

log = logging.getLogger(__name__)

QUEUED_CHANNEL = "eventflo_queued"
FINISHED_CHANNEL = "eventflo_finished"
RULES_CHANNEL = "eventflo_rules"  # a rule version became active


class Listener:
    """One dedicated autocommit connection LISTENing on one channel."""

    def __init__(self, config: Config, channel: str, application_name: str) -> None:
        self._config = config
        self._channel = channel
        self._application_name = application_name
        self._conn: psycopg.Connection[dict[str, object]] | None = None
        self._backoff = db.ReconnectBackoff(first=0.1, cap=5.0)

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` s; True when there may be work (a NOTIFY or a reconnect)."""
        if self._conn is None:
            return self._reconnect(timeout)
        try:
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                return True
            return False
        except psycopg.OperationalError as exc:
            log.warning("listener on %s lost its connection: %s", self._channel, exc)
            self.close()
            return self._reconnect(timeout)

    def _reconnect(self, timeout: float) -> bool:
        if self._backoff.current:
            time.sleep(min(self._backoff.current, timeout))
        conn: psycopg.Connection[dict[str, object]] | None = None
        try:
            conn = db.connect(self._config, self._application_name)
            conn.execute(QUERIES[f"listen_{self._channel}"])
        except psycopg.OperationalError as exc:
            if conn is not None:
                conn.close()  # connected, but LISTEN failed: do not leak the connection
            wait = self._backoff.failed()
            log.warning(
                "listener on %s cannot connect (retrying in %.1f s): %s", self._channel, wait, exc
            )
            return True  # still look for work: polling is the fallback
        self._conn = conn
        if self._backoff.current:
            log.info("listener on %s reconnected", self._channel)
        self._backoff.succeeded()
        return True

    def connect(self) -> None:
        """Connect now (at start-up), so the first NOTIFY is not missed."""
        if self._conn is None:
            self._reconnect(0)

    def backend_pid(self) -> int | None:
        """The server process of the LISTEN connection (for operators and tests)."""
        return None if self._conn is None else self._conn.info.backend_pid

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


class ChannelWatcher:
    """Turns one channel's notifications into a counter that API threads can watch.

    One daemon thread per API process and channel, started by the first
    request that asks (after any fork, so gunicorn workers each get their own).
    A reconnect counts as a notification: one may have been missed.
    """

    FALLBACK_POLL = 1.0

    def __init__(self, config: Config, channel: str, application_name: str) -> None:
        self._config = config
        self._channel = channel
        self._application_name = application_name
        self._condition = threading.Condition()
        self._generation = 0
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = threading.Event()

    def generation(self) -> int:
        """A counter that moves on every notification; read it before checking the database."""
        self._ensure_started()
        with self._condition:
            return self._generation

    def wait_for_next(self, seen: int, timeout: float) -> None:
        """Return once a notification newer than ``seen`` arrives, or after a bounded poll."""
        with self._condition:
            self._condition.wait_for(
                lambda: self._generation != seen, timeout=min(timeout, self.FALLBACK_POLL)
            )

    def _ensure_started(self) -> None:
        with self._start_lock:
            if self._thread is None:
                ready = threading.Event()
                self._thread = threading.Thread(
                    target=self._run,
                    args=(ready,),
                    name=f"eventflo-watcher-{self._channel}",
                    daemon=True,
                )
                self._thread.start()
                # Wait briefly for LISTEN, so a result that lands right now wakes us.
                ready.wait(timeout=self._config.pool_timeout)

    def _run(self, ready: threading.Event) -> None:
        listener = Listener(self._config, self._channel, self._application_name)
        try:
            listener.connect()
            ready.set()
            while not self._closed.is_set():
                # Short waits so close() is honoured within a second.
                if listener.wait(timeout=1.0):
                    with self._condition:
                        self._generation += 1
                        self._condition.notify_all()
        finally:
            listener.close()

    def close(self) -> None:
        """Stop the thread and close its connection (when an app is torn down, e.g. in tests)."""
        self._closed.set()
        with self._start_lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5.0)


class FinishedWatcher(ChannelWatcher):
    """Wake-ups for long-polling requests: ``eventflo_finished``, sent once per finished batch."""

    def __init__(self, config: Config) -> None:
        super().__init__(config, FINISHED_CHANNEL, "eventflo-api-listener")


class RulesWatcher(ChannelWatcher):
    """Tells an API process that another rule version became active: ``eventflo_rules``."""

    def __init__(self, config: Config) -> None:
        super().__init__(config, RULES_CHANNEL, "eventflo-api-rules-listener")
