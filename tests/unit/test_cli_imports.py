"""Importing the command line (so also ``eventflo worker``) loads no web module and no bench."""

from __future__ import annotations

import subprocess
import sys

WEB_AND_BENCH = (
    "flask",
    "werkzeug",
    "flask_smorest",
    "marshmallow",
    "prometheus_client",
    "eventflo.bench",
)


def _loaded_after(statement: str) -> list[str]:
    """Which of WEB_AND_BENCH a fresh interpreter holds after running ``statement``."""
    report = f"print(' '.join(m for m in {WEB_AND_BENCH!r} if m in sys.modules))"
    probe = f"import sys\n{statement}\n{report}"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout.split()


def test_the_cli_and_the_worker_import_no_web_module_and_no_bench():
    assert _loaded_after("import eventflo.cli, eventflo.worker") == []


def test_the_bench_is_imported_only_by_its_command():
    assert "eventflo.bench" not in _loaded_after("import eventflo.cli")
