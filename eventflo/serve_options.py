"""The options of a gunicorn-served command: ``eventflo serve`` and the bench's bare endpoint.

One definition, so the bench's yardstick always starts with exactly the
API's defaults; it imports only click, so the CLI can apply it without
loading the web stack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])


def serve_options(command: F) -> F:
    """--host, --port, --workers and --threads, with ``eventflo serve``'s defaults."""
    options = (
        click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind."),
        click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True),
        click.option(
            "--workers",
            type=click.IntRange(min=1),
            default=2,
            show_default=True,
            help="gunicorn worker processes.",
        ),
        click.option(
            "--threads",
            type=click.IntRange(min=1),
            default=8,
            show_default=True,
            help="Threads per process (long-polls hold one each).",
        ),
    )
    for option in reversed(options):
        command = option(command)
    return command
