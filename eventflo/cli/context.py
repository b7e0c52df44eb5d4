"""What every command shares: the settings (read once per invocation), the database, its errors.

The group stores one CliState in the click context; commands receive it with
``@pass_state``. Database trouble is translated once, around the whole
invocation (``database_errors``), into the one-line errors a user reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import click
import psycopg

from eventflo import db, devstate, errors
from eventflo.config import Config, ConfigError

Connection = psycopg.Connection[dict[str, Any]]


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class CliState:
    """The settings of this invocation, read from the environment on first use and kept."""

    def __init__(self) -> None:
        self._config: Config | None = None
        self._dev: devstate.DevState | None = None
        self._discovered = False

    @property
    def config(self) -> Config:
        """The ``EVENTFLO_*`` settings; a bad value is a usage error that names the variable."""
        if self._config is None:
            try:
                self._config = Config.from_env()
            except ConfigError as exc:
                raise click.UsageError(str(exc)) from None
        return self._config

    @property
    def database_config(self) -> Config:
        """The settings with a database URL: EVENTFLO_DATABASE_URL, else the running dev's.

        Using the dev instance's database is said on stderr, once; with
        neither, a usage error says how to set the URL.
        """
        config = self.config
        if config.database_url is None:
            dev = self._running_dev()
            if dev is None or dev.database_url is None:
                try:
                    config.require_database_url()
                except ConfigError as exc:
                    raise click.UsageError(str(exc)) from None
                raise AssertionError("unreachable: no URL passed require_database_url")
            click.echo(
                f"using the `eventflo dev` database at {dev.database_url}"
                f" (pid {dev.pid}; EVENTFLO_DATABASE_URL is not set)",
                err=True,
            )
            config = self._config = dataclasses.replace(config, database_url=dev.database_url)
        return config

    @property
    def database_url(self) -> str:
        url = self.database_config.database_url
        assert url is not None
        return url

    @property
    def dev_instance(self) -> devstate.DevState | None:
        """The running ``eventflo dev`` whose database this invocation uses, if it is one."""
        url = self.database_config.database_url
        return next((dev for dev in devstate.running() if dev.database_url == url), None)

    @contextlib.contextmanager
    def connect(self, purpose: str) -> Iterator[Connection]:
        """One connection for a command, named after it in pg_stat_activity."""
        with db.connect(self.database_config, f"eventflo-cli {purpose}") as conn:
            yield conn

    def _running_dev(self) -> devstate.DevState | None:
        """The one ``eventflo dev`` running from here (``.eventflo/``); a usage error if several."""
        if not self._discovered:
            self._discovered = True
            found = devstate.running()
            if len(found) > 1:
                listed = ", ".join(f"{dev.database_url} (port {dev.port})" for dev in found)
                raise click.UsageError(
                    f"EVENTFLO_DATABASE_URL is not set and {len(found)} `eventflo dev` instances"
                    f" run here; set it to the database of one of them: {listed}"
                )
            self._dev = found[0] if found else None
        return self._dev


pass_state = click.make_pass_decorator(CliState, ensure=True)


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """An unreachable database (or one not migrated) becomes a one-line error and exit status 1.

    The first line of the driver's own message stays in it: it names the
    host and port that failed, which is what the user has to fix.
    """
    try:
        with db.translate_errors():
            yield
    except errors.DatabaseUnavailable as exc:
        raise click.ClickException(
            f"database unavailable: {first_line(exc.__cause__ or exc)}"
        ) from None
    except errors.SchemaNotCurrent as exc:
        raise click.ClickException(
            f"the database schema is not current ({first_line(exc.__cause__ or exc)});"
            " run: eventflo migrate"
        ) from None
