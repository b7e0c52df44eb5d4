"""Loads named query blocks from the ``.sql`` files here once, so Python holds no SQL strings.

``QUERIES`` is the runtime's ``queries.sql``; the other files here, and a
package's own ``.sql`` file kept beside its code, are read with ``load()``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType
from typing import LiteralString, cast

_BLOCK_HEADER = re.compile(r"^-- name: (\w+)\n", re.MULTILINE)


# A query's text as psycopg's typing wants it: a LiteralString. The files are
# part of the package, never user input, which is what LiteralString stands for.
Queries = Mapping[str, LiteralString]


def _load(text: str, filename: str = "queries.sql") -> Queries:
    """Split the file on ``-- name:`` headers; everything up to the next header is the query."""
    parts = _BLOCK_HEADER.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    queries: dict[str, LiteralString] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice in {filename}")
        queries[name] = cast(LiteralString, body.strip().rstrip(";"))
    return MappingProxyType(queries)


def load(filename: str, package: str = __name__) -> Queries:
    """The named blocks of one ``.sql`` file of ``package`` (by default, this one)."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    return _load(text, filename)


QUERIES = load("queries.sql")
