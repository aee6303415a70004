"""Log search at scale: a search of a job with 1M lines, and what its index costs log ingestion.

``python -m bench.log_search_scale`` makes a scratch database of its own on the configured
Postgres server (never the development or test database), fills it with one job of ``--lines``
lines among other jobs' lines, and for each candidate index (none: the primary key alone; a GIN
trigram index on the line; the same combined with job_id through btree_gin) measures:

- the server's search query (``log_search``) for the first page of 500, for terms that match
  no line, one, 100, 10,000 and every line of the job, and a two-letter term that no trigram
  helps with; the median of ``--runs`` runs on one connection (so past psycopg's prepare
  threshold, as the server's pooled connections are);
- the log processor's ``insert_lines`` statement: lines per second, in batches as it writes them.

The scratch database is dropped at the end. docs/benchmarks.md has the numbers and the choice.
"""

from __future__ import annotations

import hashlib
import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, LiteralString

import click
from psycopg import sql

from bench.database import QUERIES, connect, create_user
from bench.environment import Infrastructure
from chronoverse.postgres import Conn
from chronoverse.sql import Queries

ROOT = Path(__file__).resolve().parent.parent
SERVER = Queries.load(ROOT / "services" / "server" / "store" / "queries.sql")
PROCESSOR = Queries.load(ROOT / "services" / "log_processor" / "queries.sql")
SHIPPED_INDEX = "job_logs_line_trgm_idx"  # migrations/0014_log_search.sql


@dataclass(frozen=True, kw_only=True)
class Variant:
    name: str
    index: str | None  # the index's name
    ddl: LiteralString | None  # what creates it


VARIANTS = (
    Variant(name="primary key only", index=None, ddl=None),
    Variant(
        name="GIN trigram (line)",
        index="bench_line_trgm",
        ddl="CREATE INDEX bench_line_trgm ON job_logs USING gin (line gin_trgm_ops)",
    ),
    Variant(
        name="GIN (job_id, line trigram)",
        index="bench_job_line_trgm",
        ddl="CREATE INDEX bench_job_line_trgm ON job_logs USING gin (job_id, line gin_trgm_ops)",
    ),
)


def escaped(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def seed(conn: Conn, job_id: uuid.UUID, count: int, *, salt: str, chunk: int = 200_000) -> None:
    for first in range(0, count, chunk):
        conn.execute(
            QUERIES.log_scale_seed,
            {"job_id": job_id, "first": first, "count": min(chunk, count - first), "salt": salt},
        )


def search_ms(conn: Conn, job_id: uuid.UUID, text: str, runs: int) -> tuple[float, int]:
    """The median time of the first page (500) of a search, and how many lines it returned."""
    times: list[float] = []
    found = 0
    params = {
        "job_id": job_id,
        "attempt": 1,
        "after": -1,
        "limit": 500,
        "stream": None,
        "pattern": escaped(text),
    }
    for _ in range(runs):
        started = time.perf_counter()
        found = len(conn.execute(SERVER.log_search, params).fetchall())
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), found


def ingest_rate(conn: Conn, job_id: uuid.UUID, count: int, batch: int) -> float:
    """Lines per second of the log processor's insert, one transaction per batch."""
    started = time.perf_counter()
    for first in range(0, count, batch):
        seqs = list(range(first, min(first + batch, count)))
        now = datetime.now(UTC)
        with conn.transaction():
            conn.execute(
                PROCESSOR.insert_lines,
                {
                    "job_ids": [job_id] * len(seqs),
                    "attempts": [1] * len(seqs),
                    "seqs": seqs,
                    "streams": ["stdout"] * len(seqs),
                    "ts": [now] * len(seqs),
                    "lines": [
                        f"INFO worker-{s % 17} handled request "
                        f"{hashlib.md5(f'ingest{s}'.encode()).hexdigest()} in {s % 977} ms"
                        for s in seqs
                    ],
                },
            )
    return count / (time.perf_counter() - started)


@click.command(name="python -m bench.log_search_scale")
@click.option("--lines", default=1_000_000, show_default=True, help="Lines of the searched job.")
@click.option("--other-jobs", default=20, show_default=True, help="Other jobs with lines.")
@click.option("--other-lines", default=50_000, show_default=True, help="Lines of each other job.")
@click.option("--ingest", default=200_000, show_default=True, help="Lines inserted per variant.")
@click.option("--batch", default=1000, show_default=True, help="Lines per insert.")
@click.option("--runs", default=7, show_default=True, help="Runs of each search (median).")
def main(lines: int, other_jobs: int, other_lines: int, ingest: int, batch: int, runs: int) -> None:
    infra = Infrastructure.from_environ({})
    try:
        url = infra.create_database()
        with connect(url) as conn:
            run(conn, lines, other_jobs, other_lines, ingest, batch, runs)
    finally:
        infra.cleanup()


def run(
    conn: Conn, lines: int, other_jobs: int, other_lines: int, ingest: int, batch: int, runs: int
) -> None:
    conn.execute("SET maintenance_work_mem = '256MB'")
    conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(SHIPPED_INDEX)))
    user_id = create_user(conn)

    def new_job() -> uuid.UUID:
        row = conn.execute(QUERIES.log_scale_job, {"user_id": user_id}).fetchone()
        assert row is not None
        return uuid.UUID(str(row["id"]))

    started = time.perf_counter()
    target = new_job()
    seed(conn, target, lines, salt="target")
    for n in range(other_jobs):
        seed(conn, new_job(), other_lines, salt=f"other{n}")
    conn.execute("VACUUM ANALYZE job_logs")
    click.echo(
        f"seeded {lines:,} lines of the searched job and {other_jobs * other_lines:,} others "
        f"in {time.perf_counter() - started:.0f} s"
    )
    one_line = hashlib.md5(b"target424242").hexdigest()[4:16]
    terms = {
        "no match (no-such-text)": "no-such-text",
        "1 line (a hash fragment)": one_line,
        "100 lines (quota exceeded)": "QUOTA exceeded",
        "10,000 lines (timeout)": "timeout",
        "every line (handled request)": "handled request",
        "2 letters, no match (zz)": "zz",
    }
    results: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        row: dict[str, Any] = {}
        if variant.ddl is not None:
            started = time.perf_counter()
            conn.execute(variant.ddl)
            row["build_s"] = time.perf_counter() - started
            conn.execute("ANALYZE job_logs")
        size = conn.execute(QUERIES.log_scale_index_size, {"name": variant.index}).fetchone()
        row["size_mb"] = (size["bytes"] if size else 0) / 2**20
        for label, text in terms.items():
            row[label] = search_ms(conn, target, text, runs)
        job = new_job()
        row["ingest"] = ingest_rate(conn, job, ingest, batch)
        conn.execute(QUERIES.log_scale_delete, {"job_id": job})
        if variant.index is not None:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(variant.index)))
        conn.execute("VACUUM job_logs")
        results[variant.name] = row
        click.echo(f"{variant.name}: {row}")
    report(results, terms)


def report(results: dict[str, dict[str, Any]], terms: dict[str, str]) -> None:
    names = list(results)
    click.echo("\n| search, first page of 500 (median ms) | " + " | ".join(names) + " |")
    click.echo("|---|" + "---:|" * len(names))
    for label in terms:
        cells = [f"{results[n][label][0]:.1f} ({results[n][label][1]})" for n in names]
        click.echo(f"| {label} | " + " | ".join(cells) + " |")
    ingest = [f"{results[n]['ingest']:,.0f}" for n in names]
    click.echo("| ingestion, lines/s (insert_lines) | " + " | ".join(ingest) + " |")
    click.echo("| index size, MB | " + " | ".join(f"{results[n]['size_mb']:.0f}" for n in names))
    build = [f"{results[n].get('build_s', 0):.0f}" for n in names]
    click.echo("| index build, s | " + " | ".join(build) + " |")


if __name__ == "__main__":
    main()
