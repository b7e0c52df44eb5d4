"""``eventflo dev``: one command that runs PostgreSQL, the migrations, the API and the workers."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator

import click

from eventflo import devstate, logs, migrate, signals
from eventflo.config import Config
from eventflo.embedded import EmbeddedPostgres, EmbeddedUnavailable

log = logging.getLogger(__name__)

API_HOST = "127.0.0.1"


class DevRefused(Exception):
    """``eventflo dev`` cannot start here; the message is one line that says what to do."""


def run(config: Config, *, port: int, worker_processes: int, data_dir: str) -> int:
    """Start everything, wait for Ctrl-C, SIGTERM or a child's death, stop it all; the exit status.

    Raises DevRefused before starting anything when another ``eventflo dev``
    holds ``data_dir`` or the port is taken.
    """
    logs.configure(config)
    with _data_dir_lock(config, data_dir) as lock:
        try:
            ensure_port_free(port)
        except DevRefused:
            if lock is not None and lock.took_over is not None:
                lock.keep_file()  # what a killed run left stays for the next start
            raise
        return _run(
            config, port=port, worker_processes=worker_processes, data_dir=data_dir, lock=lock
        )


@contextlib.contextmanager
def _data_dir_lock(config: Config, data_dir: str) -> Iterator[devstate.DevLock | None]:
    """The lock on the embedded server's data directory (none needed with a database URL)."""
    if config.database_url is not None:
        yield None
        return
    try:
        lock = devstate.acquire(data_dir)
    except devstate.AlreadyRunning as exc:
        raise DevRefused(already_running_message(exc, data_dir)) from None
    except OSError as exc:
        where = devstate.state_path(data_dir)
        raise DevRefused(f"cannot lock the data dir with {where}: {exc.strerror}") from None
    try:
        yield lock
    finally:
        lock.release()


def already_running_message(exc: devstate.AlreadyRunning, data_dir: str) -> str:
    second = 'make run PORT=8001 ARGS="--data-dir .eventflo/pgdata-2"'
    if exc.state is None:
        who = f"another eventflo dev holds {data_dir} (see {exc.path})"
        stop = "stop it with Ctrl-C in its terminal"
    else:
        who = (
            f"eventflo dev is already running on {data_dir}: pid {exc.state.pid},"
            f" API on http://{API_HOST}:{exc.state.port}"
        )
        stop = f"stop it with Ctrl-C in its terminal or `kill {exc.state.pid}`"
    return f"{who}; use that one, {stop}, or give this one its own --data-dir and --port ({second})"


def ensure_port_free(port: int) -> None:
    """Bind the API's port for a moment, as gunicorn will: taken means DevRefused, now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # gunicorn sets it too
        try:
            probe.bind((API_HOST, port))
        except OSError as exc:
            raise DevRefused(
                f"port {port} on {API_HOST} is already in use ({exc.strerror}):"
                f" stop what listens there, or pick another port:"
                f" eventflo dev --port {port + 1} (make run PORT={port + 1})"
            ) from None


def _run(
    config: Config,
    *,
    port: int,
    worker_processes: int,
    data_dir: str,
    lock: devstate.DevLock | None,
) -> int:
    embedded = None
    stop = threading.Event()
    children: list[subprocess.Popen[bytes]] = []

    def kill_children(signum: int) -> None:  # a second Ctrl-C: do not wait for graceful shutdowns
        for child in children:
            if child.poll() is None:
                child.kill()

    signals.install_graceful_stop(stop, on_second=kill_children, message="stopping everything")
    env = {**os.environ}
    auth, auth_line = _auth_setting(config, env)
    private_line = _private_endpoints_setting(env)
    try:
        if lock is None:
            assert config.database_url is not None
            url = config.database_url
            click.echo(f"database: {_without_password(url)} (EVENTFLO_DATABASE_URL)")
        else:
            lock.write(devstate.DevState(os.getpid(), port, data_dir, auth=auth))
            embedded = EmbeddedPostgres(data_dir)
            url = _start_embedded(embedded, data_dir, lock)
            lock.write(devstate.DevState(os.getpid(), port, data_dir, url, auth))
            click.echo(f"database: {url}")
        applied = migrate.apply(url)
        click.echo(f"migrations: {len(applied)} applied")
        click.echo(auth_line)
        click.echo(private_line)
        env["EVENTFLO_DATABASE_URL"] = url
        base = [sys.executable, "-m", "eventflo"]
        # New sessions: Ctrl-C reaches only us, and we stop the children in order.
        children.append(
            subprocess.Popen(
                [*base, "worker", "--processes", str(worker_processes)],
                env=env,
                start_new_session=True,
            )
        )
        children.append(subprocess.Popen([*base, "deliver"], env=env, start_new_session=True))
        children.append(
            subprocess.Popen([*base, "serve", "--port", str(port)], env=env, start_new_session=True)
        )
        if _api_answers(port, children, stop):
            click.echo(
                f"EventFlo is running: API on http://{API_HOST}:{port}, "
                f"{worker_processes} workers, a deliverer. Ctrl-C stops everything."
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


def _start_embedded(embedded: EmbeddedPostgres, data_dir: str, lock: devstate.DevLock) -> str:
    """Start the embedded server (or take over a killed run's); its URL."""
    click.echo(f"EVENTFLO_DATABASE_URL is not set: starting an embedded PostgreSQL in {data_dir}")
    if lock.took_over is not None:
        click.echo(
            f"an earlier eventflo dev (pid {lock.took_over.pid}) ended without stopping:"
            " this one takes over its data directory, and its PostgreSQL if still running"
        )
    try:
        url = embedded.start(adopt=lock.took_over is not None)
    except EmbeddedUnavailable as exc:
        raise DevRefused(f"{exc}, or set EVENTFLO_DATABASE_URL") from None
    if embedded.found_running is not None:
        click.echo(
            f"the PostgreSQL on {data_dir} was running already (pid {embedded.found_running});"
            " it is not this command's, so it keeps running after Ctrl-C"
        )
    return url


def _auth_setting(config: Config, env: dict[str, str]) -> tuple[bool, str]:
    """Whether the API will ask for keys, and the line that says so.

    A development run turns auth off (in ``env``) unless EVENTFLO_AUTH was set.
    """
    if env.get("EVENTFLO_AUTH", "").strip():
        return config.auth, f"auth: EVENTFLO_AUTH={env['EVENTFLO_AUTH'].strip()} (as set)"
    # A development run should work without making keys first; it says so, loudly.
    env["EVENTFLO_AUTH"] = "off"
    return False, (
        "auth: off (EVENTFLO_AUTH=off) for local development: "
        "the API accepts requests without an API key"
    )


def _private_endpoints_setting(env: dict[str, str]) -> str:
    """A development run lets endpoints be local receivers (``http://127.0.0.1:…``), and says so.

    Only for the processes it starts: a command run from another shell
    checks URLs as its own environment says.
    """
    name = "EVENTFLO_ALLOW_PRIVATE_ENDPOINTS"
    if env.get(name, "").strip():
        return f"endpoints: {name}={env[name].strip()} (as set)"
    env[name] = "on"
    return (
        f"endpoints: {name}=on for local development: the API accepts endpoints on private"
        " and loopback addresses, and plain http://"
    )


def _api_answers(port: int, children: list[subprocess.Popen[bytes]], stop: threading.Event) -> bool:
    """Wait (at most 60 s) until the API accepts connections, so "running" is true when printed."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not stop.is_set():
        if any(child.poll() is not None for child in children):
            return False
        try:
            with socket.create_connection((API_HOST, port), timeout=1):
                return True
        except OSError:
            stop.wait(0.1)
    return False


def _without_password(url: str | None) -> str:
    """A URL fit to print: any password replaced by ***."""
    parts = urllib.parse.urlsplit(url or "")
    if parts.password is None:
        return url or ""
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
