"""Job log lines: splitting a container's output into lines, the `job_logs` topic messages, the
live messages on the Redis channel `job_logs:<job_id>`, and a reader's position in a job's logs.

Pure: no I/O. A :class:`LineSplitter` takes raw output chunks of both streams as they arrive and
returns complete lines, each with a ``seq`` unique across both streams. A line longer than
``max_chars`` is cut into several lines; nothing after it is dropped.

Every attempt of a job numbers its lines from 0, so a line is named by ``(attempt, seq)``: the
messages carry the attempt that printed their lines, and a :class:`LogPosition` is the pair.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from chronoverse.domain import LogStream
from chronoverse.errors import MalformedMessageError
from chronoverse.messages import MAX_MESSAGE_BYTES, decode_object, encode

LOG_MESSAGE_VERSION = 1
MAX_LINE_CHARS = 16 * 1024


@dataclass(frozen=True, kw_only=True)
class LogLine:
    seq: int
    stream: LogStream
    ts: datetime
    line: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "stream": self.stream.value,
            "ts": self.ts.isoformat(),
            "line": self.line,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogLine:
        return cls(
            seq=int(data["seq"]),
            stream=LogStream(data["stream"]),
            ts=parse_ts(data["ts"]),
            line=str(data["line"]),
        )


# A line's ``ts`` as the shipper writes it: the isoformat() of an aware datetime, to the second or
# microsecond, with an offset Postgres takes (within ±15:59). fromisoformat alone also takes week
# dates, a comma before the fraction, naive times and offsets Postgres refuses: a line with one
# would fail its whole batch in Postgres (a handler failure, retried) instead of being malformed.
_TS = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?"
    r"[+-](0[0-9]|1[0-5]):[0-5][0-9]"
)


def parse_ts(text: Any) -> datetime:
    """A line's ``ts`` (as :meth:`LogLine.to_json` writes it); ValueError for any other text."""
    if type(text) is not str or _TS.fullmatch(text) is None:
        raise ValueError(f"ts must be an ISO 8601 time with its offset, got {text!r}")
    return datetime.fromisoformat(text)


_STREAMS = {stream.value: stream for stream in LogStream}


def lines_to_json(lines: Iterable[LogLine]) -> list[dict[str, Any]]:
    """Each line's :meth:`LogLine.to_json`. Lines read from one chunk of output share their
    timestamp, so each distinct timestamp is formatted once (formatting was most of the cost of
    encoding a chatty container's output)."""
    stamps: dict[datetime, str] = {}
    out: list[dict[str, Any]] = []
    for line in lines:
        stamp = stamps.get(line.ts)
        if stamp is None:
            stamp = stamps[line.ts] = line.ts.isoformat()
        out.append({"seq": line.seq, "stream": line.stream.value, "ts": stamp, "line": line.line})
    return out


def lines_from_json(raw: Iterable[dict[str, Any]]) -> tuple[LogLine, ...]:
    """:meth:`LogLine.from_json` of each item, parsing each distinct timestamp once."""
    stamps: dict[str, datetime] = {}
    out: list[LogLine] = []
    for data in raw:
        text = data["ts"]
        ts = stamps.get(text)
        if ts is None:
            ts = stamps[text] = parse_ts(text)
        out.append(
            LogLine(
                seq=int(data["seq"]),
                stream=_STREAMS[data["stream"]],
                ts=ts,
                line=str(data["line"]),
            )
        )
    return tuple(out)


class LineSplitter:
    """Turns output chunks into numbered lines; keeps each stream's unfinished line apart."""

    def __init__(self, *, max_chars: int = MAX_LINE_CHARS, first_seq: int = 0) -> None:
        self._max = max_chars
        self._next_seq = first_seq
        self._decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in LogStream}
        self._partial: dict[LogStream, str] = dict.fromkeys(LogStream, "")

    @property
    def last_seq(self) -> int:
        """The seq of the last line returned (-1 before any)."""
        return self._next_seq - 1

    def feed(self, stream: LogStream, chunk: bytes, ts: datetime) -> list[LogLine]:
        text = self._partial[stream] + self._decoders[stream].decode(chunk)
        *complete, rest = text.split("\n")
        lines = [piece for line in complete for piece in self._cut(line)]
        # An unfinished line that is already too long is emitted in full-size pieces now.
        while len(rest) > self._max:
            lines.append(rest[: self._max])
            rest = rest[self._max :]
        self._partial[stream] = rest
        return [self._number(stream, line, ts) for line in lines]

    def flush(self, ts: datetime) -> list[LogLine]:
        """The unfinished last lines of both streams (output that did not end with a newline)."""
        out: list[LogLine] = []
        for stream in LogStream:
            rest = self._partial[stream] + self._decoders[stream].decode(b"", final=True)
            self._partial[stream] = ""
            out += [self._number(stream, piece, ts) for piece in self._cut(rest) if rest]
        return out

    def _cut(self, line: str) -> list[str]:
        if len(line) <= self._max:
            return [line]
        return [line[i : i + self._max] for i in range(0, len(line), self._max)]

    def _number(self, stream: LogStream, line: str, ts: datetime) -> LogLine:
        seq = self._next_seq
        self._next_seq += 1
        # Postgres text cannot hold NUL; it becomes U+FFFD like any undecodable byte.
        text = line.removesuffix("\r").replace("\x00", "\ufffd")
        return LogLine(seq=seq, stream=stream, ts=ts, line=text)


# --- the `job_logs` topic -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LinesMessage:
    job_id: UUID
    attempt: int
    lines: tuple[LogLine, ...]


@dataclass(frozen=True, kw_only=True)
class EndMessage:
    """The last record of one attempt's logs: every line up to ``last_seq`` was sent (-1: none),
    unless ``incomplete``: the shipper knows some of them were lost."""

    job_id: UUID
    attempt: int
    last_seq: int
    incomplete: bool = False


LogMessage = LinesMessage | EndMessage


def encode_lines(job_id: UUID, lines: list[LogLine], *, attempt: int) -> bytes:
    return encode(
        {
            "v": LOG_MESSAGE_VERSION,
            "type": "log.lines",
            "job_id": str(job_id),
            "attempt": attempt,
            "lines": lines_to_json(lines),
        }
    )


# librdkafka refuses messages over `message.max.bytes` (default 1,000,000) and so does a Kafka
# broker over its `message.max.bytes` (default 1 MiB); this leaves room for the record overhead.
MAX_LOG_MESSAGE_BYTES = 900_000


def encode_batches(
    job_id: UUID, lines: list[LogLine], *, attempt: int, max_bytes: int = MAX_LOG_MESSAGE_BYTES
) -> list[tuple[list[LogLine], bytes]]:
    """``encode_lines``, split into several messages where one would exceed ``max_bytes``; each
    message with the lines it holds.

    A batch's size in characters does not bound its encoded size: JSON escapes a control
    character as six bytes and a character outside the BMP as twelve. One line (at most
    16 KiB characters) always fits.
    """
    value = encode_lines(job_id, lines, attempt=attempt)
    if len(value) <= max_bytes or len(lines) == 1:
        return [(lines, value)]
    middle = len(lines) // 2
    return encode_batches(
        job_id, lines[:middle], attempt=attempt, max_bytes=max_bytes
    ) + encode_batches(job_id, lines[middle:], attempt=attempt, max_bytes=max_bytes)


def encode_lines_bounded(
    job_id: UUID, lines: list[LogLine], *, attempt: int, max_bytes: int = MAX_LOG_MESSAGE_BYTES
) -> list[bytes]:
    """The messages of :func:`encode_batches`, each at most ``max_bytes`` (but one line)."""
    return [
        value for _, value in encode_batches(job_id, lines, attempt=attempt, max_bytes=max_bytes)
    ]


def encode_end(job_id: UUID, last_seq: int, *, attempt: int, incomplete: bool = False) -> bytes:
    return encode(
        {
            "v": LOG_MESSAGE_VERSION,
            "type": "log.end",
            "job_id": str(job_id),
            "attempt": attempt,
            "last_seq": last_seq,
            "incomplete": incomplete,
        }
    )


def _attempt(data: dict[str, Any]) -> int:
    """The message's attempt; a message produced before attempts were recorded is attempt 1."""
    value = data.get("attempt", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MalformedMessageError(f"attempt must be an integer >= 1, got {value!r}")
    return value


def decode_log_message(key: bytes | None, value: bytes | None) -> LogMessage:
    data = decode_object(key, value)
    if data.get("v") != LOG_MESSAGE_VERSION:
        raise MalformedMessageError(f"unsupported log message version {data.get('v')!r}")
    try:
        job_id = UUID(str(data["job_id"]))
        if data.get("type") == "log.lines":
            return LinesMessage(
                job_id=job_id, attempt=_attempt(data), lines=lines_from_json(data["lines"])
            )
        if data.get("type") == "log.end":
            return EndMessage(
                job_id=job_id,
                attempt=_attempt(data),
                last_seq=int(data["last_seq"]),
                incomplete=data.get("incomplete") is True,
            )
    except (KeyError, ValueError, TypeError) as exc:
        raise MalformedMessageError(f"bad log message: {exc}") from exc
    raise MalformedMessageError(f"unknown log message type {data.get('type')!r}")


# --- the `job_logs` topic as the log processor reads it ------------------------------------------
# The log processor stores a message's lines and passes them on to live viewers; it never needs
# them as LogLines. A message in the shipper's own encoding (encode_lines) is read without building
# a LogLine per line: the lines stay the JSON objects decoded, each checked, and the text of their
# array goes to Redis as it came. Any other message is decoded by decode_log_message and encoded
# again, so both ways accept and refuse the same messages.

_SHIPPED = re.compile(
    rb'\{"v":1,"type":"log\.lines","job_id":"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-'
    rb'[0-9a-f]{12})","attempt":([1-9][0-9]{0,8}),"lines":'
)
_LINE_KEYS = frozenset(("seq", "stream", "ts", "line"))
_JSON = json.JSONDecoder()


@dataclass(frozen=True, kw_only=True)
class ShippedLines:
    """A `log.lines` message as the log processor handles it: each line a JSON object with an
    integer ``seq``, a known ``stream``, an ISO ``ts`` and a text ``line`` (nothing else), and
    ``lines_json``, the JSON text of their array (what a live message's ``lines`` holds)."""

    job_id: UUID
    attempt: int
    lines: list[dict[str, Any]]
    lines_json: str


def decode_shipped_message(key: bytes | None, value: bytes | None) -> ShippedLines | EndMessage:
    """A `job_logs` message for the log processor: what :func:`decode_log_message` accepts,
    with the lines as :class:`ShippedLines`; anything else is malformed."""
    if value is not None and len(value) <= MAX_MESSAGE_BYTES:
        shipped = _as_shipped(value)
        if shipped is not None:
            return shipped
    message = decode_log_message(key, value)
    if isinstance(message, EndMessage):
        return message
    as_json = lines_to_json(message.lines)
    return ShippedLines(
        job_id=message.job_id,
        attempt=message.attempt,
        lines=as_json,
        lines_json=json.dumps(as_json, separators=(",", ":")),
    )


def _as_shipped(value: bytes) -> ShippedLines | None:
    """A message in exactly the shipper's encoding with plain lines; None for anything else."""
    head = _SHIPPED.match(value)
    if head is None:
        return None
    try:
        text = value.decode()
        # The header is ASCII: its length in bytes is its length in characters.
        lines, end = _JSON.raw_decode(text, head.end())
    except (ValueError, RecursionError):  # decode_log_message says what is wrong
        return None
    if text[end:] != "}" or not isinstance(lines, list) or not _plain_lines(lines):
        return None
    return ShippedLines(
        job_id=UUID(head[1].decode()),
        attempt=int(head[2]),
        lines=lines,
        lines_json=text[head.end() : end],
    )


def _plain_lines(lines: list[Any]) -> bool:
    """Whether every item is a line as the shipper writes it (so it needs no re-encoding)."""
    stamps: set[str] = set()
    for line in lines:
        if not (
            type(line) is dict
            and line.keys() == _LINE_KEYS
            and type(line["seq"]) is int
            and type(line["stream"]) is str
            and line["stream"] in _STREAMS
            and type(line["line"]) is str
            and type(ts := line["ts"]) is str
        ):
            return False
        if ts not in stamps:
            try:
                parse_ts(ts)
            except ValueError:
                return False
            stamps.add(ts)
    return True


# --- the live Redis channel ---------------------------------------------------------------------
# Once the log processor has stored a batch, it publishes each job's part on `job_logs:<job_id>`
# for live viewers: ``{"type": "lines", "attempt": a, "lines": [...]}`` or
# ``{"type": "end", "attempt": a, "last_seq": n, "incomplete": b}``. The channel names the job. A
# message without an attempt (from a log processor of an earlier version) is attempt 1. There is
# no size cap: one message may carry the lines of many topic messages.


def live_channel(job_id: UUID | str) -> str:
    """The Redis pub/sub channel of a job's live log lines."""
    return f"job_logs:{job_id}"


def encode_live_lines(lines: Iterable[LogLine], *, attempt: int) -> bytes:
    return encode({"type": "lines", "attempt": attempt, "lines": lines_to_json(lines)})


def encode_live_shipped(lines_json: Iterable[str], *, attempt: int) -> bytes:
    """:func:`encode_live_lines` of the lines of several :class:`ShippedLines` (their
    ``lines_json``, in order), without decoding them."""
    items = ",".join(inner for text in lines_json if (inner := text[1:-1].strip()))
    return f'{{"type":"lines","attempt":{attempt},"lines":[{items}]}}'.encode()


def encode_live_end(last_seq: int, *, attempt: int, incomplete: bool = False) -> bytes:
    return encode(
        {"type": "end", "attempt": attempt, "last_seq": last_seq, "incomplete": incomplete}
    )


def decode_live(job_id: UUID, data: bytes | str) -> LogMessage:
    """A message received on ``live_channel(job_id)``; anything else is malformed."""
    try:
        decoded = json.loads(data)
        if decoded["type"] == "lines":
            return LinesMessage(
                job_id=job_id, attempt=_attempt(decoded), lines=lines_from_json(decoded["lines"])
            )
        if decoded["type"] == "end":
            return EndMessage(
                job_id=job_id,
                attempt=_attempt(decoded),
                last_seq=int(decoded["last_seq"]),
                incomplete=decoded.get("incomplete") is True,
            )
    except (ValueError, KeyError, TypeError) as exc:  # JSON and UTF-8 errors are ValueErrors
        raise MalformedMessageError(f"bad live log message: {exc}") from exc
    raise MalformedMessageError(f"unknown live log message type {decoded['type']!r}")


# --- a reader's position ------------------------------------------------------------------------
# Readers resume after a line named by ``<attempt>.<seq>`` (an SSE id, a page cursor). A plain
# integer (what readers sent before lines had attempts) is a seq without its attempt: the caller
# decides which attempt it means.

_POSITION = re.compile(r"(?:([0-9]{1,9})\.)?(-1|[0-9]{1,18})")


@dataclass(frozen=True, kw_only=True, order=True)
class LogPosition:
    """After line ``seq`` of ``attempt`` (seq -1: before the attempt's first line).

    Ordered as readers see the lines: by attempt, then seq.
    """

    attempt: int
    seq: int

    @property
    def id(self) -> str:
        return f"{self.attempt}.{self.seq}"


def parse_position(text: str) -> tuple[int | None, int] | None:
    """``"<attempt>.<seq>"`` as (attempt, seq), a plain seq as (None, seq); None if neither."""
    match = _POSITION.fullmatch(text)
    if match is None:
        return None
    attempt, seq = match.groups()
    if attempt is None:
        return None, int(seq)
    return (int(attempt), int(seq)) if int(attempt) >= 1 else None
