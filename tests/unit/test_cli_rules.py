"""``eventflo rules check|test`` as a user runs them: a real process, its output and exit code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.rule_files import DISK_RULES

TESTS = """\
tests:
  - event: {event_type: disk_full, payload: {percent: 95, host: db1}}
    expect: {rule: disk_full.critical, severity: CRITICAL, escalate: true}
"""


def eventflo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventflo", "rules", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def disk_file(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(DISK_RULES + TESTS)
    return path


def test_check_passes_a_valid_file_and_the_shipped_one(disk_file):
    result = eventflo("check", str(disk_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{disk_file}: valid: 2 rules, 1 tests passed\n"


def test_check_prints_every_problem_with_its_line_and_exits_1(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        DISK_RULES.replace("severity: CRITICAL", "severity: URGENT").replace(
            "payload.percent >= 90", "payload.size >= 90"
        )
    )
    result = eventflo("check", str(path))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "line 9: rule 'disk_full.critical': the condition reads payload.size, "
        "which is not declared for disk_full",
        "line 10: rule 'disk_full.critical': unknown severity 'URGENT' "
        "(LOW | WARNING | HIGH | CRITICAL)",
    ]
    assert result.stderr == f"{path}: 2 problems; the file is not usable\n"


def test_check_reports_a_failing_test_case_with_its_line(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(DISK_RULES + TESTS.replace("percent: 95", "percent: 50"))
    result = eventflo("check", str(path))
    assert result.returncode == 1
    assert result.stdout == (
        "line 19: test failed: expected rule disk_full.critical, severity CRITICAL, "
        "escalate True; got rule default, severity LOW, escalate False\n"
    )


def test_check_of_a_missing_file_is_one_line(tmp_path):
    result = eventflo("check", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert result.stderr.strip().startswith("Error: cannot read")
    assert "Traceback" not in result.stderr


def test_test_prints_the_verdict_and_why_earlier_rules_did_not_match(disk_file, tmp_path):
    event = {"event_type": "disk_full", "payload": {"percent": 50}}
    result = eventflo("test", str(disk_file), "--event", json.dumps(event))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "  line 7: disk_full.critical: condition false: payload.percent >= 90",
        "  line 14: default: matched",
        "verdict: LOW, escalate: no, rule: default",
        "reason: No specific rule for this event type",
        "recommendation: No action needed; keep for the record",
    ]

    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps({"event_type": "disk_full", "payload": {"percent": 91}}))
    result = eventflo("test", str(disk_file), "--event", f"@{event_file}")
    assert result.returncode == 0, result.stderr
    assert "verdict: CRITICAL, escalate: yes, rule: disk_full.critical" in result.stdout
    assert "reason: Disk on unknown is 91% full" in result.stdout


def test_test_of_an_event_the_api_would_refuse_says_why_and_exits_1(disk_file):
    event = {"event_type": "disk_full", "payload": {"percent": "lots"}}
    result = eventflo("test", str(disk_file), "--event", json.dumps(event))
    assert result.returncode == 1
    assert "the API would refuse this event: payload.percent: Must be a finite number." in (
        result.stderr
    )
    assert "rule disk_full.critical: payload.percent: Must be a finite number." in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("event", "words"),
    [
        ("{not json", "not valid JSON"),
        ('{"payload": {}}', '"event_type" string'),
        ('{"event_type": "x", "colour": 1}', "unknown keys colour"),
        ("@/nonexistent.json", "cannot read"),
    ],
)
def test_test_refuses_a_bad_event_in_one_line(disk_file, event, words):
    result = eventflo("test", str(disk_file), "--event", event)
    assert result.returncode == 2
    assert words in result.stderr
    assert "Traceback" not in result.stderr
