"""The container image, run as an operator runs it: migrate, keys, serve, worker.

Built from the repository's Dockerfile. Its base is the public Python image
when Docker can pull it; where no registry is reachable (CI here), a base
made from this machine's Debian packages by ``.ci/build-python-image``, or
the one ``EVENTFLO_TEST_IMAGE_BASE`` names. Every container runs as the
image's user (uid 10001) with a read-only root filesystem, on the host's
network (the test's PostgreSQL listens on 127.0.0.1), and is stopped by
``docker stop``: SIGTERM, then a grace period.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import requests

from tests.e2e.conftest import free_port, wait_for

pytestmark = pytest.mark.e2e

ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGE = "eventflo:e2e-test"
PUBLIC_BASE = "python:3.11-slim-bookworm"
LOCAL_BASE = "eventflo-python:3.11"
GRACE_SECONDS = 30


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        pytest.fail(f"docker {' '.join(args[:3])}… failed: {done.stderr.strip()[-2000:]}")
    return done.stdout.strip()


def _base() -> str:
    """The base to build on: the one asked for, else the public one if Docker has it, else ours."""
    asked = os.environ.get("EVENTFLO_TEST_IMAGE_BASE")
    if asked:
        return asked
    for attempt in (["image", "inspect", PUBLIC_BASE], ["pull", "-q", PUBLIC_BASE]):
        if subprocess.run(["docker", *attempt], capture_output=True, timeout=300).returncode == 0:
            return PUBLIC_BASE
    subprocess.run(
        ["bash", str(ROOT / ".ci" / "build-python-image"), LOCAL_BASE], check=True, timeout=600
    )
    return LOCAL_BASE


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0
    ):
        message = "no Docker daemon (start dockerd)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    docker("build", "-q", "--build-arg", f"BASE={_base()}", "-t", IMAGE, str(ROOT), timeout=900)
    yield IMAGE


class Containers:
    """Containers started by one test, removed at its end whatever happened."""

    def __init__(self, image: str, database_url: str) -> None:
        self.image = image
        self.database_url = database_url
        self.names: list[str] = []

    def _args(self, *, healthcheck: bool) -> list[str]:
        args = [
            "--read-only",
            "--network",
            "host",
            "-e",
            f"EVENTFLO_DATABASE_URL={self.database_url}",
        ]
        return args + (["--health-interval", "1s"] if healthcheck else ["--no-healthcheck"])

    def run(self, *command: str) -> str:
        """A one-shot command (migrate, keys …): its output; it must exit 0."""
        return docker("run", "--rm", *self._args(healthcheck=False), self.image, *command)

    def start(
        self, name: str, *command: str, healthcheck: bool = False, env: tuple[str, ...] = ()
    ) -> str:
        full = f"eventflo-e2e-{name}-{uuid.uuid4().hex[:8]}"
        self.names.append(full)
        settings = [arg for variable in env for arg in ("-e", variable)]
        docker(
            "run", "-d", "--name", full, *settings, *self._args(healthcheck=healthcheck),
            self.image, *command,
        )  # fmt: skip
        return full

    def remove_all(self) -> None:
        for name in self.names:
            docker("rm", "-f", name, check=False)


@pytest.fixture
def containers(image: str, empty_database_url: str) -> Iterator[Containers]:
    started = Containers(image, empty_database_url)
    try:
        yield started
    finally:
        started.remove_all()


def state(name: str) -> dict[str, object]:
    return json.loads(docker("inspect", "--format", "{{json .State}}", name))


def test_the_image_migrates_serves_and_works_as_a_non_root_user_on_a_read_only_root(
    containers: Containers, empty_database_url: str
) -> None:
    shipped = len([m for m in (ROOT / "migrations").glob("*.sql") if ".rollback." not in m.name])
    assert f"applied {shipped} migration(s)" in containers.run("migrate")
    key = containers.run("keys", "create", "--name", "image test", "--scope", "admin").splitlines()[
        0
    ]
    assert key.startswith("efk_")

    port = free_port()
    api = containers.start(
        "api",
        *("serve", "--host", "127.0.0.1", "--port", str(port)),
        healthcheck=True,
        env=(f"EVENTFLO_HEALTHCHECK_URL=http://127.0.0.1:{port}/healthz",),
    )
    worker = containers.start("worker", "worker")
    # The image's own HEALTHCHECK (GET /healthz from inside) says the API is up.
    wait_for(
        lambda: state(api).get("Health", {}).get("Status") == "healthy",
        timeout=60,
        what=lambda: f"the API container healthy (now {state(api)})",
    )
    headers = {"Authorization": f"Bearer {key}"}
    posted = requests.post(
        f"http://127.0.0.1:{port}/events",
        json={"event_type": "payment_failed", "payload": {"amount": 1500}, "source": "billing"},
        headers=headers,
        timeout=10,
    )
    assert posted.status_code == 202, posted.text
    event_url = f"http://127.0.0.1:{port}/events/{posted.json()['event_id']}"

    def verdict() -> dict[str, object]:
        return requests.get(event_url, headers=headers, timeout=10).json()

    wait_for(lambda: verdict()["status"] == "completed", timeout=30, what="the event completed")
    assert verdict()["result"]["severity"] == "CRITICAL"

    for name in (api, worker):
        # Not root, and the root filesystem is read-only: nothing can be written outside tmpfs.
        assert docker("exec", name, "id", "-u") == "10001"
        touched = subprocess.run(
            ["docker", "exec", name, "touch", "/opt/eventflo/x"], capture_output=True, text=True
        )
        assert touched.returncode != 0 and "Read-only file system" in touched.stderr

    # docker stop: SIGTERM, and SIGKILL only after the grace period. Both exit cleanly.
    docker("stop", "-t", str(GRACE_SECONDS), api, worker, timeout=GRACE_SECONDS + 30)
    for name in (api, worker):
        stopped = state(name)
        assert stopped["ExitCode"] == 0, (name, stopped, docker("logs", name, check=False))
        assert stopped["OOMKilled"] is False
    logged = subprocess.run(["docker", "logs", worker], capture_output=True, text=True)
    assert "received SIGTERM" in logged.stdout + logged.stderr
    with psycopg.connect(empty_database_url) as conn:
        stopped_workers = conn.execute(
            "SELECT count(*) FROM workers WHERE stopped_at IS NOT NULL"
        ).fetchone()
    assert stopped_workers == (1,), "the worker deregistered on its way out"


def test_the_image_carries_its_labels_user_and_entrypoint(image: str) -> None:
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", image))
    assert config["Entrypoint"] == ["eventflo"]
    assert config["User"] == "10001:10001"
    assert config["Healthcheck"]["Test"][0] == "CMD"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.version"]
    # No compilers in the runtime image.
    for compiler in ("gcc", "cc", "rustc"):
        found = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "sh", image, "-c", f"command -v {compiler}"],
            capture_output=True,
            text=True,
        )
        assert found.returncode != 0, f"{compiler} in the image: {found.stdout}"
