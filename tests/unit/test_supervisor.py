"""What the supervisor knows of its children without asking them: their ids and how they died."""

from __future__ import annotations

import subprocess
import sys

from eventflo.supervisor import exit_reason
from eventflo.worker import new_worker_id


def test_a_supervisor_names_its_child_with_the_id_the_child_gives_itself():
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from eventflo.worker import new_worker_id; print(new_worker_id(suffix='c0ffee'))",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    own_id, _ = child.communicate(timeout=30)
    assert child.returncode == 0
    assert own_id.strip() == new_worker_id(pid=child.pid, suffix="c0ffee")
    assert own_id.strip().endswith(f":{child.pid}:c0ffee")


def test_without_a_suffix_every_id_is_new():
    assert new_worker_id() != new_worker_id()


def test_exit_reasons_read_like_an_operator_would_say_them():
    assert exit_reason(-9) == "killed by SIGKILL"
    assert exit_reason(-15) == "killed by SIGTERM"
    assert exit_reason(1) == "exited with status 1"
    assert exit_reason(-200) == "killed by signal 200"
