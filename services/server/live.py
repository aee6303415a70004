"""Live log lines for every viewer of a server process, through one Redis subscription.

The log processor publishes each stored batch of a job's lines on ``job_logs:<job id>``. A
viewer used to hold a Redis connection (and a thread waiting on it) of its own; now a process has
one :class:`LiveHub`: a thread that owns one pub/sub connection, subscribes to a job's channel
while the job has viewers (reference-counted, so 1,000 viewers of one job are one subscription),
and hands every message to each viewer's listener. Listeners must not block: an async viewer's
listener puts the message on its event loop's queue.

A live message is only a hint that lines were stored: a viewer reads anything it missed from
Postgres. So when the hub loses its connection, it tells every listener (``None``: "you may have
missed messages"), reconnects, subscribes again, and tells them once more when the new
subscription took effect (what was published in between is in Postgres); viewers then read it.

:class:`StreamSlots` caps how many live streams one user has open across every server process,
counted in Redis.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import redis

from chronoverse.errors import RateLimitedError
from chronoverse.logs import live_channel

logger = logging.getLogger(__name__)

# What a listener gets: a message's data, or None when messages may have been missed.
Listener = Callable[[bytes | None], None]
SUBSCRIBE_TIMEOUT_S = 5.0


@dataclass(eq=False)
class _Channel:
    listeners: list[Listener] = field(default_factory=list)
    subscribed: threading.Event = field(default_factory=threading.Event)
    # Called (on the hub's thread) once Redis confirms the subscription.
    on_subscribed: list[Callable[[], None]] = field(default_factory=list)
    # The connection was lost: once subscribed again, listeners hear that they may have missed
    # messages (any published before the new subscription took effect).
    missed: bool = False


class Subscription:
    """One viewer's place on a job's channel; ``close`` it when the viewer goes."""

    def __init__(self, hub: LiveHub, channel: str, listener: Listener) -> None:
        self._hub = hub
        self._channel = channel
        self._listener = listener
        self._closed = False

    def wait_subscribed(self, timeout_s: float = SUBSCRIBE_TIMEOUT_S) -> bool:
        """Block until Redis confirmed the channel's subscription (False: not in time; the
        viewer then relies on reading Postgres until it is)."""
        return self._hub._subscribed(self._channel).wait(timeout_s)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._hub._remove(self._channel, self._listener)


class LiveHub:
    """One pub/sub connection per process, shared by every viewer (see the module docstring)."""

    def __init__(self, client: redis.Redis, *, poll_s: float = 0.05) -> None:
        self._client = client
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._channels: dict[str, _Channel] = {}
        self._commands: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="live-hub", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def channels(self) -> int:
        """How many job channels this process is subscribed to (one per job with viewers)."""
        with self._lock:
            return len(self._channels)

    def subscribe(
        self,
        job_id: UUID,
        listener: Listener,
        *,
        on_subscribed: Callable[[], None] | None = None,
    ) -> Subscription:
        """Hand every live message of the job to ``listener`` until the subscription is closed.

        Read Postgres only once the channel is subscribed (``wait_subscribed``, or when
        ``on_subscribed`` is called, at once if it is already), so no line slips between the two.
        """
        self.start()
        channel = live_channel(job_id)
        with self._lock:
            entry = self._channels.get(channel)
            if entry is None:
                entry = self._channels[channel] = _Channel()
                self._commands.put(("subscribe", channel))
            entry.listeners.append(listener)
            already = entry.subscribed.is_set()
            if on_subscribed is not None and not already:
                entry.on_subscribed.append(on_subscribed)
        if on_subscribed is not None and already:
            on_subscribed()
        return Subscription(self, channel, listener)

    def _subscribed(self, channel: str) -> threading.Event:
        with self._lock:
            entry = self._channels.get(channel)
        if entry is None:  # closed already
            done = threading.Event()
            done.set()
            return done
        return entry.subscribed

    def _remove(self, channel: str, listener: Listener) -> None:
        with self._lock:
            entry = self._channels.get(channel)
            if entry is None:
                return
            entry.listeners.remove(listener)
            if not entry.listeners:
                del self._channels[channel]
                self._commands.put(("unsubscribe", channel))

    # --- the hub's thread -----------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
            try:
                self._serve(pubsub)
                return
            except (redis.RedisError, OSError) as exc:
                logger.warning(
                    "live log subscription lost (%s); subscribing again in %.1fs",
                    exc,
                    backoff,
                    extra={"action": "live_hub_reconnect"},
                )
                self._missed_everything()
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                try:
                    pubsub.close()
                except (redis.RedisError, OSError):
                    pass

    def _serve(self, pubsub: Any) -> None:
        # Every channel that has viewers now (after a reconnect: all of them) is subscribed anew.
        # The commands queued so far are dropped first, then what is wanted is read: a channel
        # added in between is in `wanted`, or its command is still queued.
        while True:
            try:
                self._commands.get_nowait()
            except queue.Empty:
                break
        with self._lock:
            wanted = list(self._channels)
        if wanted:
            pubsub.subscribe(*wanted)
        while not self._stopping.is_set():
            self._apply_commands(pubsub)
            if not pubsub.subscribed:
                time.sleep(self._poll_s)  # nothing to listen to; get_message would not wait
                continue
            message = pubsub.get_message(timeout=self._poll_s)
            if message is not None:
                self._dispatch(message)

    def _apply_commands(self, pubsub: Any) -> None:
        subscribe: list[str] = []
        unsubscribe: list[str] = []
        while True:
            try:
                command, channel = self._commands.get_nowait()
            except queue.Empty:
                break
            (subscribe if command == "subscribe" else unsubscribe).append(channel)
        with self._lock:  # a channel may have come and gone meanwhile: act on what is wanted
            subscribe = [c for c in subscribe if c in self._channels]
            unsubscribe = [c for c in unsubscribe if c not in self._channels]
        if subscribe:
            pubsub.subscribe(*subscribe)
        if unsubscribe:
            pubsub.unsubscribe(*unsubscribe)

    def _dispatch(self, message: dict[str, Any]) -> None:
        channel = message["channel"]
        if isinstance(channel, bytes):
            channel = channel.decode()
        with self._lock:
            entry = self._channels.get(channel)
            listeners = list(entry.listeners) if entry is not None else []
            if entry is not None and message["type"] == "subscribe":
                entry.subscribed.set()
                waiters, entry.on_subscribed = entry.on_subscribed, []
                missed, entry.missed = entry.missed, False
        if entry is None:
            return
        if message["type"] == "subscribe":
            for waiter in waiters:
                waiter()
            if missed:
                for listener in listeners:
                    listener(None)
        elif message["type"] == "message":
            for listener in listeners:
                listener(message["data"])

    def _missed_everything(self) -> None:
        with self._lock:
            entries = list(self._channels.values())
        for entry in entries:
            entry.subscribed.clear()
            entry.missed = True
            for listener in list(entry.listeners):
                listener(None)


# Count this stream, unless the user has `cap` live ones: drop the ones whose owner stopped
# refreshing them (a crashed process), count, add. Atomic in Redis.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[3])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


class StreamSlots:
    """At most ``cap`` live log streams per user, across every server process.

    Each open stream is a member of the user's sorted set in Redis, scored by when its server
    last vouched for it; a stream's server refreshes it while it runs, so one that died with its
    process stops counting after ``ttl_s``.
    """

    def __init__(self, client: redis.Redis, *, cap: int, ttl_s: int = 60) -> None:
        self._client = client
        self._cap = cap
        self._ttl_s = ttl_s
        self._acquire = client.register_script(_ACQUIRE)

    def acquire(self, user_id: UUID) -> StreamSlot:
        """A slot for a new stream of the user; RateLimitedError when all are taken. When Redis
        cannot be reached the stream is let through uncounted (and that is logged)."""
        key, member = _key(user_id), uuid.uuid4().hex
        try:
            taken = self._acquire(keys=[key], args=[time.time(), member, self._ttl_s, self._cap])
        except redis.RedisError as exc:
            logger.warning(
                "live stream caps unavailable (Redis: %s); stream let through",
                exc,
                extra={"action": "stream_slots_unavailable"},
            )
            return StreamSlot(None, key, member, ttl_s=self._ttl_s)
        if not taken:
            raise RateLimitedError(
                f"too many live log streams open for this user (at most {self._cap}); "
                "close one and try again",
                retry_after_s=5,
            )
        return StreamSlot(self._client, key, member, ttl_s=self._ttl_s)


class StreamSlot:
    """One counted stream: refresh it while the stream runs, release it when it ends."""

    def __init__(self, client: redis.Redis | None, key: str, member: str, *, ttl_s: int) -> None:
        self._client = client  # None: not counted (Redis was unreachable)
        self._key = key
        self._member = member
        self._ttl_s = ttl_s
        self._refreshed_at = time.monotonic()

    def due(self) -> bool:
        """Whether the stream should be vouched for again (every ttl/4 while it runs, busy or
        idle); a check of the clock only."""
        return self._client is not None and (
            time.monotonic() - self._refreshed_at >= self._ttl_s / 4
        )

    def refresh(self) -> None:
        """Vouch for the stream again (a Redis call: off the event loop)."""
        if self._client is None:
            return
        self._refreshed_at = time.monotonic()
        try:
            # Added back if a slow refresh let it lapse: the stream is still open.
            self._client.zadd(self._key, {self._member: time.time()})
            self._client.expire(self._key, self._ttl_s)
        except redis.RedisError as exc:
            logger.warning("could not refresh a live stream's slot: %s", exc)

    def release(self) -> None:
        if self._client is None:
            return
        try:
            self._client.zrem(self._key, self._member)
        except redis.RedisError as exc:
            logger.warning("could not release a live stream's slot (it expires): %s", exc)


def _key(user_id: UUID) -> str:
    return f"chronoverse:streams:{user_id}"
