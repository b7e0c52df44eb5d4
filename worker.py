"""Run one EventFlo worker: ``python worker.py`` (``eventflo worker --processes N``: several)."""

from __future__ import annotations

import sys

from eventflo.cli import main

if __name__ == "__main__":
    main(["worker", *sys.argv[1:]])
