"""The long-running commands: ``serve`` (the API), ``worker`` and ``dev`` (everything locally).

Each imports what it runs inside its function: the web stack is loaded only
by ``serve`` and ``dev``, so ``eventflo worker`` never imports Flask.
"""

from __future__ import annotations

import sys

import click

from eventflo import db, devstate, errors, keys
from eventflo.cli.context import CliState, Connection, pass_state
from eventflo.serve_options import serve_options


@click.command("serve")
@serve_options
@pass_state
def serve(state: CliState, host: str, port: int, workers: int, threads: int) -> None:
    """Serve the HTTP API with gunicorn (no queue processing: run `eventflo worker` too).

    The database is checked once first, so a wrong URL fails now; once
    serving, an unreachable database makes requests answer 503 until it is back.
    """
    from eventflo import serving

    config = state.database_config
    with state.connect("serve") as conn:
        if config.auth and not _any_active_key(conn):
            click.echo(
                "warning: EVENTFLO_AUTH is on and no API key exists yet, so every request but the"
                " probes, metrics and docs gets a 401; make one with"
                " `eventflo keys create --name NAME --scope SCOPE`",
                err=True,
            )
    serving.run_gunicorn(config, bind=f"{host}:{port}", workers=workers, threads=threads)


def _any_active_key(conn: Connection) -> bool:
    """Whether a key that is not revoked exists (yes, if the keys table is not there yet)."""
    try:
        with db.translate_errors():
            return bool(keys.list_keys(conn))
    except errors.SchemaNotCurrent:
        return True  # unmigrated: requests will say so (503) more precisely than we can here


@click.command("worker")
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes to run under one supervisor.",
)
@pass_state
def worker_command(state: CliState, processes: int) -> None:
    """Process queued events until SIGTERM or Ctrl-C (then finish the batch in hand and exit 0).

    With --processes N, one supervisor runs N worker processes and restarts
    any that dies.
    """
    from eventflo import worker

    config = state.database_config
    if processes == 1:
        worker.run_worker(config)
    else:
        sys.exit(worker.run_supervisor(config, processes))


@click.command("deliver")
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Deliverer processes to run (each sends EVENTFLO_DELIVERY_CONCURRENCY at once).",
)
@pass_state
def deliver_command(state: CliState, processes: int) -> None:
    """Send the outbox's deliveries until SIGTERM or Ctrl-C (then finish the requests in flight).

    Any number of deliverers may run, on any host: they share the outbox
    with SKIP LOCKED. With --processes N, N processes run here, and one that
    dies is restarted. See docs/delivery.md.
    """
    from eventflo import deliverer

    config = state.database_config
    if processes == 1:
        deliverer.run_deliverer(config)
    else:
        sys.exit(deliverer.run_processes(config, processes))


@click.command("dev")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--workers",
    "worker_processes",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Worker processes.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=devstate.DEFAULT_DATA_DIR,
    show_default=True,
    help="Embedded PostgreSQL's data (kept between runs); one `eventflo dev` per data dir.",
)
@pass_state
def dev(state: CliState, port: int, worker_processes: int, data_dir: str) -> None:
    """Run everything locally: PostgreSQL, migrations, API and workers, until Ctrl-C.

    Without EVENTFLO_DATABASE_URL, PostgreSQL is embedded, with its data in
    --data-dir; its URL is printed and kept in a state file beside the data
    dir, where the other eventflo commands run from this directory find it.
    Auth is off unless EVENTFLO_AUTH is set. A second `eventflo dev` on the
    same data dir, or on a port in use, refuses to start.
    """
    from eventflo import devserver

    try:
        status = devserver.run(
            state.config, port=port, worker_processes=worker_processes, data_dir=data_dir
        )
    except devserver.DevRefused as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(status)
