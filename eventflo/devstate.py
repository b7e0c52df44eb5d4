"""The state file of a running ``eventflo dev``: its lock on a data directory, and how to reach it.

``eventflo dev`` with an embedded PostgreSQL holds an exclusive ``flock`` on
``<data dir>.dev.json`` (beside the data directory, so ``.eventflo/pgdata.dev.json``
by default) for as long as it runs, and keeps its pid, port and database URL
in it. The kernel drops the lock when the process dies, however it dies, so a
file left by a killed run is stale and simply taken over; a second instance
that finds the lock held refuses instead of touching the first one's server.
The operator CLI reads the same files to find the dev database when no
``EVENTFLO_DATABASE_URL`` is set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import pathlib
import time
from collections.abc import Iterator
from typing import Any

DEFAULT_DATA_DIR = ".eventflo/pgdata"
SUFFIX = ".dev.json"
# How long a second instance waits for the first one's state to be written (it locks, then writes).
_READ_PATIENCE_SECONDS = 2.0
# How long a starting instance retries a held lock: a CLI command's probe (is_held) holds a
# shared lock for an instant, which must not read as another running instance.
_LOCK_PATIENCE_SECONDS = 0.5


@dataclasses.dataclass(frozen=True)
class DevState:
    """What a running ``eventflo dev`` tells the other commands about itself."""

    pid: int
    port: int
    data_dir: str
    database_url: str | None = None
    auth: bool = False  # whether its API asks for keys

    @classmethod
    def from_json(cls, text: str) -> DevState | None:
        """The state in ``text``; None when empty or not a state (being written, or foreign)."""
        try:
            raw: Any = json.loads(text)
            return cls(
                pid=int(raw["pid"]),
                port=int(raw["port"]),
                data_dir=str(raw["data_dir"]),
                database_url=None if raw.get("database_url") is None else str(raw["database_url"]),
                auth=bool(raw.get("auth", False)),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"


class AlreadyRunning(Exception):
    """Another live ``eventflo dev`` holds this data directory."""

    def __init__(self, state: DevState | None, path: pathlib.Path) -> None:
        super().__init__(f"another eventflo dev holds {path}")
        self.state = state
        self.path = path


def state_path(data_dir: str | os.PathLike[str]) -> pathlib.Path:
    """The state file that belongs to ``data_dir``: beside it, named after it."""
    data = pathlib.Path(data_dir).expanduser().resolve()
    return data.with_name(data.name + SUFFIX)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


class DevLock:
    """The held lock on a data directory and the state file it guards; ``release`` removes both.

    ``took_over`` is the state a killed run left behind (None when the file was new or empty).
    """

    def __init__(self, path: pathlib.Path, fd: int, took_over: DevState | None) -> None:
        self.path = path
        self._fd = fd
        self.took_over = took_over
        self._keep_file = False

    def keep_file(self) -> None:
        """On release, leave the file as it is: a run refused before writing its own state
        keeps what a killed run left (its server, to take over next time)."""
        self._keep_file = True

    def write(self, state: DevState) -> None:
        """Replace the file's content with ``state``, in place: the locked inode stays the file."""
        data = state.to_json().encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """Remove the file, then unlock: whoever waits on the old inode re-checks the path."""
        if not self._keep_file:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self._fd)


def acquire(data_dir: str | os.PathLike[str]) -> DevLock:
    """Lock ``data_dir`` for this process; AlreadyRunning when a live instance holds it."""
    path = state_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    give_up_at = time.monotonic() + _LOCK_PATIENCE_SECONDS
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            if time.monotonic() < give_up_at:
                time.sleep(0.05)
                continue
            holder = _read_patiently(path)
            # A state naming a dead pid was left by a killed run, not written by the holder.
            alive = holder is not None and pid_alive(holder.pid)
            raise AlreadyRunning(holder if alive else None, path) from None
        try:
            same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if not same_file:  # its holder removed it as we opened it: lock the new one
            os.close(fd)
            continue
        left = DevState.from_json(os.pread(fd, 65536, 0).decode(errors="replace"))
        return DevLock(path, fd, left)


def _read_patiently(path: pathlib.Path) -> DevState | None:
    """The holder's state; it writes right after locking, so wait a moment for it."""
    deadline = time.monotonic() + _READ_PATIENCE_SECONDS
    while True:
        with contextlib.suppress(OSError):
            state = DevState.from_json(path.read_text())
            if state is not None:
                return state
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def is_held(path: pathlib.Path) -> bool:
    """Whether a live process holds the lock on ``path`` (a shared lock is refused then)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops a shared lock we may have taken
    return False


def running(directory: str | os.PathLike[str] | None = None) -> list[DevState]:
    """The live ``eventflo dev`` instances whose state files are in ``directory``.

    By default the directory of the default data dir (``.eventflo`` here).
    A file counts when its process is alive and still holds the lock (so a
    reused pid does not count) and it names a database URL.
    """
    folder = pathlib.Path(directory or pathlib.Path(DEFAULT_DATA_DIR).parent)
    found = []
    for path in sorted(folder.glob("*" + SUFFIX)):
        with contextlib.suppress(OSError):
            state = DevState.from_json(path.read_text())
            if state and state.database_url and pid_alive(state.pid) and is_held(path):
                found.append(state)
    return found


@contextlib.contextmanager
def held(data_dir: str | os.PathLike[str]) -> Iterator[DevLock]:
    """``acquire`` for the length of a block."""
    lock = acquire(data_dir)
    try:
        yield lock
    finally:
        lock.release()
