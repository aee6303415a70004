"""Log downloads and searches without I/O: the file's name, type and bytes in each format, the
search text as an ILIKE pattern, and a reader of an attempt whose lines were not retained."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import UUID

import pytest
from pydantic import ValidationError

from chronoverse.domain import LogStream
from chronoverse.logs import LogLine
from services.server.log_download import MEDIA_TYPES, Download, LogFormat, encode, filename
from services.server.logs import Step, decide
from services.server.schemas import MAX_LOG_SEARCH, LogDownloadQuery, LogQuery
from services.server.store.workflows import like_pattern
from tests.unit.test_logs import state

JOB = UUID("00000000-0000-0000-0000-00000000000a")
TS = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def batch(*seqs: int) -> list[LogLine]:
    return [
        LogLine(seq=s, stream=LogStream.STDERR if s % 2 else LogStream.STDOUT, ts=TS, line=f"l{s}")
        for s in seqs
    ]


def body(fmt: LogFormat, batches: list[list[LogLine]], *, incomplete: bool = False) -> bytes:
    chunks = list(encode(fmt, batches, job_id=JOB, attempt=2, incomplete=lambda: incomplete))
    return b"".join(chunks)


def test_each_batch_is_one_chunk_and_the_formats_hold_every_line() -> None:
    batches = [batch(0, 1), batch(2)]
    assert body(LogFormat.TXT, batches) == b"l0\nl1\nl2\n"
    assert len(list(encode(LogFormat.TXT, batches, job_id=JOB, attempt=2, incomplete=bool))) == 2
    rows = [json.loads(x) for x in body(LogFormat.JSONL, batches).splitlines()]
    assert rows[1] == {
        "attempt": 2,
        "seq": 1,
        "stream": "stderr",
        "ts": "2026-01-02T03:04:05+00:00",
        "line": "l1",
    }
    document = json.loads(body(LogFormat.JSON, batches, incomplete=True))
    assert document == {"job_id": str(JOB), "attempt": 2, "logs": rows, "incomplete": True}


def test_empty_logs_are_empty_files_or_an_empty_list() -> None:
    assert body(LogFormat.TXT, []) == b"" and body(LogFormat.JSONL, [[]]) == b""
    assert json.loads(body(LogFormat.JSON, [[]]))["logs"] == []


def test_the_file_is_named_after_the_job_the_attempt_and_the_stream() -> None:
    assert filename(JOB, 3, LogFormat.JSONL, None) == f"job-{JOB}-attempt-3.jsonl"
    assert filename(JOB, 1, LogFormat.TXT, LogStream.STDERR) == f"job-{JOB}-attempt-1-stderr.txt"
    download = Download(filename="a.txt", media_type=MEDIA_TYPES[LogFormat.TXT], chunks=iter(()))
    assert download.content_disposition == 'attachment; filename="a.txt"'


def test_search_text_is_a_pattern_whose_wildcards_are_plain() -> None:
    assert like_pattern("100%") == "%100\\%%"
    assert like_pattern("a_b") == "%a\\_b%"
    assert like_pattern("C:\\x") == "%C:\\\\x%"


def test_search_text_is_bounded() -> None:
    assert LogQuery(q="x" * MAX_LOG_SEARCH).q == "x" * MAX_LOG_SEARCH
    for bad in ("", "x" * (MAX_LOG_SEARCH + 1), "a\x00"):
        with pytest.raises(ValidationError):
            LogQuery(q=bad)
    with pytest.raises(ValidationError):
        LogDownloadQuery(format="csv")  # type: ignore[arg-type]


def test_a_reader_of_an_attempt_that_was_not_retained_stops_at_once() -> None:
    # The end marker names line 9, but the lines were deleted: no waiting for them.
    assert decide(state(logs_purged_attempt=1), attempt=1, last_sent=-1) is Step.END
    assert decide(state(), attempt=1, last_sent=-1) is Step.FOLLOW
    # An earlier attempt's purged lines: on to the next attempt.
    retried = state(attempt=2, status="RUNNING", logs_purged_attempt=1, logs_closed_at=None)
    assert decide(retried, attempt=1, last_sent=-1) is Step.NEXT_ATTEMPT
    assert decide(retried, attempt=2, last_sent=-1) is Step.FOLLOW
