"""No web stack below the web layer: a worker process never loads Flask and its kind.

Checked twice: importing the domain and data modules in a fresh interpreter,
and a real worker process (each way of starting one) that processes an
event and stops on SIGTERM, whose modules a ``sitecustomize`` dumps at exit.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import uuid
from typing import Any

import psycopg
import pytest

from eventflo import events
from tests.integration.worker_harness import poll_until

WEB_STACK = ("flask", "werkzeug", "flask_smorest", "prometheus_client", "marshmallow", "webargs")
BELOW_THE_WEB = (
    "eventflo.worker",
    "eventflo.queue",
    "eventflo.rules",
    "eventflo.db",
    "eventflo.events",
    "eventflo.backtest",  # `rules apply --dry-run` judges in the CLI: no web stack there either
)
REPOSITORY = pathlib.Path(__file__).resolve().parents[2]

# Loaded first by every Python process that has its directory on PYTHONPATH.
SITECUSTOMIZE = textwrap.dedent(
    """
    import atexit, json, os, sys

    def _dump_modules():
        with open(os.environ["EVENTFLO_TEST_MODULES_FILE"], "w") as out:
            json.dump(sorted(sys.modules), out)

    atexit.register(_dump_modules)
    """
)


def _web_modules(names: list[str]) -> list[str]:
    return sorted(name for name in names if name.split(".")[0] in WEB_STACK)


def _clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any EVENTFLO_* setting, plus ``settings``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("EVENTFLO_")}
    env.update(settings)
    return env


def test_importing_the_domain_and_data_modules_loads_no_web_stack():
    code = "\n".join(
        [
            "import json, sys",
            f"import {', '.join(BELOW_THE_WEB)}",
            "print(json.dumps(sorted(sys.modules)))",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_clean_env()
    )
    loaded = json.loads(result.stdout)
    assert set(BELOW_THE_WEB) <= set(loaded)
    assert _web_modules(loaded) == []


WORKER_COMMANDS = {
    "run_worker": [
        sys.executable,
        "-c",
        "from eventflo.config import Config\n"
        "from eventflo.worker import run_worker\n"
        "run_worker(Config.from_env())",
    ],
    "python worker.py": [sys.executable, "worker.py"],
    "eventflo worker": [str(pathlib.Path(sys.executable).with_name("eventflo")), "worker"],
}


@pytest.mark.parametrize("command", WORKER_COMMANDS.values(), ids=WORKER_COMMANDS.keys())
def test_a_worker_process_runs_without_the_web_stack(
    command: list[str], database_url: str, conn: psycopg.Connection[Any], tmp_path: pathlib.Path
):
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    dump = tmp_path / "modules.json"
    env = _clean_env(
        EVENTFLO_DATABASE_URL=database_url,
        EVENTFLO_POLL_INTERVAL="0.5",
        EVENTFLO_TEST_MODULES_FILE=str(dump),
        PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
    )
    event_id = events.insert(
        conn, events.NewEvent(event_type="payment_failed", payload={"amount": 5})
    ).event_id

    worker = subprocess.Popen(
        command, cwd=REPOSITORY, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        completed = poll_until(lambda: _status(conn, event_id) == "completed", timeout=30)
        assert completed, (
            f"the worker did not complete the event (status {_status(conn, event_id)})"
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr.decode(errors="replace")

    loaded = json.loads(dump.read_text())
    assert "eventflo.worker" in loaded
    assert _web_modules(loaded) == []


def _status(conn: psycopg.Connection[Any], event_id: uuid.UUID) -> str | None:
    row = conn.execute(
        "SELECT status::text AS status FROM events WHERE id = %s", [event_id]
    ).fetchone()
    return None if row is None else row["status"]


def test_both_spellings_of_create_app_name_the_same_factory():
    import eventflo
    import eventflo.app

    assert eventflo.create_app is eventflo.app.create_app
    with pytest.raises(AttributeError):
        eventflo.no_such_thing  # noqa: B018
