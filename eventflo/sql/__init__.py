"""Loads the named query blocks of ``queries.sql`` once, so Python holds no SQL strings."""

from __future__ import annotations

import re
from importlib import resources

_BLOCK_HEADER = re.compile(r"^-- name: (\w+)\n", re.MULTILINE)


def _load(text: str) -> dict[str, str]:
    """Split the file on ``-- name:`` headers; everything up to the next header is the query."""
    parts = _BLOCK_HEADER.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice in queries.sql")
        queries[name] = body.strip().rstrip(";")
    return queries


QUERIES = _load(resources.files(__package__).joinpath("queries.sql").read_text(encoding="utf-8"))
