"""``eventflo dev``: one command that runs PostgreSQL, the migrations, the API and the workers."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import click

from eventflo import logs, migrate
from eventflo.config import Config
from eventflo.embedded import EmbeddedPostgres

log = logging.getLogger(__name__)


def run(config: Config, *, port: int, worker_processes: int, data_dir: str) -> int:
    """Start everything, wait for Ctrl-C or SIGTERM or a child's death, stop everything; the exit status."""
    logs.configure(config)
    embedded = None
    stop = threading.Event()
    children: list[subprocess.Popen[bytes]] = []

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():  # a second Ctrl-C: do not wait for graceful shutdowns
            for child in children:
                if child.poll() is None:
                    child.kill()
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    try:
        url = config.database_url
        if url is None:
            click.echo(
                f"EVENTFLO_DATABASE_URL is not set: starting an embedded PostgreSQL in {data_dir}"
            )
            embedded = EmbeddedPostgres(data_dir)
            url = embedded.start()
        applied = migrate.apply(url)
        click.echo(f"migrations: {len(applied)} applied")
        env = {**os.environ, "EVENTFLO_DATABASE_URL": url}
        if os.environ.get("EVENTFLO_AUTH", "").strip():
            click.echo(f"auth: EVENTFLO_AUTH={os.environ['EVENTFLO_AUTH'].strip()} (as set)")
        else:
            # A development run should work without making keys first; it says so, loudly.
            env["EVENTFLO_AUTH"] = "off"
            click.echo(
                "auth: off (EVENTFLO_AUTH=off) for local development: "
                "the API accepts requests without an API key"
            )
        base = [sys.executable, "-m", "eventflo"]
        # New sessions: Ctrl-C reaches only us, and we stop the children in order.
        children.append(
            subprocess.Popen(
                [*base, "worker", "--processes", str(worker_processes)],
                env=env,
                start_new_session=True,
            )
        )
        children.append(
            subprocess.Popen([*base, "serve", "--port", str(port)], env=env, start_new_session=True)
        )
        if _api_answers(port, children, stop):
            click.echo(
                f"EventFlo is running: API on http://127.0.0.1:{port}, "
                f"{worker_processes} workers. Ctrl-C stops everything."
            )
        while not stop.is_set():
            if any(child.poll() is not None for child in children):
                click.echo("a child process exited; stopping everything", err=True)
                break
            stop.wait(0.5)
        return 0 if stop.is_set() else 1
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if embedded is not None:
            embedded.stop()
        click.echo("stopped")


def _api_answers(port: int, children: list[subprocess.Popen[bytes]], stop: threading.Event) -> bool:
    """Wait (at most 60 s) until the API accepts connections, so "running" is true when printed."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not stop.is_set():
        if any(child.poll() is not None for child in children):
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            stop.wait(0.1)
    return False
