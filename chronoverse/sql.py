"""Named SQL queries, loaded once from a component's ``queries.sql``.

A queries file holds blocks that each start with a header line ``-- name: <query_name>``; the text
up to the next header is the query. SQL is never assembled with string formatting; identifiers go
through ``psycopg.sql.Identifier``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import LiteralString

from chronoverse.errors import ChronoverseError, QueryNotFoundError

_HEADER = re.compile(r"^--\s*name:\s*(?P<name>[a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


class Queries(Mapping[str, LiteralString]):
    """A read-only mapping of query name to SQL text."""

    def __init__(self, queries: Mapping[str, str], source: str) -> None:
        self._queries = dict(queries)
        self.source = source

    @classmethod
    def load(cls, path: Path) -> Queries:
        return cls(parse_queries(path.read_text(encoding="utf-8")), str(path))

    def __getitem__(self, name: str) -> LiteralString:
        try:
            # The text comes from a file in the package, never from user input: a LiteralString.
            return self._queries[name]
        except KeyError:
            raise QueryNotFoundError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._queries)

    def __len__(self) -> int:
        return len(self._queries)

    def __getattr__(self, name: str) -> LiteralString:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]


def parse_queries(text: str) -> dict[str, str]:
    """Split a queries file into ``{name: sql}``; duplicate or empty queries are errors."""
    headers = list(_HEADER.finditer(text))
    queries: dict[str, str] = {}
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        body = text[header.end() : end].strip()
        name = header["name"]
        if name in queries:
            raise ChronoverseError(f"query {name!r} is defined twice")
        if not body:
            raise ChronoverseError(f"query {name!r} is empty")
        queries[name] = body
    return queries
