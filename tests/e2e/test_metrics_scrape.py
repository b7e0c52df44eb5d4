"""/metrics under gunicorn with two processes: whichever process answers, the figures agree."""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import start_worker, wait_all_completed, wait_listening

pytestmark = pytest.mark.e2e


def _figures(base_url: str) -> dict[str, float]:
    """The event figures of one scrape, on a fresh connection (gunicorn picks any process)."""
    response = requests.get(f"{base_url}/metrics", timeout=10, headers={"Connection": "close"})
    assert response.status_code == 200
    figures = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name.startswith(("eventflo_events", "eventflo_queue_depth")):
                key = sample.name + str(sorted(sample.labels.items()))
                figures[key] = sample.value
    return figures


def test_every_gunicorn_process_reports_the_same_figures(api, children, conn):
    for amount in (10, 20, 5000):
        assert api.post_event("payment_failed", {"amount": amount}).status_code == 202
    start_worker(children)
    wait_listening(conn, 1)
    wait_all_completed(conn, 3, timeout=30)

    scrapes = [_figures(api.base_url) for _ in range(20)]
    assert all(scrape == scrapes[0] for scrape in scrapes)
    completed = scrapes[0]
    assert completed["eventflo_events[('status', 'completed')]"] == 3
    assert (
        completed[
            "eventflo_events_completed_total"
            "[('event_type', 'payment_failed'), ('severity', 'HIGH')]"
        ]
        == 2
    )
