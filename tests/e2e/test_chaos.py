"""Chaos: clients post events while worker processes are SIGKILLed and API workers SIGTERMed.

For ``EVENTFLO_CHAOS_SECONDS`` (60 by default; CI runs the full minute)
client threads POST single events and batches, with and without idempotency
keys, and re-send keys already answered. A driver meanwhile SIGKILLs
standalone workers (and starts new ones), SIGKILLs the children of a worker
supervisor (which restarts them), and SIGTERMs gunicorn's API worker
processes (gunicorn's master starts new ones). A SIGTERMed API worker lets
its requests finish, so now and then the driver SIGKILLs one instead.

A client that gets no answer (a connection error while an API worker goes
away) or a 503 retries a keyed request with the same key: the key makes the
retry safe, so every keyed request ends with a known event id. An un-keyed
request cannot be retried safely (it might be stored twice), so its outcome
is "unknown": it was stored once or not at all, never twice. Every event
carries a unique ``ref`` in its payload, so the test can tell which.
"""

from __future__ import annotations

import os
import pathlib
import random
import signal
import threading
import time
from typing import Any

import psycopg
import pytest
import requests

from tests.e2e.conftest import (
    Api,
    Child,
    Children,
    descendants,
    kill_if_same,
    start_worker,
    started_at,
    wait_for,
    wait_listening,
)

pytestmark = pytest.mark.e2e

Conn = psycopg.Connection[dict[str, Any]]

CHAOS_SECONDS = float(os.environ.get("EVENTFLO_CHAOS_SECONDS", "60"))
CLIENTS = 4
STANDALONE_WORKERS = 2
SUPERVISED_WORKERS = 2


class _Ledger:
    """What the clients were told, shared by their threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_key: dict[str, str] = {}  # idempotency key -> the event id answered
        self.accepted: dict[str, str] = {}  # ref -> event id, for every 202/200 answer
        self.unknown: set[str] = set()  # refs of un-keyed events whose answer was lost
        self.counts = {
            "requests": 0,
            "202": 0,
            "200": 0,
            "503": 0,
            "lost": 0,
            "keyed_retries": 0,
            "resends": 0,
        }
        self.problems: list[str] = []

    def count(self, name: str) -> None:
        with self.lock:
            self.counts[name] += 1

    def answered(self, items: list[tuple[str, str | None]], ids: list[str]) -> None:
        """(ref, key) per event, and the event ids the API answered, in the same order."""
        with self.lock:
            for (ref, key), event_id in zip(items, ids, strict=True):
                if self.accepted.setdefault(ref, event_id) != event_id:
                    self.problems.append(f"ref {ref} answered with two ids")
                if key is not None and self.by_key.setdefault(key, event_id) != event_id:
                    self.problems.append(f"key {key} answered with two ids")


class _Client:
    """Posts events through its own HTTP session until stopped."""

    def __init__(self, n: int, api: Api, ledger: _Ledger, stop: threading.Event) -> None:
        self.n = n
        self.url = api.base_url
        self.ledger = ledger
        self.stop = stop
        self.rng = random.Random(n)
        self.session = api.new_session()
        self.sent = 0
        self.keys: list[tuple[str, dict[str, Any]]] = []  # (key, body) answered, to re-send
        self.error: BaseException | None = None

    def _event(self, keyed: bool) -> tuple[dict[str, Any], str | None]:
        self.sent += 1
        ref = f"c{self.n}-{self.sent}"
        kind = self.rng.randrange(4)
        if kind == 0:
            body = {"event_type": "payment_failed", "payload": {"amount": self.rng.randrange(2000)}}
        elif kind == 1:
            body = {"event_type": "sla_breach", "payload": {"minutes_over": self.rng.randrange(60)}}
        else:
            body = {"event_type": ("system_error", "user_signup")[kind - 2], "payload": {}}
        body["payload"]["ref"] = ref
        body["source"] = "chaos"
        return body, (f"chaos-{ref}" if keyed else None)

    def _post(self, path: str, body: dict[str, Any], key: str | None) -> requests.Response | None:
        """One request: the response, or None when the answer was lost or the API was away."""
        self.ledger.count("requests")
        headers = {"Idempotency-Key": key} if key else {}
        try:
            response = self.session.post(
                f"{self.url}{path}", json=body, headers=headers, timeout=15
            )
        except requests.RequestException:
            self.ledger.count("lost")
            return None
        if response.status_code == 503:
            self.ledger.count("503")
            return None
        if response.status_code not in (200, 202):
            with self.ledger.lock:
                self.ledger.problems.append(f"{response.status_code} {response.text[:300]}")
            return None
        self.ledger.count(str(response.status_code))
        return response

    def _until_answered(self, path: str, body: dict[str, Any], key: str | None) -> Any:
        """Retry a request that is safe to retry until it is answered; the JSON answer."""
        while True:
            response = self._post(path, body, key)
            if response is not None:
                return response.json()
            self.ledger.count("keyed_retries")
            time.sleep(0.05)

    def single(self, keyed: bool) -> None:
        body, key = self._event(keyed)
        ref = body["payload"]["ref"]
        if key is None:
            response = self._post("/events", body, None)
            if response is None:
                with self.ledger.lock:
                    self.ledger.unknown.add(ref)
            else:
                self.ledger.answered([(ref, None)], [response.json()["event_id"]])
            return
        answer = self._until_answered("/events", body, key)
        self.ledger.answered([(ref, key)], [answer["event_id"]])
        self.keys.append((key, body))

    def batch(self) -> None:
        events = [self._event(self.rng.random() < 0.5) for _ in range(self.rng.randrange(2, 11))]
        items = [(body["payload"]["ref"], key) for body, key in events]
        wire = [{**body, **({"idempotency_key": key} if key else {})} for body, key in events]
        response = self._post("/events/batch", {"events": wire}, None)
        if response is not None:
            ids = [entry["event_id"] for entry in response.json()["events"]]
            self.ledger.answered(items, ids)
            return
        # Lost: the keyed events are safe to send again (alone); the others are unknown.
        with self.ledger.lock:
            self.ledger.unknown.update(ref for ref, key in items if key is None)
        keyed = [(item, entry) for item, entry in zip(items, wire, strict=True) if item[1]]
        if keyed:
            self.ledger.count("keyed_retries")
            answer = self._until_answered("/events/batch", {"events": [e for _, e in keyed]}, None)
            self.ledger.answered(
                [item for item, _ in keyed], [entry["event_id"] for entry in answer["events"]]
            )

    def resend(self) -> None:
        """The same key and request again: the original event (200), nothing new."""
        key, body = self.rng.choice(self.keys)
        self.ledger.count("resends")
        answer = self._until_answered("/events", body, key)
        self.ledger.answered([(body["payload"]["ref"], key)], [answer["event_id"]])

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                roll = self.rng.random()
                if roll < 0.35:
                    self.single(keyed=True)
                elif roll < 0.60:
                    self.single(keyed=False)
                elif roll < 0.80:
                    self.batch()
                elif self.keys:
                    self.resend()
        except BaseException as exc:  # re-raised in the test's thread
            self.error = exc
        finally:
            self.session.close()


class _Driver:
    """Kills processes at random until stopped; counts what it did."""

    def __init__(self, children: Children, api: Api, supervisor: Child) -> None:
        self.children = children
        self.api = api
        self.supervisor = supervisor
        self.standalone = [start_worker(children) for _ in range(STANDALONE_WORKERS)]
        self.rng = random.Random()
        self.counts = {
            "worker_kills": 0,
            "worker_restarts": 0,
            "supervised_kills": 0,
            "api_worker_terms": 0,
            "api_worker_kills": 0,
        }
        self.error: BaseException | None = None

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.wait(self.rng.uniform(0.3, 1.5)):
                roll = self.rng.random()
                if roll < 0.4:
                    self._kill_standalone()
                elif roll < 0.6:
                    self.counts["supervised_kills"] += self._signal_one(
                        _supervised_workers(self.supervisor.pid), signal.SIGKILL
                    )
                else:
                    # SIGTERM as asked; now and then SIGKILL, which loses the
                    # answers of requests in flight (SIGTERM lets them finish).
                    kill = self.rng.random() < 0.25
                    self.counts["api_worker_kills" if kill else "api_worker_terms"] += (
                        self._signal_one(
                            _children_of(self.api.child.pid),
                            signal.SIGKILL if kill else signal.SIGTERM,
                        )
                    )
        except BaseException as exc:
            self.error = exc

    def _kill_standalone(self) -> None:
        index = self.rng.randrange(len(self.standalone))
        victim = self.standalone[index]
        victim.popen.kill()
        victim.popen.wait(timeout=10)
        self.counts["worker_kills"] += 1
        self.standalone[index] = start_worker(self.children)
        self.counts["worker_restarts"] += 1

    def _signal_one(self, pids: set[int], signum: int) -> int:
        """Signal one of ``pids`` at random; 1 if there was one."""
        if not pids:
            return 0
        pid = self.rng.choice(sorted(pids))
        kill_if_same(pid, started_at(pid), signum)
        return 1


def _children_of(parent: int) -> set[int]:
    """The live direct children of ``parent``."""
    return {p for p in descendants(parent) if _parent_of(p) == parent}


def _supervised_workers(supervisor: int) -> set[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    found = set()
    for pid in _children_of(supervisor):
        try:
            cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            found.add(pid)
    return found


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return None


def test_chaos_loses_and_duplicates_nothing(api, children, conn):
    supervisor = start_worker(children, processes=SUPERVISED_WORKERS)
    driver = _Driver(children, api, supervisor)
    wait_listening(conn, STANDALONE_WORKERS + SUPERVISED_WORKERS)
    api_workers = len(_children_of(api.child.pid))

    ledger, stop = _Ledger(), threading.Event()
    clients = [_Client(n, api, ledger, stop) for n in range(CLIENTS)]
    threads = [threading.Thread(target=c.run, name=f"client-{c.n}", daemon=True) for c in clients]
    threads.append(threading.Thread(target=driver.run, args=(stop,), name="driver", daemon=True))
    started = time.monotonic()
    for thread in threads:
        thread.start()
    stop.wait(CHAOS_SECONDS)  # the chaos runs for this long: the test's one fixed duration
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), f"{thread.name} did not stop"
    for failed in [*clients, driver]:
        if failed.error is not None:
            raise failed.error
    chaos_for = time.monotonic() - started

    # The processes came back: gunicorn's workers, the supervisor's children.
    wait_for(
        lambda: len(_children_of(api.child.pid)) == api_workers,
        timeout=30,
        what=f"gunicorn to run {api_workers} API workers again",
    )
    wait_for(
        lambda: len(_supervised_workers(supervisor.pid)) == SUPERVISED_WORKERS,
        timeout=30,
        what="the supervisor to run its workers again",
    )
    assert api.child.running() and supervisor.running()

    drain_started = time.monotonic()
    wait_for(
        lambda: _unfinished(conn) == 0,
        timeout=60,
        interval=0.2,
        what=lambda: f"every stored event to finish ({_unfinished(conn)} left)",
    )
    drained_in = time.monotonic() - drain_started

    stored = _stored(conn)
    assert ledger.problems == []
    # Every accepted event exists, with the id it was accepted under.
    missing = {ref: i for ref, i in ledger.accepted.items() if stored.get(ref, {}).get("id") != i}
    assert missing == {}, f"{len(missing)} accepted events not stored as answered"
    # Keys: one event each, the one every answer for the key named.
    keys = conn.execute(
        "SELECT idempotency_key AS key, count(*) AS n, min(id::text) AS id FROM events"
        " WHERE idempotency_key IS NOT NULL GROUP BY 1"
    ).fetchall()
    assert all(row["n"] == 1 for row in keys)
    assert {row["key"]: row["id"] for row in keys} == ledger.by_key
    # Un-keyed requests whose answer was lost: stored once or not at all.
    assert all(row["copies"] == 1 for row in stored.values()), "an event stored twice"
    unknown_stored = ledger.unknown & set(stored)
    strangers = set(stored) - set(ledger.accepted) - ledger.unknown
    assert strangers == set(), f"events no client sent: {sorted(strangers)[:5]}"
    # Every stored event completed exactly once, with a history that agrees.
    bad = [
        (ref, row)
        for ref, row in stored.items()
        if row["status"] != "completed"
        or row["results"] != 1
        or row["numbers"] != list(range(1, row["attempts"] + 1))
        or row["outcomes"] != ["lease_expired"] * (row["attempts"] - 1) + ["completed"]
    ]
    assert bad == [], f"{len(bad)} events with a wrong result or history, e.g. {bad[:3]}"

    rescued = sum(1 for row in stored.values() if row["attempts"] > 1)
    print(
        f"\nchaos for {chaos_for:.0f} s: {ledger.counts['requests']} requests,"
        f" accepted {len(ledger.accepted)} events ({len(ledger.by_key)} keys;"
        f" answers 202: {ledger.counts['202']}, 200: {ledger.counts['200']}),"
        f" re-sent keys {ledger.counts['resends']}, keyed retries {ledger.counts['keyed_retries']},"
        f" 503s {ledger.counts['503']}, lost answers {ledger.counts['lost']};"
        f" unknown {len(ledger.unknown)} (stored {len(unknown_stored)});"
        f" worker SIGKILLs {driver.counts['worker_kills']} (restarts"
        f" {driver.counts['worker_restarts']}), supervised SIGKILLs"
        f" {driver.counts['supervised_kills']}, API worker SIGTERMs"
        f" {driver.counts['api_worker_terms']} (SIGKILLs {driver.counts['api_worker_kills']});"
        f" events rescued after a kill {rescued};"
        f" stored {len(stored)}, all completed once; drained in {drained_in:.1f} s"
    )
    assert ledger.counts["202"] > 0 and driver.counts["worker_kills"] > 0


def _unfinished(conn: Conn) -> int:
    row = conn.execute(
        "SELECT count(*) AS n FROM events WHERE status NOT IN ('completed', 'failed')"
    ).fetchone()
    return int(row["n"])


def _stored(conn: Conn) -> dict[str, dict[str, Any]]:
    """Per ``ref``: the event's id, status, results, attempt history, and its number of copies."""
    rows = conn.execute(
        "SELECT e.payload->>'ref' AS ref, count(*) OVER (PARTITION BY e.payload->>'ref') AS copies,"
        " e.id::text, e.status::text, e.attempts,"
        " (SELECT count(*) FROM event_processing_results r WHERE r.event_id = e.id) AS results,"
        " array(SELECT a.outcome::text FROM event_attempts a WHERE a.event_id = e.id"
        "       ORDER BY a.id) AS outcomes,"
        " array(SELECT a.attempt FROM event_attempts a WHERE a.event_id = e.id"
        "       ORDER BY a.id) AS numbers"
        " FROM events e WHERE e.source = 'chaos'"
    ).fetchall()
    return {row["ref"]: row for row in rows}
