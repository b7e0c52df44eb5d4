"""Asking before large changes, and showing progress: on a terminal and in a log alike."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator

import click

# Without a terminal (cron, systemd, CI logs) progress comes as a line this often.
PROGRESS_LINE_SECONDS = 10.0


def confirm_large(count: int, question: str, *, confirm_above: int, assume_yes: bool) -> None:
    """Ask before acting on more than ``confirm_above`` events unless --yes; "no" exits 1."""
    if count > confirm_above and not assume_yes:
        click.confirm(question, abort=True)


@contextlib.contextmanager
def progress(length: int, label: str) -> Iterator[Callable[[int], None]]:
    """Progress on stderr: a bar on a terminal, else a line every PROGRESS_LINE_SECONDS.

    Yields ``advance(n)``, to call as each chunk of work is done.
    """
    if sys.stderr.isatty():
        with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
            yield bar.update
        return
    done = 0
    last_line = time.monotonic()

    def advance(n: int) -> None:
        nonlocal done, last_line
        done += n
        if time.monotonic() - last_line >= PROGRESS_LINE_SECONDS:
            last_line = time.monotonic()
            click.echo(f"{label}: {done:,} of {length:,} event(s)", err=True)

    yield advance
