"""A job's log as a file: its name and media type, and its bytes, one batch of lines at a time.

The encoders are pure generators over batches of lines: whoever reads the batches (a keyset
scan of Postgres, services/server/usecases/logs.py) decides how much is held at once, so a log of
any length downloads in constant memory.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from uuid import UUID

from chronoverse.domain import LogStream
from chronoverse.logs import LogLine, lines_to_json


class LogFormat(enum.StrEnum):
    TXT = "txt"  # the lines as printed, one a line
    JSONL = "jsonl"  # one JSON object a line
    JSON = "json"  # one JSON document: {job_id, attempt, logs: [...], incomplete}


MEDIA_TYPES = {
    LogFormat.TXT: "text/plain; charset=utf-8",
    LogFormat.JSONL: "application/x-ndjson",
    LogFormat.JSON: "application/json",
}


@dataclass(frozen=True, kw_only=True)
class Download:
    """What an edge sends: a file name, a media type, and the body as it is read."""

    filename: str
    media_type: str
    chunks: Iterator[bytes]

    @property
    def content_disposition(self) -> str:
        # The name is ASCII by construction (a UUID, digits, a stream, an extension).
        return f'attachment; filename="{self.filename}"'


def filename(job_id: UUID, attempt: int, fmt: LogFormat, stream: LogStream | None) -> str:
    """E.g. ``job-<id>-attempt-2-stderr.jsonl``."""
    part = f"-{stream.value}" if stream is not None else ""
    return f"job-{job_id}-attempt-{attempt}{part}.{fmt.value}"


def encode(
    fmt: LogFormat,
    batches: Iterable[list[LogLine]],
    *,
    job_id: UUID,
    attempt: int,
    incomplete: Callable[[], bool],
) -> Iterator[bytes]:
    """The file's bytes, one chunk per batch. ``incomplete`` is asked once every line was read
    (the JSON document ends with it)."""
    if fmt is LogFormat.TXT:
        for batch in batches:
            yield "".join(f"{line.line}\n" for line in batch).encode()
        return
    if fmt is LogFormat.JSONL:
        for batch in batches:
            yield "".join(
                json.dumps({"attempt": attempt, **item}) + "\n" for item in lines_to_json(batch)
            ).encode()
        return
    yield f'{{"job_id": "{job_id}", "attempt": {attempt}, "logs": ['.encode()
    first = True
    for batch in batches:
        items = [json.dumps({"attempt": attempt, **item}) for item in lines_to_json(batch)]
        if items:
            yield (("" if first else ", ") + ", ".join(items)).encode()
            first = False
    yield f'], "incomplete": {json.dumps(incomplete())}}}\n'.encode()
