import re
from pathlib import Path

import pglast
import pytest

from chronoverse.errors import ChronoverseError, QueryNotFoundError
from chronoverse.sql import Queries, parse_queries

ROOT = Path(__file__).resolve().parents[2]
QUERY_FILES = sorted(p for p in ROOT.glob("**/queries.sql") if ".venv" not in p.parts)
# psycopg placeholders are not SQL; the parser sees them as positional parameters.
PLACEHOLDER = re.compile(r"%\((\w+)\)[sb]|%s")


def test_parse_splits_named_blocks() -> None:
    text = "-- name: one\nSELECT 1\n\n-- name: two\nSELECT 2;\n"
    assert parse_queries(text) == {"one": "SELECT 1", "two": "SELECT 2;"}


@pytest.mark.parametrize(
    "text",
    ["-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n", "-- name: empty\n\n-- name: b\nSELECT 1"],
)
def test_duplicate_or_empty_queries_are_refused(text: str) -> None:
    with pytest.raises(ChronoverseError):
        parse_queries(text)


def test_missing_query_names_itself() -> None:
    queries = Queries({"a": "SELECT 1"}, "memory")
    with pytest.raises(QueryNotFoundError, match="'b'"):
        queries["b"]


def test_there_are_query_files() -> None:
    assert QUERY_FILES, "no queries.sql found"


@pytest.mark.parametrize("path", QUERY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_named_query_parses_as_postgres_sql(path: Path) -> None:
    queries = Queries.load(path)
    assert len(queries) > 0
    for name in queries:
        counter = iter(range(1, 1000))
        text = PLACEHOLDER.sub(lambda _, c=counter: f"${next(c)}", queries[name])
        try:
            statements = pglast.parse_sql(text)
        except pglast.parser.ParseError as exc:
            pytest.fail(f"{path.name}: query {name!r} does not parse: {exc}")
        assert len(statements) == 1, f"{name!r} must hold exactly one statement"
