"""Logging set-up: one line per record, as text for people or JSON for machines."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

from eventflo.config import Config

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is structured data.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JSONFormatter(logging.Formatter):
    """One JSON object per line, with the ``extra=`` fields (event_id, worker_id, …) as keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger message key=value …``: the extra fields stay visible in text too."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD)
        return f"{line} {extra}" if extra else line


def configure(config: Config) -> None:
    """Route the ``eventflo`` loggers to stderr in the configured format; idempotent."""
    logger = logging.getLogger("eventflo")
    logger.setLevel(config.log_level.upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if config.log_format == "json" else TextFormatter())
    logger.handlers[:] = [handler]
    logger.propagate = False
