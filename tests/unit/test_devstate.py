"""The lock and state file of ``eventflo dev``: one holder per data dir, stale files taken over."""

from __future__ import annotations

import fcntl
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from eventflo import devstate


def _state(data_dir: pathlib.Path, pid: int, port: int = 8000) -> devstate.DevState:
    return devstate.DevState(pid, port, str(data_dir), f"postgresql://dev@/x?port={port}", False)


def test_a_second_holder_is_refused_with_the_first_ones_pid_and_port(tmp_path):
    data_dir = tmp_path / ".eventflo" / "pgdata"
    with devstate.held(data_dir) as lock:
        assert lock.took_over is None
        lock.write(_state(data_dir, os.getpid(), port=8123))
        with pytest.raises(devstate.AlreadyRunning) as refused:
            devstate.acquire(data_dir)  # flock is per open file: this process counts as another
        assert refused.value.state == _state(data_dir, os.getpid(), port=8123)
        assert devstate.running(tmp_path / ".eventflo") == [_state(data_dir, os.getpid(), 8123)]
    assert not devstate.state_path(data_dir).exists(), "release removes the state file"
    assert devstate.running(tmp_path / ".eventflo") == []


def test_the_state_file_sits_beside_the_data_dir_named_after_it(tmp_path):
    assert devstate.state_path(tmp_path / "pgdata") == tmp_path / "pgdata.dev.json"


def test_a_file_left_by_a_killed_holder_is_stale_and_taken_over(tmp_path):
    data_dir = tmp_path / ".eventflo" / "pgdata"
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import os, sys
                from eventflo import devstate
                lock = devstate.acquire({str(data_dir)!r})
                lock.write(devstate.DevState(os.getpid(), 8000, {str(data_dir)!r}, "postgresql://x"))
                print("locked", flush=True)
                sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
            with pytest.raises(devstate.AlreadyRunning) as refused:
                devstate.acquire(data_dir)
            assert refused.value.state is not None and refused.value.state.pid == holder.pid
            assert [state.pid for state in devstate.running(data_dir.parent)] == [holder.pid]
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=10)

    assert devstate.state_path(data_dir).exists(), "SIGKILL leaves the file behind"
    assert devstate.running(data_dir.parent) == [], "but nobody holds it: not running"
    with devstate.held(data_dir) as lock:
        assert lock.took_over is not None and lock.took_over.pid == holder.pid


def test_a_file_with_a_live_pid_but_no_lock_holder_does_not_count(tmp_path):
    """A reused pid (here: our own) does not make a stale file look alive."""
    data_dir = tmp_path / "pgdata"
    devstate.state_path(data_dir).write_text(_state(data_dir, os.getpid()).to_json())
    assert devstate.running(tmp_path) == []


def test_a_foreign_or_empty_file_is_no_state():
    assert devstate.DevState.from_json("") is None
    assert devstate.DevState.from_json('{"pid": "x"}') is None
    assert devstate.DevState.from_json("[1, 2]") is None


def test_a_cli_probe_holding_the_lock_for_an_instant_does_not_refuse_a_start(tmp_path):
    """``running()`` takes a shared lock for an instant; a dev starting then waits it out."""
    data_dir = tmp_path / ".eventflo" / "pgdata"
    path = devstate.state_path(data_dir)
    path.parent.mkdir(parents=True)
    path.write_text("")
    probe = os.open(path, os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH)  # as is_held does, but held until the timer lets go
    releaser = threading.Timer(0.05, os.close, [probe])  # well inside the 0.5 s patience
    releaser.start()
    try:
        with devstate.held(data_dir) as lock:
            assert lock.took_over is None
    finally:
        releaser.join()


def test_a_refusal_names_no_pid_when_the_holders_file_names_a_dead_one(tmp_path):
    data_dir = tmp_path / ".eventflo" / "pgdata"
    path = devstate.state_path(data_dir)
    path.parent.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **_OUT)
    path.write_text(_state(data_dir, int(dead.stdout)).to_json())
    holder = os.open(path, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_SH)  # someone holds it, but the file is not theirs
    try:
        with pytest.raises(devstate.AlreadyRunning) as refused:
            devstate.acquire(data_dir)
        assert refused.value.state is None
    finally:
        os.close(holder)


def test_a_lock_told_to_keep_its_file_leaves_a_killed_runs_state_for_the_next_start(tmp_path):
    data_dir = tmp_path / ".eventflo" / "pgdata"
    path = devstate.state_path(data_dir)
    path.parent.mkdir(parents=True)
    left = _state(data_dir, 4_000_000)  # a killed run's pid, beyond pid_max
    path.write_text(left.to_json())
    lock = devstate.acquire(data_dir)
    assert lock.took_over == left
    lock.keep_file()  # as eventflo dev does when it refuses a port in use
    lock.release()
    with devstate.held(data_dir) as again:
        assert again.took_over == left


_OUT = {"capture_output": True, "text": True, "check": True}
