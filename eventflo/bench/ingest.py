"""The ``ingest`` mode: C concurrent clients POST events to the API served by gunicorn.

The real API (``eventflo serve --workers 2``) runs in a child process, and
next to it the bare insert endpoint (``eventflo.bench.bare_api``: Flask and
one INSERT) under the same gunicorn settings; no worker runs, so only the
ingest path is measured. C client threads, each with one keep-alive HTTP
connection, send ``--ingest-requests`` single-event ``POST /events``
requests between them, four times per run:

- with the ``events_notify_queued`` trigger, as in production;
- to the bare endpoint, the same bodies, trigger on: the yardstick of the
  ratio "EventFlo / bare insert endpoint";
- with the trigger disabled in the scratch database, so the cost of the
  NOTIFY wake-up shows as the difference (re-enabled afterwards);
- batches: ``POST /events/batch`` with 1,000 events each, 10 × as many
  events as single requests (at least one batch per client), trigger on.

The rates are wall-clock, from all clients starting together to the last
answer. Every accepted event must be stored exactly once: as many rows as
requests, each answered id among them, no id twice.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

from eventflo.bench import (
    QUERIES,
    Bench,
    BenchError,
    ModeResult,
    Sample,
    figures,
    latency,
)

SUMMARY = (
    "C concurrent clients POST events to the API (gunicorn), with and without NOTIFY,"
    " and to a bare insert endpoint"
)

FIGURES = (
    ("requests_per_s", "POST /events, NOTIFY on: requests/s", "req/s"),
    ("p99_ms", "POST /events, NOTIFY on: p99", "ms"),
    ("bare_requests_per_s", "bare insert endpoint, NOTIFY on: requests/s", "req/s"),
    ("bare_p99_ms", "bare insert endpoint, NOTIFY on: p99", "ms"),
    ("requests_per_s_no_notify", "POST /events, NOTIFY off: requests/s", "req/s"),
    ("p99_ms_no_notify", "POST /events, NOTIFY off: p99", "ms"),
    ("batch_events_per_s", "POST /events/batch (1,000 each): events/s", "events/s"),
    ("batch_p99_ms", "POST /events/batch (1,000 each): p99 per request", "ms"),
)

BATCH_EVENTS = 1000
BATCH_FACTOR = 10
# Requests per client before a run, not counted: connections, pools, plans.
WARMUP_REQUESTS = 5


def run(bench: Bench) -> ModeResult:
    settings = bench.settings
    batches = max(settings.clients, -(-BATCH_FACTOR * settings.ingest_requests // BATCH_EVENTS))
    with bench.connect("setup") as conn:
        generated = conn.execute(
            QUERIES["generated_events"], {"events": max(settings.ingest_requests, BATCH_EVENTS)}
        ).fetchall()
    singles = [_body(event) for event in generated[: settings.ingest_requests]]
    batch = json.dumps({"events": [_event(event) for event in generated[:BATCH_EVENTS]]}).encode()
    with (
        tempfile.TemporaryFile() as log,
        latency.api_server(bench, log) as port,
        latency.api_server(
            bench,
            log,
            module="eventflo.bench.bare_api",
            what="the bare endpoint",
            probe="/events",  # only POST is served: any answer means a worker is up
            ready=lambda status: True,
        ) as bare_port,
    ):
        samples = bench.repeat(
            "ingest", lambda: ingest_once(bench, port, bare_port, singles, batch, batches)
        )
    return ModeResult("ingest", figures(samples, FIGURES))


def ingest_once(
    bench: Bench,
    port: int,
    bare_port: int,
    singles: Sequence[bytes],
    batch: bytes,
    batches: int,
) -> Sample:
    clients = bench.settings.clients
    warmup = [singles[0]] * (WARMUP_REQUESTS * clients)
    _load(bench, port, "/events", warmup, clients, 1)
    notify = _load(bench, port, "/events", singles, clients, 1)
    _load(bench, bare_port, "/events", warmup, clients, 1)
    bare = _load(bench, bare_port, "/events", singles, clients, 1)
    with bench.connect("setup") as conn:
        conn.execute(QUERIES["disable_notify_trigger"])
        try:
            quiet = _load(bench, port, "/events", singles, clients, 1)
        finally:
            conn.execute(QUERIES["enable_notify_trigger"])
    batched = _load(bench, port, "/events/batch", [batch] * batches, clients, BATCH_EVENTS)
    return {
        "requests_per_s": notify["rate"],
        "p99_ms": notify["p99_ms"],
        "bare_requests_per_s": bare["rate"],
        "bare_p99_ms": bare["p99_ms"],
        "requests_per_s_no_notify": quiet["rate"],
        "p99_ms_no_notify": quiet["p99_ms"],
        "batch_events_per_s": batched["rate"],
        "batch_p99_ms": batched["p99_ms"],
    }


def _event(event: dict[str, Any]) -> dict[str, Any]:
    return {"event_type": event["event_type"], "source": "bench", "payload": event["payload"]}


def _body(event: dict[str, Any]) -> bytes:
    return json.dumps(_event(event)).encode()


def _load(
    bench: Bench, port: int, path: str, bodies: Sequence[bytes], clients: int, per_body: int
) -> dict[str, float]:
    """Send ``bodies`` from ``clients`` threads at once on an empty table, then check the rows.

    Returns events/s (requests/s for single events) and the p99 per request, in ms.
    """
    with bench.connect("setup") as conn:
        conn.execute(QUERIES["truncate_events"])
    shares = [list(bodies[number::clients]) for number in range(clients)]
    shares = [share for share in shares if share]
    gate = threading.Barrier(len(shares) + 1)
    answers: list[tuple[list[float], list[str]]] = [([], []) for _ in shares]
    errors: list[BaseException] = []
    threads = [
        threading.Thread(
            target=_client,
            args=(port, bench.api_key, path, share, gate, answers[number], errors),
            name=f"eventflo-bench-client-{number}",
            daemon=True,
        )
        for number, share in enumerate(shares)
    ]
    for thread in threads:
        thread.start()
    # A broken gate: a client failed to connect; its error is reported below.
    with contextlib.suppress(threading.BrokenBarrierError):
        gate.wait(latency.START_TIMEOUT)
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise BenchError(f"{len(errors)} client(s) failed on {path}: {errors[0]}")
    latencies = [value for times, _ in answers for value in times]
    ids = [event_id for _, answered in answers for event_id in answered]
    expected = len(bodies) * per_body
    with bench.connect("verify") as conn:
        row = conn.execute(QUERIES["verify_ingest"], {"ids": ids}).fetchone()
    assert row is not None
    if not (len(ids) == len(set(ids)) == row["accepted"] == row["events"] == expected):
        raise BenchError(
            f"{path}: {expected:,} events sent, {len(ids):,} ids answered"
            f" ({len(set(ids)):,} distinct), {row['accepted']:,} of them stored,"
            f" {row['events']:,} rows in all: not stored exactly once"
        )
    return {"rate": expected / seconds, "p99_ms": latency.percentiles(latencies)[99]}


def _client(
    port: int,
    api_key: str,
    path: str,
    bodies: Sequence[bytes],
    gate: threading.Barrier,
    answer: tuple[list[float], list[str]],
    errors: list[BaseException],
) -> None:
    """One client: one keep-alive connection, its share of the requests one after another."""
    times, ids = answer
    try:
        with contextlib.closing(latency.HttpClient(port, key=api_key)) as client:
            client.connect()
            gate.wait(latency.START_TIMEOUT)
            for body in bodies:
                started = time.perf_counter()
                status, accepted = client.request("POST", path, body)
                times.append(time.perf_counter() - started)
                if status != 202:
                    raise BenchError(f"POST {path} answered {status}: {accepted}")
                if "events" in accepted:
                    ids.extend(item["event_id"] for item in accepted["events"])
                else:
                    ids.append(accepted["event_id"])
    except BaseException as exc:  # reported by the caller, which raises BenchError
        gate.abort()
        errors.append(exc)
