import json
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from chronoverse.definitions import ContainerDefinition, cache_key, define
from chronoverse.domain import LogStream
from chronoverse.errors import MalformedMessageError
from chronoverse.logs import (
    MAX_LOG_MESSAGE_BYTES,
    EndMessage,
    LinesMessage,
    LineSplitter,
    LogLine,
    decode_live,
    decode_log_message,
    encode_end,
    encode_lines,
    encode_lines_bounded,
    encode_live_end,
    encode_live_lines,
    live_channel,
)
from chronoverse.payloads import ContainerPayload, ContainerPolicy
from services.server.logs import Idle, LogEnd, is_over
from services.server.routes.logs import encode_events

T = datetime(2026, 11, 22, tzinfo=UTC)
OUT, ERR = LogStream.STDOUT, LogStream.STDERR


def texts(lines: list) -> list[tuple[int, str, str]]:  # type: ignore[type-arg]
    return [(x.seq, x.stream.value, x.line) for x in lines]


def test_seq_is_shared_by_both_streams_and_partial_lines_wait() -> None:
    splitter = LineSplitter()
    assert texts(splitter.feed(OUT, b"a\nb", T)) == [(0, "stdout", "a")]
    assert texts(splitter.feed(ERR, b"e1\n", T)) == [(1, "stderr", "e1")]
    assert texts(splitter.feed(OUT, b"c\n", T)) == [(2, "stdout", "bc")]
    assert splitter.last_seq == 2


def test_flush_returns_unterminated_lines_of_each_stream() -> None:
    splitter = LineSplitter()
    splitter.feed(OUT, b"tail", T)
    splitter.feed(ERR, b"oops", T)
    assert texts(splitter.flush(T)) == [(0, "stdout", "tail"), (1, "stderr", "oops")]
    assert splitter.flush(T) == []


def test_long_lines_are_cut_and_nothing_after_them_is_lost() -> None:
    splitter = LineSplitter(max_chars=4)
    lines = splitter.feed(OUT, b"abcdefghij\nnext\n", T)
    assert [x.line for x in lines] == ["abcd", "efgh", "ij", "next"]
    # An unfinished line that is already too long goes out in full pieces at once.
    assert [x.line for x in splitter.feed(OUT, b"123456789", T)] == ["1234", "5678"]
    assert [x.line for x in splitter.flush(T)] == ["9"]


def test_utf8_split_across_chunks_and_bad_bytes() -> None:
    splitter = LineSplitter()
    snowman = "☃".encode()
    assert splitter.feed(OUT, snowman[:1], T) == []
    assert [x.line for x in splitter.feed(OUT, snowman[1:] + b"\n", T)] == ["☃"]
    assert [x.line for x in splitter.feed(OUT, b"\xff\x00ok\r\n", T)] == ["\ufffd\ufffdok"]


def test_log_messages_round_trip_and_reject_garbage() -> None:
    job_id = uuid4()
    lines = LineSplitter().feed(OUT, b"x\ny\n", T)
    decoded = decode_log_message(None, encode_lines(job_id, lines))
    assert isinstance(decoded, LinesMessage) and decoded.lines == tuple(lines)
    assert decode_log_message(None, encode_end(job_id, 7)) == EndMessage(job_id=job_id, last_seq=7)
    for bad in [
        b'{"v": 1, "type": "log.lines"}',
        b'{"v": 9}',
        b'{"v": 1, "type": "x", "job_id": "%s"}' % str(job_id).encode(),
    ]:
        with pytest.raises(MalformedMessageError):
            decode_log_message(None, bad)


def test_live_messages_round_trip_and_reject_garbage() -> None:
    job_id = uuid4()
    lines = LineSplitter().feed(OUT, b"x\ny\n", T) + LineSplitter(first_seq=2).feed(ERR, b"z\n", T)
    assert live_channel(job_id) == f"job_logs:{job_id}"
    assert decode_live(job_id, encode_live_lines(lines)) == LinesMessage(
        job_id=job_id, lines=tuple(lines)
    )
    assert decode_live(job_id, encode_live_end(7)) == EndMessage(job_id=job_id, last_seq=7)
    # The format servers and log processors of other versions read: kept as it was.
    assert json.loads(encode_live_end(7)) == {"type": "end", "last_seq": 7}
    for bad in [b"", b"[]", b"{not json", b'{"type": "x"}', b'{"type": "lines"}', b"\xff"]:
        with pytest.raises(MalformedMessageError):
            decode_live(job_id, bad)


def test_definitions_round_trip() -> None:
    payload = ContainerPayload.model_validate(
        {
            "image": "busybox",
            "command": ["sh", "-c"],
            "args": ["echo hi"],
            "env": {"A": "1"},
            "resources": {"cpus": 0.5},
        }
    )
    definition = define(
        uuid4(), 3, payload, "sha256:abc", user_id=uuid4(), policy=ContainerPolicy()
    )
    assert definition.entrypoint == ["sh", "-c"] and definition.command == ["echo hi"]
    assert definition.nano_cpus == 500_000_000
    assert ContainerDefinition.from_json(definition.to_json()) == definition
    assert cache_key(definition.workflow_id, 3).endswith(f"{definition.workflow_id}:3")


def state(**changes: object) -> dict[str, object]:
    return {
        "status": "COMPLETED",
        "logs_closed_at": T,
        "logs_last_seq": 9,
        "kind": "CONTAINER",
        "attempt": 1,
        "finished_for": timedelta(seconds=1),
        **changes,
    }


def test_a_follower_ends_only_when_the_job_is_over_and_every_line_was_sent() -> None:
    assert not is_over(state(status="RUNNING"), 9)
    assert not is_over(state(), 8)
    assert is_over(state(), 9)
    assert not is_over(state(logs_closed_at=None), -1)  # the end marker is on its way
    assert is_over(state(logs_closed_at=None, finished_for=timedelta(minutes=2)), -1)
    assert is_over(state(logs_closed_at=None, kind="HEARTBEAT"), -1)
    assert is_over(state(logs_closed_at=None, status="CANCELED", attempt=0), -1)


def test_bounded_encoding_keeps_every_message_under_the_producer_limit() -> None:
    # 6 bytes per control character once JSON-escaped, 12 per astral character: by characters
    # this batch is small, encoded as one message it would be far over the limit.
    job_id = uuid4()
    splitter = LineSplitter(max_chars=16 * 1024)
    text = ("\x01" * 8000 + "\U0001f600" * 8000 + "\n") * 40
    lines = splitter.feed(LogStream.STDOUT, text.encode(), datetime.now(UTC))
    assert len(encode_lines(job_id, lines)) > 4 * MAX_LOG_MESSAGE_BYTES

    values = encode_lines_bounded(job_id, lines)

    assert len(values) > 1
    assert all(len(value) <= MAX_LOG_MESSAGE_BYTES for value in values)
    decoded = [decode_log_message(None, value) for value in values]
    assert [line for message in decoded for line in message.lines] == lines  # type: ignore[union-attr]


def test_bounded_encoding_sends_a_small_batch_as_one_message() -> None:
    job_id = uuid4()
    lines = LineSplitter().feed(LogStream.STDERR, b"a\nb\n", datetime.now(UTC))
    assert encode_lines_bounded(job_id, lines) == [encode_lines(job_id, lines)]


def test_a_batch_of_follower_events_is_one_sse_chunk() -> None:
    ts = datetime(2026, 11, 23, tzinfo=UTC)
    lines = [LogLine(seq=s, stream=LogStream.STDOUT, ts=ts, line=f"l{s}") for s in (4, 5)]
    chunk, ended = encode_events([*lines, Idle()])
    frames = chunk.decode().split("\r\n\r\n")
    assert not ended
    assert frames[0].splitlines()[:2] == ["id: 4", "event: log"]
    assert '"line": "l5"' in frames[1] and "id: 5" in frames[1]
    assert frames[2:] == [""]
    chunk, ended = encode_events([LogEnd(last_seq=5)])
    assert ended and b"event: end" in chunk and b'{"last_seq": 5}' in chunk
    assert encode_events([Idle()]) == (b"", False)
