"""The README's walkthrough, pasted as is into bash against a real API and worker.

A newcomer copies the walkthrough block into a terminal while ``make run``
serves on port 8000 with auth off. This test does the same against
``eventflo serve`` (gunicorn) and a real worker process on a free port:
only the base URL is substituted. Each step (the commands between blank
lines) runs in one bash session under ``set -euo pipefail``, and what that
step printed is checked against what its comment promises.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import ROOT, Api, Children, start_api, start_worker, wait_listening

pytestmark = pytest.mark.e2e

README = ROOT / "README.md"
WALKTHROUGH_HEADING = "## A walk through the API"
BASE_URL = "http://127.0.0.1:8000"
MARKER = "@@walkthrough step {}@@"


def walkthrough_blocks() -> list[str]:
    """The ```sh blocks of the README's walkthrough section, in order."""
    readme = README.read_text(encoding="utf-8")
    start = readme.index(WALKTHROUGH_HEADING)
    end = readme.find("\n## ", start + len(WALKTHROUGH_HEADING))
    section = readme[start : end if end != -1 else None]
    return re.findall(r"^```(?:sh|bash)\n(.*?)^```$", section, flags=re.DOTALL | re.MULTILINE)


def steps_of(block: str) -> list[str]:
    """The block's steps: runs of lines separated by blank lines."""
    return [step.strip("\n") for step in re.split(r"\n\s*\n", block) if step.strip()]


def run_steps(steps: list[str], base_url: str) -> list[str]:
    """Run every step in one bash session; what each step printed, stdout and stderr together."""
    script = ["set -euo pipefail"]
    for number, step in enumerate(steps):
        script.append(f"echo '{MARKER.format(number)}'")
        script.append(step.replace(BASE_URL, base_url))
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    output = result.stdout
    assert result.returncode == 0, f"the walkthrough stopped with {result.returncode}:\n{output}"
    printed = []
    for number in range(len(steps)):
        start = output.index(MARKER.format(number)) + len(MARKER.format(number))
        end = output.find(MARKER.format(number + 1))
        printed.append(output[start : end if end != -1 else None].strip())
    return printed


def http_responses(printed: str) -> list[tuple[int, dict[str, str], str]]:
    """The responses of ``curl -si`` calls in a step's output: status, headers, body."""
    responses = []
    for chunk in re.split(r"^(?=HTTP/1\.1 )", printed, flags=re.MULTILINE):
        if not chunk.startswith("HTTP/1.1 "):
            continue
        head, _, body = chunk.replace("\r\n", "\n").partition("\n\n")
        status_line, *header_lines = head.split("\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        responses.append((int(status_line.split()[1]), headers, body.strip()))
    return responses


def check_submit(printed: str) -> None:
    [(status, headers, body)] = http_responses(printed)
    event = json.loads(body)
    assert (status, event["status"]) == (202, "queued"), printed
    assert headers["location"] == f"/events/{event['event_id']}", printed


def check_read_back(printed: str) -> None:
    event = json.loads(printed)
    assert event["status"] == "completed", printed
    assert (event["event_type"], event["payload"], event["source"]) == (
        "payment_failed",
        {"amount": 1500},
        "billing",
    )
    result = event["result"]
    assert (result["severity"], result["should_escalate"], result["rule"]) == (
        "CRITICAL",
        True,
        "payment_failed.large",
    ), printed
    assert [attempt["outcome"] for attempt in event["history"]] == ["completed"], printed


def check_list(printed: str) -> None:
    [(status, _, body)] = http_responses(printed)
    listed = json.loads(body)
    assert status == 200, printed
    assert [event["event_type"] for event in listed] == ["payment_failed"], printed
    assert all(event["status"] == "completed" for event in listed), printed


def check_idempotent_retry(printed: str) -> None:
    (first, _, first_body), (second, _, second_body) = http_responses(printed)
    assert (first, second) == (202, 200), printed
    assert json.loads(first_body)["event_id"] == json.loads(second_body)["event_id"], printed


def check_conflict(printed: str) -> None:
    [(status, headers, body)] = http_responses(printed)
    assert status == 409, printed
    assert headers["content-type"] == "application/problem+json", printed
    assert json.loads(body)["status"] == 409


def check_batch(printed: str) -> None:
    answered = json.loads(printed)["events"]
    assert [(event["status"], event["created"]) for event in answered] == [
        ("queued", True),
        ("queued", True),
    ], printed


def check_invalid_field(printed: str) -> None:
    [(status, headers, body)] = http_responses(printed)
    problem = json.loads(body)
    assert status == 422, printed
    assert headers["content-type"] == "application/problem+json", printed
    assert problem["errors"] == {"payload": {"amount": ["Must be a finite number."]}}, printed


# Each step is found by a phrase of its comment; the check says what the user must see.
CHECKS: list[tuple[str, Callable[[str], None]]] = [
    ("# Submit an event", check_submit),
    ("# Read it back", check_read_back),
    ("# List recent events", check_list),
    ("# Retry safely", check_idempotent_retry),
    ("# The same key with a different request", check_conflict),
    ("# Many events in one request", check_batch),
    ("# Errors are RFC 9457", check_invalid_field),
]


@pytest.fixture
def api_without_auth(children: Children) -> Iterator[Api]:
    """The API as ``make run`` serves it: auth off."""
    started = start_api(children, EVENTFLO_AUTH="off")
    try:
        yield started
    finally:
        started.session.close()


def test_the_readme_walkthrough_runs_verbatim_and_shows_what_it_promises(
    api_without_auth: Api, children: Children, conn: psycopg.Connection[dict[str, Any]]
) -> None:
    blocks = walkthrough_blocks()
    assert blocks, f"no sh block under {WALKTHROUGH_HEADING!r} in the README"
    steps = [step for block in blocks for step in steps_of(block)]
    assert all(BASE_URL in step for step in steps if "curl -" in step), "a step uses another URL"
    # As under make run, the worker is up before the first command is pasted.
    start_worker(children)
    wait_listening(conn, 1)

    printed = run_steps(steps, api_without_auth.base_url)

    checked = set()
    for phrase, check in CHECKS:
        matching = [number for number, step in enumerate(steps) if phrase in step]
        assert len(matching) == 1, f"{len(matching)} walkthrough steps contain {phrase!r}"
        check(printed[matching[0]])
        checked.add(matching[0])
    unchecked = [steps[n] for n in range(len(steps)) if n not in checked and "curl -" in steps[n]]
    assert not unchecked, f"walkthrough steps this test does not check: {unchecked}"
