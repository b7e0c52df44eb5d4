"""One delivery attempt over real HTTP on loopback: answers, errors, redirects, limits, SSRF."""

from __future__ import annotations

import datetime as dt

import pytest

from eventflo import sender, webhooks
from tests.receiver import Answer, Receiver

REQUEST = webhooks.Request(b'{"hello":"world"}', {"content-type": "application/json"})


@pytest.fixture
def send():
    made = sender.Sender(timeout_seconds=2.0, allow_private=True)
    yield made
    made.close()


def test_a_2xx_is_delivered_and_the_request_arrives_whole(send):
    with Receiver([Answer(204, body=b"")]).running() as receiver:
        outcome = send.send(receiver.url + "/hook?team=ops", REQUEST)
    assert outcome.delivered and outcome.status_code == 204 and outcome.error is None
    (got,) = receiver.requests
    assert (got.path, got.body) == ("/hook?team=ops", REQUEST.body)
    assert got.headers["content-type"] == "application/json"
    assert got.headers["host"] == receiver.url.removeprefix("http://")
    assert outcome.duration_ms > 0


def test_an_error_answer_is_kept_with_at_most_1_kb_of_its_body(send):
    with Receiver([Answer(500, body=b"x" * 5000)]).running() as receiver:
        outcome = send.send(receiver.url, REQUEST)
    assert (outcome.delivered, outcome.status_code) == (False, 500)
    assert outcome.response_body == "x" * 1024


def test_a_redirect_is_not_followed(send):
    with Receiver([Answer(302, headers={"location": "http://127.0.0.1:1/"})]).running() as r:
        outcome = send.send(r.url, REQUEST)
    assert (outcome.delivered, outcome.status_code) == (False, 302)
    assert len(r.requests) == 1


def test_a_slow_receiver_times_out(send):
    with Receiver([Answer(200, delay=3.0)]).running() as receiver:
        outcome = send.send(receiver.url, REQUEST)
    assert outcome.status_code is None and outcome.error.startswith("timed out")


def test_a_closed_port_is_a_connection_error():
    quick = sender.Sender(timeout_seconds=2.0, allow_private=True)
    outcome = quick.send("http://127.0.0.1:9/", REQUEST)
    assert outcome.status_code is None and outcome.error.startswith("cannot connect: ")


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), ("0", 0.0), ("999999999", 86400.0), ("soon", None), (None, None)],
)
def test_retry_after_in_seconds(header, seconds):
    assert sender.retry_after_seconds(header) == seconds


def test_retry_after_as_an_http_date():
    now = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
    assert sender.retry_after_seconds("Wed, 02 Dec 2026 12:01:30 GMT", now=now) == 90.0
    assert sender.retry_after_seconds("Wed, 02 Dec 2026 11:00:00 GMT", now=now) == 0.0


def test_a_429_carries_its_retry_after(send):
    with Receiver([Answer(429, headers={"retry-after": "30"})]).running() as receiver:
        outcome = send.send(receiver.url, REQUEST)
    assert (outcome.status_code, outcome.retry_after_seconds) == (429, 30.0)


def test_the_address_connected_to_is_checked_again_at_send_time():
    """DNS rebinding: public when the endpoint was added, loopback now. Nothing is sent."""
    with Receiver().running() as receiver:
        port = int(receiver.url.rsplit(":", 1)[1])
        rebinding = sender.Sender(
            timeout_seconds=2.0,
            allow_private=False,
            resolver=lambda host, port: ["127.0.0.1"],
        )
        outcome = rebinding.send(f"https://hooks.example.com:{port}/", REQUEST)
    assert outcome.status_code is None
    assert "127.0.0.1, a loopback address" in outcome.error
    assert receiver.requests == []


def test_connections_are_reused(send):
    with Receiver().running() as receiver:
        for _ in range(5):
            assert send.send(receiver.url, REQUEST).delivered
    assert len(receiver.requests) == 5
    assert len({got.client_port for got in receiver.requests}) == 1, "one connection for all"


def test_a_binary_answer_is_kept_as_storable_text(send):
    with Receiver([Answer(500, body=b"\x00\xff\xe2\x82" * 600)]).running() as receiver:
        outcome = send.send(receiver.url, REQUEST)
    assert "\x00" not in outcome.response_body
    assert len(outcome.response_body.encode()) <= 1024


def test_storable_text_never_cuts_a_character_in_half():
    assert sender.storable_text("é".encode() * 600) == "é" * 512


def test_the_connection_goes_to_the_checked_address_with_the_urls_host_name():
    with Receiver().running() as receiver:
        port = receiver.url.rsplit(":", 1)[1]
        pinned = sender.Sender(
            timeout_seconds=2.0, allow_private=True, resolver=lambda host, port: ["127.0.0.1"]
        )
        assert pinned.send(f"http://hooks.test:{port}/hook", REQUEST).delivered
    assert receiver.requests[0].headers["host"] == f"hooks.test:{port}"


def test_plain_http_is_refused_at_send_time_once_private_endpoints_are_not_allowed():
    with Receiver().running() as receiver:
        strict = sender.Sender(
            timeout_seconds=2.0, allow_private=False, resolver=lambda host, port: ["93.184.216.34"]
        )
        outcome = strict.send(receiver.url, REQUEST)
    assert outcome.error.startswith("the URL is plain http://")
    assert receiver.requests == []


def test_a_retry_after_in_other_digits_is_ignored():
    assert sender.retry_after_seconds("²") is None
