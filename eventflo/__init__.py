"""EventFlo: an event-processing backend in which PostgreSQL is the queue.

``from eventflo import create_app`` builds the web app (eventflo.app). It is
imported on first use, not here: a worker or the CLI imports this package
too, and must not load the web stack with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eventflo.app import create_app

__all__ = ["__version__", "create_app"]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """PEP 562: ``eventflo.create_app`` imports the web layer only when asked for."""
    if name == "create_app":
        from eventflo.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
