"""Replaying finished events in chunks: what ``eventflo replay`` runs once the user agreed.

The queue decides which events may be requeued (queue.replay_candidates,
queue.replay); this module walks a long list of them in short transactions,
so a replay of a million events never holds a million row locks at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from eventflo import queue

DEFAULT_CHUNK_SIZE = 500


def requeue(
    conn: psycopg.Connection[dict[str, Any]],
    candidates: Sequence[uuid.UUID],
    statuses: Sequence[str],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Callable[[int], None] = lambda done: None,
) -> int:
    """Requeue ``candidates`` that are still in ``statuses``, ``chunk_size`` per transaction.

    ``progress(n)`` is called after each chunk with the number of candidates
    it covered. Returns how many were requeued; the others changed status
    meanwhile (a worker or another replay got there first) and were left alone.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    requeued = 0
    for start in range(0, len(candidates), chunk_size):
        chunk = candidates[start : start + chunk_size]
        requeued += queue.replay(conn, chunk, statuses)
        progress(len(chunk))
    return requeued
