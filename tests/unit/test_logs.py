import json
from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest
from sse_starlette import ServerSentEvent

from chronoverse.definitions import ContainerDefinition, cache_key, define
from chronoverse.domain import LogStream
from chronoverse.errors import MalformedMessageError
from chronoverse.logs import (
    MAX_LOG_MESSAGE_BYTES,
    EndMessage,
    LinesMessage,
    LineSplitter,
    LogLine,
    LogPosition,
    ShippedLines,
    _as_shipped,
    decode_live,
    decode_log_message,
    decode_shipped_message,
    encode_batches,
    encode_end,
    encode_lines,
    encode_lines_bounded,
    encode_live_end,
    encode_live_lines,
    encode_live_shipped,
    lines_to_json,
    live_channel,
    parse_position,
)
from chronoverse.payloads import ContainerPayload, ContainerPolicy
from services.log_processor.processor import gather
from services.server.logs import (
    GAP_WAIT,
    MISSING_END_AFTER,
    AttemptStart,
    Idle,
    Lines,
    LogEnd,
    LogState,
    Step,
    decide,
    known_incomplete,
)
from services.server.routes import logs as routes
from services.server.routes.logs import SharedEncodings, encode_events

T = datetime(2026, 11, 22, tzinfo=UTC)
OUT, ERR = LogStream.STDOUT, LogStream.STDERR
DELTA = timedelta(microseconds=7)


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


def test_log_messages_round_trip_with_their_attempt_and_reject_garbage() -> None:
    job_id = uuid4()
    lines = LineSplitter().feed(OUT, b"x\ny\n", T)
    decoded = decode_log_message(None, encode_lines(job_id, lines, attempt=2))
    assert decoded == LinesMessage(job_id=job_id, attempt=2, lines=tuple(lines))
    assert decode_log_message(None, encode_end(job_id, 7, attempt=3)) == EndMessage(
        job_id=job_id, attempt=3, last_seq=7
    )
    assert decode_log_message(
        None, encode_end(job_id, 7, attempt=1, incomplete=True)
    ) == EndMessage(job_id=job_id, attempt=1, last_seq=7, incomplete=True)
    for bad in [
        b'{"v": 1, "type": "log.lines"}',
        b'{"v": 9}',
        b'{"v": 1, "type": "x", "job_id": "%s"}' % str(job_id).encode(),
        b'{"v": 1, "type": "log.end", "job_id": "%s", "attempt": 0, "last_seq": 1}'
        % str(job_id).encode(),
        b'{"v": 1, "type": "log.end", "job_id": "%s", "attempt": "2", "last_seq": 1}'
        % str(job_id).encode(),
    ]:
        with pytest.raises(MalformedMessageError):
            decode_log_message(None, bad)


def test_messages_from_before_attempts_are_attempt_1() -> None:
    job_id = uuid4()
    old_end = b'{"v": 1, "type": "log.end", "job_id": "%s", "last_seq": 4}' % str(job_id).encode()
    assert decode_log_message(None, old_end) == EndMessage(job_id=job_id, attempt=1, last_seq=4)
    lines = json.loads(encode_lines(job_id, LineSplitter().feed(OUT, b"x\n", T), attempt=5))
    del lines["attempt"]
    decoded = decode_log_message(None, json.dumps(lines).encode())
    assert isinstance(decoded, LinesMessage) and decoded.attempt == 1
    assert decode_live(job_id, b'{"type": "end", "last_seq": 2}') == EndMessage(
        job_id=job_id, attempt=1, last_seq=2
    )


def test_live_messages_round_trip_and_reject_garbage() -> None:
    job_id = uuid4()
    lines = LineSplitter().feed(OUT, b"x\ny\n", T) + LineSplitter(first_seq=2).feed(ERR, b"z\n", T)
    assert live_channel(job_id) == f"job_logs:{job_id}"
    assert decode_live(job_id, encode_live_lines(lines, attempt=2)) == LinesMessage(
        job_id=job_id, attempt=2, lines=tuple(lines)
    )
    assert decode_live(job_id, encode_live_end(7, attempt=2, incomplete=True)) == EndMessage(
        job_id=job_id, attempt=2, last_seq=7, incomplete=True
    )
    # Servers of the version before read "type" and "last_seq" only: still there.
    assert json.loads(encode_live_end(7, attempt=1)) == {
        "type": "end",
        "attempt": 1,
        "last_seq": 7,
        "incomplete": False,
    }
    for bad in [b"", b"[]", b"{not json", b'{"type": "x"}', b'{"type": "lines"}', b"\xff"]:
        with pytest.raises(MalformedMessageError):
            decode_live(job_id, bad)
    with pytest.raises(MalformedMessageError):
        decode_live(job_id, b'{"type": "lines", "attempt": -1, "lines": []}')


def test_positions_are_attempt_dot_seq_and_a_plain_seq_has_no_attempt() -> None:
    assert LogPosition(attempt=2, seq=15).id == "2.15"
    assert LogPosition(attempt=3, seq=-1).id == "3.-1"
    assert parse_position("2.15") == (2, 15)
    assert parse_position("3.-1") == (3, -1)
    assert parse_position("15") == (None, 15)
    assert parse_position("-1") == (None, -1)
    for bad in ["", "x", "0.4", "1.-2", "-2", "1.2.3", "1.", ".4", " 1.4", "1e3", "1.x"]:
        assert parse_position(bad) is None, bad
    # Ids stay monotonic across attempts in the order a reader sees lines.
    seen = [LogPosition(attempt=1, seq=104), LogPosition(attempt=2, seq=-1)]
    seen += [LogPosition(attempt=2, seq=0), LogPosition(attempt=2, seq=10)]
    assert sorted(seen) == seen
    assert [parse_position(p.id) for p in seen] == [(p.attempt, p.seq) for p in seen]


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


def state(**changes: object) -> LogState:
    row = {
        "status": "COMPLETED",
        "logs_closed_at": T,
        "logs_attempt": 1,
        "logs_last_seq": 9,
        "logs_incomplete": False,
        "logs_max_attempt": 1,
        "kind": "CONTAINER",
        "attempt": 1,
        "finished_for": timedelta(seconds=1),
        "started_for": timedelta(seconds=5),
        **changes,
    }
    return LogState.from_row(row)


def test_a_follower_ends_only_when_the_job_is_over_and_every_line_was_sent() -> None:
    def step(s: LogState, last: int, *, blocked: bool = False, stalled: bool = False) -> Step:
        return decide(s, attempt=1, last_sent=last, blocked=blocked, stalled=stalled)

    assert step(state(status="RUNNING"), 9) is Step.FOLLOW
    assert step(state(), 8) is Step.FOLLOW
    assert step(state(), 9) is Step.END
    assert step(state(logs_closed_at=None), -1) is Step.FOLLOW  # the end marker is on its way
    assert step(state(logs_closed_at=None, kind="HEARTBEAT"), -1) is Step.END
    assert step(state(logs_closed_at=None, status="CANCELED", attempt=0), -1) is Step.END
    # Rows closed before attempts were recorded (logs_attempt NULL) describe attempt 1.
    assert step(state(logs_attempt=None), 9) is Step.END


def test_missing_lines_end_the_log_as_incomplete() -> None:
    def step(s: LogState, last: int, *, blocked: bool = False, stalled: bool = False) -> Step:
        return decide(s, attempt=1, last_sent=last, blocked=blocked, stalled=stalled)

    # The end marker never arrived: after a minute, the log ends and says it is incomplete.
    late = MISSING_END_AFTER + timedelta(seconds=1)
    assert step(state(logs_closed_at=None, finished_for=late), -1) is Step.END_INCOMPLETE
    assert step(state(logs_closed_at=None, finished_for=late), -1, blocked=True) is Step.FOLLOW
    # Known incomplete already (a lease that expired): only the gap wait.
    soon = GAP_WAIT + timedelta(seconds=1)
    assert step(state(logs_closed_at=None, finished_for=soon), -1) is Step.FOLLOW
    gap = state(logs_closed_at=None, finished_for=soon, logs_incomplete=True)
    assert step(gap, -1) is Step.END_INCOMPLETE
    # The end marker arrived, but lines before it never will: once nothing came for a while.
    assert step(state(), 5) is Step.FOLLOW
    assert step(state(), 5, stalled=True) is Step.END_INCOMPLETE
    # Every line sent, but the shipper or the worker said lines were lost.
    assert step(state(logs_incomplete=True), 9) is Step.END_INCOMPLETE


def test_a_follower_moves_to_the_next_attempt_only_when_this_one_is_over() -> None:
    retried = {"status": "RUNNING", "attempt": 2, "started_for": timedelta(seconds=1)}

    def step(s: LogState, last: int, *, blocked: bool = False, stalled: bool = False) -> Step:
        return decide(s, attempt=1, last_sent=last, blocked=blocked, stalled=stalled)

    # Attempt 1 ended (its marker stored) and every line of it was sent.
    assert step(state(**retried), 9) is Step.NEXT_ATTEMPT
    assert step(state(**retried), 8) is Step.FOLLOW
    assert step(state(**retried), 9, blocked=True) is Step.FOLLOW
    # Attempt 1's worker died: no end marker. A line of attempt 2 is stored, or attempt 2 has
    # run for a while, or attempt 2 already ended.
    died = {**retried, "logs_closed_at": None}
    assert step(state(**died), 4) is Step.FOLLOW
    assert step(state(**died, logs_max_attempt=2), 4) is Step.NEXT_ATTEMPT
    assert step(state(**died, logs_max_attempt=2), 4, blocked=True) is Step.FOLLOW
    assert step(state(**{**died, "started_for": GAP_WAIT * 2}), 4) is Step.NEXT_ATTEMPT
    assert step(state(**retried, logs_attempt=2, logs_last_seq=0), 4) is Step.NEXT_ATTEMPT
    # Past attempts of a job on attempt 3 are over.
    assert step(state(**{**died, "attempt": 3}), 4) is Step.NEXT_ATTEMPT
    # On the latest attempt, the usual end.
    on_two = state(attempt=2, logs_attempt=2, logs_last_seq=3)
    assert decide(on_two, attempt=2, last_sent=3) is Step.END
    assert decide(on_two, attempt=2, last_sent=2) is Step.FOLLOW
    # A position past the job's attempt (it was handed back): wait, or end if it is final.
    assert decide(state(status="PENDING"), attempt=2, last_sent=-1) is Step.FOLLOW
    assert decide(state(), attempt=2, last_sent=-1) is Step.END


def test_known_incomplete_concerns_the_final_attempt() -> None:
    assert known_incomplete(state(logs_incomplete=True), 1)
    assert not known_incomplete(state(logs_incomplete=True, status="RUNNING"), 1)
    assert not known_incomplete(state(logs_incomplete=True, attempt=2), 1)
    late = MISSING_END_AFTER * 2
    assert known_incomplete(state(logs_closed_at=None, finished_for=late), 1)
    assert not known_incomplete(state(logs_closed_at=None), 1)
    assert not known_incomplete(state(logs_closed_at=None, finished_for=late, kind="HEARTBEAT"), 1)
    assert not known_incomplete(state(), 1)


def test_bounded_encoding_keeps_every_message_under_the_producer_limit() -> None:
    # 6 bytes per control character once JSON-escaped, 12 per astral character: by characters
    # this batch is small, encoded as one message it would be far over the limit.
    job_id = uuid4()
    splitter = LineSplitter(max_chars=16 * 1024)
    text = ("\x01" * 8000 + "\U0001f600" * 8000 + "\n") * 40
    lines = splitter.feed(LogStream.STDOUT, text.encode(), datetime.now(UTC))
    assert len(encode_lines(job_id, lines, attempt=1)) > 4 * MAX_LOG_MESSAGE_BYTES

    values = encode_lines_bounded(job_id, lines, attempt=2)

    assert len(values) > 1
    assert all(len(value) <= MAX_LOG_MESSAGE_BYTES for value in values)
    decoded = [decode_log_message(None, value) for value in values]
    assert [line for message in decoded for line in message.lines] == lines  # type: ignore[union-attr]
    assert {message.attempt for message in decoded} == {2}
    # encode_batches says which lines each message holds (the shipper sends refused ones again).
    batches = encode_batches(job_id, lines, attempt=2)
    assert [value for _, value in batches] == values
    assert [line for part, _ in batches for line in part] == lines


def test_bounded_encoding_sends_a_small_batch_as_one_message() -> None:
    job_id = uuid4()
    lines = LineSplitter().feed(LogStream.STDERR, b"a\nb\n", datetime.now(UTC))
    assert encode_lines_bounded(job_id, lines, attempt=1) == [
        encode_lines(job_id, lines, attempt=1)
    ]


def test_the_processor_keeps_attempts_apart_and_the_newest_end_marker() -> None:
    job_id = uuid4()
    first = decode_shipped_message(
        None, encode_lines(job_id, LineSplitter().feed(OUT, b"a\nb\n", T), attempt=1)
    )
    second = decode_shipped_message(
        None, encode_lines(job_id, LineSplitter().feed(OUT, b"c\n", T), attempt=2)
    )
    gathered = gather(
        [
            first,
            EndMessage(job_id=job_id, attempt=2, last_seq=0),
            second,
            EndMessage(job_id=job_id, attempt=1, last_seq=1),  # late: attempt 2 ended already
        ]
    )
    assert gathered.lines == {(job_id, 1): [first], (job_id, 2): [second]}
    assert gathered.line_count == 3
    assert gathered.ends == {job_id: EndMessage(job_id=job_id, attempt=2, last_seq=0)}


def test_shipped_lines_reach_live_viewers_as_they_came() -> None:
    # Quotes, backslashes, tabs, control, non-ASCII and astral characters, both streams, and one
    # attempt's lines in several messages: the live message the processor makes from the
    # messages' own JSON is byte for byte the one it made by decoding and encoding them.
    job_id = uuid4()
    splitter = LineSplitter()
    text = 'plain\n"quoted" \\ back\ttab\n\x01\x1b[31m☃ \U0001f600\n\n'
    lines = splitter.feed(OUT, text.encode(), T) + splitter.feed(ERR, b"err\n", T + DELTA)
    values = [encode_lines(job_id, lines[:2], attempt=3), encode_lines(job_id, [], attempt=3)]
    values.append(encode_lines(job_id, lines[2:], attempt=3))
    shipped = [decode_shipped_message(None, value) for value in values]

    assert all(isinstance(m, ShippedLines) and m.attempt == 3 for m in shipped)
    assert [len(m.lines) for m in shipped if isinstance(m, ShippedLines)] == [2, 0, 3]
    # Read as the shipper wrote them: the array's text is a slice of the message, not re-encoded.
    assert all(_as_shipped(value) == m for value, m in zip(values, shipped, strict=True))
    live = encode_live_shipped(
        [m.lines_json for m in shipped if isinstance(m, ShippedLines)], attempt=3
    )
    assert live == encode_live_lines(lines, attempt=3)
    assert decode_live(job_id, live) == LinesMessage(job_id=job_id, attempt=3, lines=tuple(lines))
    assert encode_live_shipped([], attempt=1) == encode_live_lines([], attempt=1)


@pytest.mark.parametrize(
    "ts",
    [
        datetime.now(UTC),
        T,
        T + DELTA,
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(
            9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=15, minutes=59))
        ),
        datetime(2026, 3, 1, 12, tzinfo=timezone(-timedelta(hours=15, minutes=59))),
        datetime(2026, 3, 1, 12, 30, 1, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ],
)
def test_the_shippers_timestamps_take_the_fast_path(ts: datetime) -> None:
    job_id = uuid4()
    value = encode_lines(job_id, LineSplitter().feed(OUT, b"a\nb\n", ts), attempt=1)
    shipped = _as_shipped(value)
    assert shipped is not None and [line["ts"] for line in shipped.lines] == [ts.isoformat()] * 2
    assert decode_log_message(None, value) == LinesMessage(
        job_id=job_id, attempt=1, lines=tuple(LineSplitter().feed(OUT, b"a\nb\n", ts))
    )


def test_other_encodings_of_lines_are_read_as_decode_log_message_reads_them() -> None:
    # A producer that spaces its JSON, orders keys otherwise, sends a seq as a string or adds a
    # field: not the shipper's encoding, so decoded and encoded again, with the same result.
    job_id = uuid4()
    line = {"line": "x", "ts": T.isoformat(), "stream": "stderr", "seq": "4", "extra": [1]}
    compact = json.dumps(line, separators=(",", ":"))
    odd = {"v": 1, "type": "log.lines", "job_id": str(job_id), "attempt": 1, "lines": [line]}
    for value in [
        json.dumps({k: v for k, v in odd.items() if k != "attempt"}),
        json.dumps({**odd, "more": True}),
        f'{{"v":1,"type":"log.lines","job_id":"{job_id}","attempt":1,"lines":[{compact}]}}',
    ]:
        shipped = decode_shipped_message(None, value.encode())
        assert _as_shipped(value.encode()) is None
        expected = decode_log_message(None, value.encode())
        assert isinstance(shipped, ShippedLines) and isinstance(expected, LinesMessage)
        assert (shipped.job_id, shipped.attempt) == (expected.job_id, expected.attempt)
        assert shipped.lines == lines_to_json(expected.lines)
        live = encode_live_shipped([shipped.lines_json], attempt=1)
        assert decode_live(job_id, live) == expected


@pytest.mark.parametrize(
    "line",
    [
        {"seq": "x", "stream": "stdout", "ts": T.isoformat(), "line": "x"},
        {"seq": 1, "stream": "stdin", "ts": T.isoformat(), "line": "x"},
        {"seq": 1, "stream": ["stdout"], "ts": T.isoformat(), "line": "x"},
        {"seq": 1, "stream": "stdout", "ts": "yesterday", "line": "x"},
        # fromisoformat reads these; Postgres refuses the first four (a failed batch, not a
        # malformed message, were they let through), and the shipper writes none of them.
        {"seq": 1, "stream": "stdout", "ts": "2026-W01-1", "line": "x"},
        {"seq": 1, "stream": "stdout", "ts": "2026-01-01T00:00:00,5+00:00", "line": "x"},
        {"seq": 1, "stream": "stdout", "ts": "2026-01-01T00:00:00+16:00", "line": "x"},
        {"seq": 1, "stream": "stdout", "ts": "2026-01-01T00:00:00+00:00:30.5", "line": "x"},
        {"seq": 1, "stream": "stdout", "ts": "2026-01-01T00:00:00", "line": "x"},
        {"seq": 1, "stream": "stdout", "ts": "2026-01-01T00:00:00Z", "line": "x"},
        {"seq": 1, "stream": "stdout", "ts": "20260101T000000+0000", "line": "x"},
        {"seq": 1, "stream": "stdout", "ts": 1767225600, "line": "x"},
        {"seq": 1, "stream": "stdout", "ts": T.isoformat()},
        [1, "stdout"],
    ],
)
def test_malformed_lines_in_the_shippers_encoding_are_malformed(line: object) -> None:
    job_id = uuid4()
    head = f'{{"v":1,"type":"log.lines","job_id":"{job_id}","attempt":1,"lines":'
    for value in [f"{head}[{json.dumps(line)}]}}", f"{head}" + "[" * 5000 + "]" * 5000 + "}"]:
        with pytest.raises(MalformedMessageError):
            decode_log_message(None, value.encode())
        with pytest.raises(MalformedMessageError):
            decode_shipped_message(None, value.encode())
    assert decode_shipped_message(None, encode_end(job_id, 3, attempt=2)) == EndMessage(
        job_id=job_id, attempt=2, last_seq=3
    )


def test_log_events_are_what_server_sent_event_encodes() -> None:
    # encode_lines formats each event itself: the same bytes as sse-starlette's ServerSentEvent.
    ts, later = datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 23, 1, tzinfo=UTC)
    texts = ["", "plain", '"quoted" \\ back', "tab\there", "cr\rlf\nnul\x00", "☃ \U0001f600"]
    lines = [
        LogLine(seq=n, stream=(OUT, ERR)[n % 2], ts=(ts, later)[n // 4], line=text)
        for n, text in enumerate(texts)
    ]
    expected = b"".join(
        ServerSentEvent(
            data=json.dumps({"attempt": 12, **line.to_json()}), event="log", id=f"12.{line.seq}"
        ).encode()
        for line in lines
    )
    assert routes.encode_lines(12, lines) == expected
    assert routes.encode_lines(1, []) == b""


def test_a_batch_of_follower_events_is_one_sse_chunk() -> None:
    ts = datetime(2026, 11, 23, tzinfo=UTC)
    lines = [LogLine(seq=s, stream=LogStream.STDOUT, ts=ts, line=f"l{s}") for s in (4, 5)]
    chunk, ended = encode_events([Lines(attempt=1, lines=lines), Idle()])
    frames = chunk.decode().split("\r\n\r\n")
    assert not ended
    assert frames[0].splitlines()[:2] == ["id: 1.4", "event: log"]
    assert '"line": "l5"' in frames[1] and "id: 1.5" in frames[1]
    assert json.loads(frames[1].splitlines()[2].removeprefix("data: "))["attempt"] == 1
    assert frames[2:] == [""]
    chunk, ended = encode_events([AttemptStart(attempt=2), Lines(attempt=2, lines=lines[:1])])
    frames = chunk.decode().split("\r\n\r\n")
    assert frames[0].splitlines() == ["id: 2.-1", "event: attempt", 'data: {"attempt": 2}']
    assert frames[1].splitlines()[0] == "id: 2.4"
    assert not ended
    chunk, ended = encode_events([LogEnd(attempt=2, last_seq=5, incomplete=True)])
    assert ended and b"event: end" in chunk
    assert b'{"attempt": 2, "last_seq": 5, "incomplete": true}' in chunk
    assert encode_events([Idle()]) == (b"", False)


def test_a_shared_live_message_encodes_once_and_like_any_other_lines() -> None:
    at = datetime(2027, 3, 28, tzinfo=UTC)
    shared = tuple(LogLine(seq=s, stream=LogStream.STDOUT, ts=at, line=f"l{s}") for s in range(3))
    as_list, _ = encode_events([Lines(attempt=2, lines=list(shared))])
    as_tuple, _ = encode_events([Lines(attempt=2, lines=shared)])
    assert as_tuple == as_list
    assert b"id: 2.0" in as_tuple and b"id: 2.2" in as_tuple
    cache = SharedEncodings(size=1)
    first = cache.encoded(2, shared)
    assert cache.encoded(2, shared) is first  # once per message, whatever the viewer count
    other = tuple(shared)[:2]
    assert cache.encoded(2, other) != first  # another message: its own encoding
