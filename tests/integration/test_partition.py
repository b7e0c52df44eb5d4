"""A database that stops answering (packets dropped, not refused) gives 503s in bounded time.

A reset connection is the easy case (test_api covers it). Here the network
silently drops packets, as a partition does: only TCP keepalives and
``tcp_user_timeout`` on the app's connections stop a request from hanging.
The drop is an iptables rule on the loopback port of a proxy, so it needs
root and iptables (CI has both); elsewhere the test is skipped, and says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests import tcp_proxy
from tests.integration.test_api import assert_problem, post_event


def _iptables_usable() -> bool:
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        return False
    probe = subprocess.run(["iptables", "-L", "INPUT", "-n"], capture_output=True, check=False)
    return probe.returncode == 0


@contextlib.contextmanager
def _packets_dropped(port: int) -> Iterator[None]:
    """Drop every packet to 127.0.0.1:``port`` while inside; the rule is always removed."""
    rule = ["INPUT", "-i", "lo", "-p", "tcp", "--dport", str(port), "-j", "DROP"]
    subprocess.run(["iptables", "-I", *rule], check=True)
    try:
        yield
    finally:
        subprocess.run(["iptables", "-D", *rule], check=True)


@pytest.mark.skipif(not _iptables_usable(), reason="needs root and a working iptables")
def test_a_partitioned_database_gives_503_in_bounded_time_and_recovers(make_app, database_url):
    with tcp_proxy.TcpProxy(tcp_proxy.upstream_of(database_url)) as proxy:
        app = make_app(
            database_url=tcp_proxy.url_through(database_url, proxy.port),
            pool_timeout=2.0,
            statement_timeout=2.0,
        )
        client = app.test_client()
        event_id = post_event(client).get_json()["event_id"]

        with _packets_dropped(proxy.port):
            started = time.monotonic()
            response = client.get(f"/events/{event_id}")
            elapsed = time.monotonic() - started
            assert_problem(response, 503)
            assert elapsed < 20, f"the 503 took {elapsed:.1f} s"

        deadline = time.monotonic() + 30
        while True:
            response = client.get(f"/events/{event_id}")
            if response.status_code == 200 or time.monotonic() > deadline:
                break
        assert response.status_code == 200
