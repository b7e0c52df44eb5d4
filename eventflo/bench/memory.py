"""The ``memory`` mode: does a worker's memory stay flat over a long drain?

One real worker process (``eventflo worker --processes 1``, which runs the
worker loop in that very process) drains ``--memory-events`` queued events.
Its resident set size (``VmRSS`` in ``/proc/<pid>/status``) is read once
``--memory-first-events`` events are finished, and again when the queue is
empty. The target: after 200,000 events, within 10 % of the RSS
after the first 10,000. The process measured is the one that finished the
events: its pid comes from the worker id the attempts record, not from an
assumption about how the command starts its workers. Linux only.
"""

from __future__ import annotations

import platform
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

from eventflo.bench import (
    POLL_SECONDS,
    QUERIES,
    Bench,
    BenchError,
    Connection,
    ModeResult,
    Sample,
    drain,
    figures,
    held_xmin,
)

SUMMARY = "one worker process drains --memory-events events: its RSS early on and at the end"

PROC = Path("/proc")


def run(bench: Bench) -> ModeResult:
    settings = bench.settings
    if not (PROC / "self" / "status").exists():
        raise BenchError(
            "the memory mode reads a worker's RSS from /proc/<pid>/status, which"
            f" {platform.system() or 'this system'} does not have; it runs on Linux only"
        )
    if settings.memory_first_events >= settings.memory_events:
        raise BenchError(
            f"--memory-first-events ({settings.memory_first_events:,}) must be smaller than"
            f" --memory-events ({settings.memory_events:,})"
        )
    samples = bench.repeat("memory", lambda: memory_once(bench))
    specs = (
        ("rss_first_mib", f"worker RSS after {settings.memory_first_events:,} events", "MiB"),
        ("rss_end_mib", f"worker RSS after {settings.memory_events:,} events", "MiB"),
        ("rss_growth_pct", "RSS growth, first reading → end", "%"),
        ("rss_peak_mib", "worker peak RSS (VmHWM)", "MiB"),
    )
    return ModeResult("memory", figures(samples, specs))


def memory_once(bench: Bench) -> Sample:
    """One worker process drains ``settings.memory_events`` events; its RSS early and at the end.

    Raises BenchError if any event was not processed exactly once.
    """
    settings = bench.settings
    with bench.connect("setup") as conn:
        conn.execute(QUERIES["truncate_events"])
        conn.execute(QUERIES["insert_queued_events"], {"events": settings.memory_events})
        conn.execute(QUERIES["vacuum_events"])
        attempts_before = held_xmin.attempts_high_water(conn)
    with (
        tempfile.TemporaryFile() as log,
        bench.connect("observer") as conn,
        drain.gated_workers(bench, conn, log, processes=1) as worker,
    ):
        _wait_for_attempts(conn, worker, log, attempts_before + settings.memory_first_events)
        pid = _finishing_pid(conn, worker)
        first = _memory_kib(pid)
        drain.wait_until_empty(conn, worker, log)
        end = _memory_kib(pid)
    with bench.connect("verify") as conn:
        drain.verify(conn, settings.memory_events)
    return {
        "rss_first_mib": first["VmRSS"] / 1024,
        "rss_end_mib": end["VmRSS"] / 1024,
        "rss_growth_pct": 100 * (end["VmRSS"] / first["VmRSS"] - 1),
        "rss_peak_mib": end["VmHWM"] / 1024,
    }


def _wait_for_attempts(
    conn: Connection, worker: subprocess.Popen[bytes], log: IO[bytes], high_water: int
) -> None:
    """Poll until the attempts' high-water mark reaches ``high_water`` (give or take a batch)."""
    while held_xmin.attempts_high_water(conn) < high_water:
        if worker.poll() is not None:
            raise BenchError(
                f"the worker exited early (status {worker.returncode}){drain.log_tail(log)}"
            )
        time.sleep(POLL_SECONDS)


def _finishing_pid(conn: Connection, worker: subprocess.Popen[bytes]) -> int:
    """The pid in the id of the one worker that finished events: ``<host>:<pid>:<suffix>``.

    It must be the process the bench started or a child of it, on this host.
    """
    ids = [row["worker_id"] for row in conn.execute(QUERIES["finishing_workers"])]
    if len(ids) != 1:
        raise BenchError(f"expected one worker to finish events, found {len(ids)}: {ids}")
    try:
        host, pid_text, _ = ids[0].rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        raise BenchError(f"worker id {ids[0]!r} names no process id") from None
    # Worker ids cut the host name to 32 characters (worker.new_worker_id).
    if host != socket.gethostname()[:32] or worker.pid not in (pid, _parent_pid(pid)):
        raise BenchError(f"worker {ids[0]} is not the process the bench started (pid {worker.pid})")
    return pid


def _parent_pid(pid: int) -> int | None:
    """The parent of ``pid``, so that a worker the command spawned still counts."""
    try:
        return int(_status(pid)["PPid"])
    except (OSError, KeyError, ValueError):
        return None


def _memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (the peak so far) of ``pid``, in KiB."""
    try:
        status = _status(pid)
        return {key: int(status[key].split()[0]) for key in ("VmRSS", "VmHWM")}
    except (OSError, KeyError, ValueError) as exc:
        raise BenchError(f"cannot read the memory of worker process {pid}: {exc!r}") from None


def _status(pid: int) -> dict[str, str]:
    """``/proc/<pid>/status`` as a mapping of its ``Name: value`` lines (tab-separated)."""
    text = (PROC / str(pid) / "status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
