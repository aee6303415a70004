"""Following a job's log live: the one implementation behind the SSE stream and gRPC StreamLogs.

A follower subscribes to the job's live channel through the process's
:class:`~services.server.live.LiveHub` first, then reads Postgres after the client's position,
then takes live lines of its attempt, keeping only the next seq in order. Any gap (a line
published before the subscription, a batch committed out of order, messages missed while the hub
reconnected) is read from Postgres, where the log processor commits every line before publishing
it; Postgres itself may have a gap for a moment, so reading stops at one and waits for it to
fill; only a gap that lasts ``GAP_WAIT_S`` is skipped. So there is no gap and no duplicate.
Attempts are never spliced: see :mod:`services.server.logs` for the rules, decided by the pure
:func:`~services.server.logs.decide`.

Waiting costs nothing: the async follower (SSE) waits on an asyncio queue that the hub's thread
fills, and reads Postgres on a small executor of its own, only when it must: at the start, after
a gap, after a message that is not the next lines (an end marker, another attempt's lines), and
when nothing came for ``wait_s`` (to see whether the job moved on). The job's state read on those
idle checks is shared by all of a process's viewers of the job for ``STATE_TTL_S``. The sync
follower (gRPC) is the same loop over a blocking queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import queue
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from concurrent.futures import Executor
from typing import TypeVar
from uuid import UUID

from chronoverse.logs import LinesMessage, LogLine, LogMessage, LogPosition, decode_live
from chronoverse.postgres import Pool
from services.server.live import SUBSCRIBE_TIMEOUT_S, LiveHub, StreamSlot
from services.server.logs import (
    GAP_WAIT_S,
    PAGE,
    AttemptStart,
    FollowEvent,
    Idle,
    Lines,
    LogEnd,
    LogState,
    Step,
    decide,
    page,
    read_state,
)

T = TypeVar("T")
# How long one job's state, read for an idle check, serves every viewer of that job.
STATE_TTL_S = 0.5
# Live messages a slow viewer may have waiting; past it they are dropped and the viewer reads
# Postgres instead (every line is there).
MAX_WAITING = 256
_MISSED = object()  # a queue item: messages may have been missed, read Postgres


class _Relay:
    """Puts made on the hub's thread, run on one event loop with one wake-up per burst.

    The hub hands a message to each of a job's viewers in turn; with one ``call_soon_threadsafe``
    per viewer, 1,000 viewers cost 1,000 wake-up writes per message and the GIL changed hands
    between the hub and the loop for each. Per-viewer order is kept: calls run in arrival order.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[tuple[Callable[[object], None], object]] = []

    def call(self, fn: Callable[[object], None], item: object) -> None:
        with self._lock:
            self._pending.append((fn, item))
            first = len(self._pending) == 1
        if first:  # otherwise a flush is scheduled already and will see this call
            self._loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for fn, item in pending:
            fn(item)


_relays: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Relay] = weakref.WeakKeyDictionary()
_relays_lock = threading.Lock()


def _relay(loop: asyncio.AbstractEventLoop) -> _Relay:
    with _relays_lock:
        relay = _relays.get(loop)
        if relay is None:
            relay = _relays[loop] = _Relay(loop)
        return relay


@functools.lru_cache(maxsize=256)
def _decoded(job_id: UUID, data: bytes) -> LogMessage:
    """A live message, decoded once for all of a process's viewers of the job (the hub hands
    each of them the same bytes; a bytes object keeps its hash once computed)."""
    return decode_live(job_id, data)


def _consecutive(lines: Sequence[LogLine]) -> bool:
    return all(b.seq == a.seq + 1 for a, b in itertools.pairwise(lines))


class StateCache:
    """Each job's log state, read at most once per ``ttl_s`` for all of its viewers."""

    def __init__(self, ttl_s: float = STATE_TTL_S) -> None:
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._states: dict[UUID, tuple[float, LogState | None]] = {}

    def read(self, pool: Pool, job_id: UUID, *, fresh: bool = False) -> LogState | None:
        now = time.monotonic()
        if not fresh:
            with self._lock:
                cached = self._states.get(job_id)
            if cached is not None and now - cached[0] < self._ttl_s:
                return cached[1]
        with pool.connection() as conn:
            state = read_state(conn, job_id)
        with self._lock:
            if len(self._states) > 10_000:  # jobs nobody follows any more
                self._states = {k: v for k, v in self._states.items() if now - v[0] < self._ttl_s}
            self._states[job_id] = (time.monotonic(), state)
        return state


class FollowCursor:
    """Where a follower is, and what it takes next (no I/O)."""

    def __init__(self, job_id: UUID, start: LogPosition) -> None:
        self.job_id = job_id
        self.attempt = start.attempt
        self.last = start.seq
        self.blocked = False  # the last read stopped at a gap
        self._gap_since: float | None = None

    def take_page(self, lines: list[LogLine]) -> list[LogLine]:
        """The lines of a Postgres page that come next in order; stops at a gap that has not
        lasted ``GAP_WAIT_S`` yet."""
        taken: list[LogLine] = []
        self.blocked = False
        for line in lines:
            if line.seq != self.last + 1 and not self.gap_outlived():
                self.blocked = True
                break  # wait for the missing lines: live, or on the next read
            self._advance(line)
            taken.append(line)
        return taken

    def take_live(self, data: bytes) -> tuple[Sequence[LogLine], bool]:
        """The lines of a live message that come next in order, and whether the message was
        wholly accounted for (False: read Postgres, e.g. an end marker, another attempt's lines,
        or a gap)."""
        live = _decoded(self.job_id, data)
        if not isinstance(live, LinesMessage) or live.attempt != self.attempt:
            return [], False
        if live.lines and live.lines[0].seq == self.last + 1 and _consecutive(live.lines):
            # The usual case: the whole message comes next. Its lines go on as the shared tuple
            # every viewer of the process decoded once, so they are encoded once too.
            self._advance(live.lines[-1])
            return live.lines, not self.blocked
        taken: list[LogLine] = []
        for line in live.lines:
            if line.seq <= self.last:
                continue  # already sent
            if line.seq != self.last + 1:
                return taken, False  # a gap: the next read from Postgres fills it, in order
            self._advance(line)
            taken.append(line)
        return taken, not self.blocked

    def step(self, state: LogState | None) -> Step:
        if state is None:
            return Step.END  # the job was deleted, and its logs with it
        tail_missing = (
            state.ended_attempt == self.attempt
            and state.last_seq is not None
            and self.last < state.last_seq
            and not self.blocked
        )
        return decide(
            state,
            attempt=self.attempt,
            last_sent=self.last,
            blocked=self.blocked,
            # Only while the end names lines not yet stored: the timer is the gap timer.
            stalled=tail_missing and self.gap_outlived(),
        )

    def next_attempt(self) -> AttemptStart:
        self.attempt += 1
        self.last = -1
        self._gap_since = None
        self.blocked = False
        return AttemptStart(attempt=self.attempt)

    def end(self, step: Step) -> LogEnd:
        return LogEnd(
            attempt=self.attempt, last_seq=self.last, incomplete=step is Step.END_INCOMPLETE
        )

    def gap_outlived(self) -> bool:
        """Whether the gap after the last line sent has lasted long enough to be skipped."""
        now = time.monotonic()
        if self._gap_since is None:
            self._gap_since = now
        return now - self._gap_since >= GAP_WAIT_S

    def _advance(self, line: LogLine) -> None:
        self.last = line.seq
        self._gap_since = None


class LogFollower:
    """One viewer's live follow of a job's log, from after ``start`` (see the module)."""

    def __init__(
        self,
        pool: Pool,
        hub: LiveHub,
        states: StateCache,
        job_id: UUID,
        *,
        start: LogPosition,
        executor: Executor | None = None,
        wait_s: float = 1.0,
        slot: StreamSlot | None = None,
    ) -> None:
        self._pool = pool
        self._hub = hub
        self._states = states
        self._executor = executor
        self._cursor = FollowCursor(job_id, start)
        self._wait_s = wait_s
        self._slot = slot  # the user's count of open streams: refreshed while this one runs

    # --- reading Postgres (blocking; the async follower runs these on its executor) ----------

    def _pages(self) -> list[list[LogLine]]:
        cursor = self._cursor
        taken_pages: list[list[LogLine]] = []
        while True:
            with self._pool.connection() as conn:
                lines = page(
                    conn, cursor.job_id, attempt=cursor.attempt, after=cursor.last, limit=PAGE
                )
            taken = cursor.take_page(lines)
            if taken:
                taken_pages.append(taken)
            if len(taken) < PAGE:
                return taken_pages

    def _catch_up(self, *, fresh: bool) -> tuple[list[FollowEvent], bool]:
        """Read what Postgres has for the cursor, moving through finished attempts: the events,
        and whether the follow is over."""
        events: list[FollowEvent] = []
        while True:
            for taken in self._pages():
                events.append(Lines(attempt=self._cursor.attempt, lines=taken))
            step = self._cursor.step(
                self._states.read(self._pool, self._cursor.job_id, fresh=fresh)
            )
            if step is Step.NEXT_ATTEMPT:
                events.append(self._cursor.next_attempt())
                fresh = True
                continue
            if step is not Step.FOLLOW:
                events.append(self._cursor.end(step))
                return events, True
            return events, False

    # --- the sync follower (gRPC) -----------------------------------------------------------------

    def batches(self) -> Generator[list[FollowEvent], None, None]:
        """The events, a batch at a time (a page, a live message); blocks the calling thread
        while it waits."""
        waiting: queue.Queue[object] = queue.Queue()

        def listener(data: bytes | None) -> None:
            if waiting.qsize() >= MAX_WAITING:
                data = None
            waiting.put(_MISSED if data is None else data)

        subscription = self._hub.subscribe(self._cursor.job_id, listener)
        try:
            subscription.wait_subscribed()  # before reading Postgres: nothing slips by
            yield from self._follow_sync(waiting)
        finally:
            subscription.close()
            if self._slot is not None:
                self._slot.release()

    def __iter__(self) -> Generator[FollowEvent, None, None]:
        with contextlib.closing(self.batches()) as batches:
            for batch in batches:
                yield from batch

    def _follow_sync(self, waiting: queue.Queue[object]) -> Generator[list[FollowEvent]]:
        check, fresh = True, True
        while True:
            if self._slot is not None and self._slot.due():
                self._slot.refresh()
            if check:
                events, over = self._catch_up(fresh=fresh)
                if events:
                    yield events
                if over:
                    return
            try:
                item = waiting.get(timeout=self._wait_s)
            except queue.Empty:
                yield [Idle()]
                check, fresh = True, False
                continue
            chunks, check = self._take_waiting(item, waiting)
            if chunks:
                yield [Lines(attempt=self._cursor.attempt, lines=c) for c in chunks]
            fresh = True

    # --- the async follower (SSE) -----------------------------------------------------------------

    async def abatches(self) -> AsyncGenerator[list[FollowEvent]]:
        """The events, a batch at a time, without holding a thread while waiting."""
        loop = asyncio.get_running_loop()
        waiting: asyncio.Queue[object] = asyncio.Queue()

        def put(item: object) -> None:
            waiting.put_nowait(_MISSED if waiting.qsize() >= MAX_WAITING else item)

        relay = _relay(loop)

        def listener(data: bytes | None) -> None:  # on the hub's thread
            relay.call(put, _MISSED if data is None else data)

        subscribed = asyncio.Event()

        def on_subscribed() -> None:  # on the hub's thread, or here
            loop.call_soon_threadsafe(subscribed.set)

        subscription = self._hub.subscribe(
            self._cursor.job_id, listener, on_subscribed=on_subscribed
        )
        try:
            # Before reading Postgres: nothing slips by. Not confirmed in time (Redis is down):
            # go on; the idle checks read Postgres until live messages come.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(subscribed.wait(), timeout=SUBSCRIBE_TIMEOUT_S)
            check, fresh = True, True
            while True:
                if self._slot is not None and self._slot.due():
                    await self._run(self._slot.refresh)  # busy or idle: a Redis call
                if check:
                    events, over = await self._run(functools.partial(self._catch_up, fresh=fresh))
                    if events:
                        yield events
                    if over:
                        return
                try:
                    item = await _next(waiting, self._wait_s)
                except TimeoutError:
                    yield [Idle()]
                    check, fresh = True, False
                    continue
                chunks, check = self._take_waiting(item, waiting)
                if chunks:
                    yield [Lines(attempt=self._cursor.attempt, lines=c) for c in chunks]
                fresh = True
        finally:
            subscription.close()
            if self._slot is not None:
                await self._run(self._slot.release)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    # --- shared by both -----------------------------------------------------------------------

    def _take_waiting(
        self, item: object, waiting: asyncio.Queue[object] | queue.Queue[object]
    ) -> tuple[list[Sequence[LogLine]], bool]:
        """:meth:`_take` of ``item`` and of every item already waiting after it, as one batch
        (the lines of each message in order): a viewer that fell behind catches up in one write
        rather than one per message. Only lines next in order are taken; whatever a later item
        skips is read from Postgres."""
        chunks: list[Sequence[LogLine]] = []
        check = False
        while True:
            lines, also = self._take(item)
            if lines:
                chunks.append(lines)
            check = check or also
            if waiting.empty():
                return chunks, check
            item = waiting.get_nowait()

    def _take(self, item: object) -> tuple[Sequence[LogLine], bool]:
        """A queue item's lines that come next, and whether Postgres must be read after them
        (messages were missed, a gap, an end marker, another attempt's lines)."""
        if item is _MISSED:
            return [], True
        assert isinstance(item, bytes)
        lines, complete = self._cursor.take_live(item)
        return lines, not complete


async def _next(waiting: asyncio.Queue[object], timeout_s: float) -> object:
    """The next item, or TimeoutError after ``timeout_s``; unlike ``asyncio.wait_for`` (3.11),
    no task is made per wait."""
    if not waiting.empty():
        return waiting.get_nowait()
    async with asyncio.timeout(timeout_s):
        return await waiting.get()
