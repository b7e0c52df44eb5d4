"""The ``deliver`` mode: deliveries/s through real deliverers, and one delivery's latency.

A fast receiver (eventflo.bench.receiver) runs in a process of its own on
127.0.0.1, answering 204 at once; its CPU is taken from the same two the
deliverers and PostgreSQL use. Each run:

- throughput: ``--events`` events, each with one pending delivery to a
  standard (signed) endpoint, are sent by ``eventflo deliver --processes 2``;
  deliveries/s is counted by the database, from the first attempt's start
  to the last delivery (target ≥ 1,000/s);
- latency: one ``eventflo deliver`` waits on LISTEN, and one delivery at a
  time is inserted with its NOTIFY, as a worker's outcome writes it;
  created → delivered by the database's clock, p50 and p99.

Every delivery must end delivered, exactly one attempt each.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import IO

from eventflo import endpoints
from eventflo.bench import (
    POLL_SECONDS,
    QUERIES,
    Bench,
    BenchError,
    Connection,
    ModeResult,
    Ratio,
    Sample,
    drain,
    figures,
    latency,
    receiver,
)

SUMMARY = "deliveries/s with 2 deliver processes to a local receiver, and one delivery's latency"

PROCESSES = 2
TARGET_PER_S = 1000.0
LATENCY_DELIVERIES = 200
DELIVERY_TIMEOUT = 120.0  # one run's deliveries, or one delivery of the latency part

FIGURES = (
    ("deliveries_per_s", f"{PROCESSES} deliver processes, deliveries/s", "deliveries/s"),
    ("latency_p50_ms", "one delivery, created → delivered, p50", "ms"),
    ("latency_p99_ms", "one delivery, created → delivered, p99", "ms"),
)


def run(bench: Bench) -> ModeResult:
    with receiver.running() as url:
        with bench.connect("setup") as conn:
            conn.execute(QUERIES["remove_bench_endpoints"])
            endpoints.create(conn, name="eventflo-bench", url=url, allow_private=True)
        samples = bench.repeat("deliver", lambda: _once(bench))
    result = figures(samples, FIGURES)
    rate = next(f.median for f in result if f.key == "deliveries_per_s")
    return ModeResult(
        "deliver",
        result,
        (
            Ratio(
                "deliver_rate_vs_1000",
                f"deliveries/s with {PROCESSES} deliver processes / 1,000",
                rate / TARGET_PER_S,
                1.0,
            ),
        ),
    )


def _once(bench: Bench) -> Sample:
    count = bench.settings.events
    with bench.connect("setup") as conn:
        conn.execute(QUERIES["truncate_events"])
        conn.execute(QUERIES["insert_queued_events"], {"events": count})
        conn.execute(QUERIES["one_delivery_per_event"])
    bench.progress(f"deliver: {count:,} deliveries, {PROCESSES} processes")
    with tempfile.TemporaryFile() as log:
        with _deliverers(bench, log, PROCESSES), bench.connect("observer") as conn:
            _wait_delivered(conn, count, log)
            row = conn.execute(QUERIES["delivery_window"]).fetchone()
        assert row is not None
        if row["attempts"] != count:
            raise BenchError(f"deliver: {row['attempts']:,} attempts for {count:,} deliveries")
        rate = count / row["seconds"] if row["seconds"] else 0.0
        bench.progress(f"deliver: {rate:,.0f} deliveries/s; now one at a time")
        with _deliverers(bench, log, 1), bench.connect("latency") as conn:
            latencies = _latencies(conn, log)
    ordered = sorted(latencies)
    return {
        "deliveries_per_s": rate,
        "latency_p50_ms": statistics.median(ordered),
        "latency_p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }


def _latencies(conn: Connection, log: IO[bytes]) -> list[float]:
    conn.execute(QUERIES["truncate_events"])
    taken = []
    for _ in range(LATENCY_DELIVERIES):
        row = conn.execute(QUERIES["insert_one_delivery"]).fetchone()
        assert row is not None
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while True:
            done = conn.execute(QUERIES["delivery_latency"], {"id": row["id"]}).fetchone()
            if done is not None and done["ms"] is not None:
                taken.append(float(done["ms"]))
                break
            if time.monotonic() > deadline:
                raise BenchError(f"deliver: a delivery was not delivered{drain.log_tail(log)}")
            time.sleep(0.001)
    return taken


def _wait_delivered(conn: Connection, count: int, log: IO[bytes]) -> None:
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    while True:
        row = conn.execute(QUERIES["deliveries_by_status"]).fetchone()
        assert row is not None
        if row["failed"] or row["delivered"] >= count:
            break
        if time.monotonic() > deadline:
            raise BenchError(f"deliver: {row['delivered']:,} of {count:,} delivered in time")
        time.sleep(POLL_SECONDS)
    if row["failed"] or row["delivered"] != count:
        raise BenchError(
            f"deliver: {row['failed']:,} deliveries failed, {row['delivered']:,} of {count:,}"
            f" delivered{drain.log_tail(log)}"
        )


@contextlib.contextmanager
def _deliverers(bench: Bench, log: IO[bytes], processes: int) -> Iterator[None]:
    """``eventflo deliver --processes N``, up and listening; stopped on the way out."""
    command = [sys.executable, "-m", "eventflo", "deliver", "--processes", str(processes)]
    env = dict(
        os.environ,
        EVENTFLO_DATABASE_URL=bench.url,
        EVENTFLO_LOG_LEVEL="warning",
        EVENTFLO_ALLOW_PRIVATE_ENDPOINTS="on",
    )
    process = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + latency.START_TIMEOUT
        with bench.connect("observer") as conn:
            while True:
                row = conn.execute(QUERIES["listening_deliverers"]).fetchone()
                if row is not None and row["listening"] >= processes:
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"the deliverers did not start{drain.log_tail(log)}")
                time.sleep(POLL_SECONDS)
        yield
    finally:
        latency.stop(process)
