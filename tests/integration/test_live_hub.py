"""The live hub and stream slots against real Redis: one subscription per job however many
viewers, every viewer gets each message, a lost connection is said and recovered, and each
user's cap on open streams holds across server processes."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Mapping

import pytest
import redis

from chronoverse.errors import RateLimitedError
from chronoverse.logs import live_channel
from services.server.live import LiveHub, StreamSlots
from tests.conftest import wait_until

pytestmark = pytest.mark.integration


class Inbox:
    def __init__(self) -> None:
        self.items: list[bytes | None] = []
        self._lock = threading.Lock()

    def __call__(self, data: bytes | None) -> None:
        with self._lock:
            self.items.append(data)


@pytest.fixture
def hub(environ: Mapping[str, str]) -> Iterator[tuple[LiveHub, str]]:
    name = f"test-hub-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(environ["CHRONOVERSE_REDIS_URL"], client_name=name)
    hub = LiveHub(client, poll_s=0.02)
    yield hub, name
    hub.stop()
    client.close()


def subscribers(client: redis.Redis, job_id: uuid.UUID) -> int:
    return int(client.pubsub_numsub(live_channel(job_id))[0][1])


def test_viewers_of_one_job_share_one_subscription_and_each_get_every_message(
    hub: tuple[LiveHub, str], redis_client: redis.Redis
) -> None:
    live, _ = hub
    job_id = uuid.uuid4()
    inboxes = [Inbox() for _ in range(50)]
    subscriptions = [live.subscribe(job_id, inbox) for inbox in inboxes]
    assert all(s.wait_subscribed(5) for s in subscriptions)
    assert subscribers(redis_client, job_id) == 1
    assert live.channels == 1

    for n in range(3):
        redis_client.publish(live_channel(job_id), f"message {n}")
    wait_until(lambda: all(len(i.items) == 3 for i in inboxes), message="every viewer's messages")
    assert all(i.items == [b"message 0", b"message 1", b"message 2"] for i in inboxes)

    for subscription in subscriptions[:-1]:
        subscription.close()
    time.sleep(0.2)
    assert subscribers(redis_client, job_id) == 1  # one viewer is left
    subscriptions[-1].close()
    wait_until(lambda: subscribers(redis_client, job_id) == 0, message="the unsubscribe")
    assert live.channels == 0


def test_a_viewer_of_another_job_gets_nothing_of_this_one(
    hub: tuple[LiveHub, str], redis_client: redis.Redis
) -> None:
    live, _ = hub
    mine, other = Inbox(), Inbox()
    first = live.subscribe(job := uuid.uuid4(), mine)
    second = live.subscribe(uuid.uuid4(), other)
    assert first.wait_subscribed(5) and second.wait_subscribed(5)
    redis_client.publish(live_channel(job), "for the first job")
    wait_until(lambda: mine.items, message="the message")
    time.sleep(0.1)
    assert other.items == []
    first.close()
    second.close()


def test_a_lost_connection_is_said_to_every_viewer_and_the_subscription_comes_back(
    hub: tuple[LiveHub, str], redis_client: redis.Redis
) -> None:
    live, name = hub
    inbox = Inbox()
    job_id = uuid.uuid4()
    subscription = live.subscribe(job_id, inbox)
    assert subscription.wait_subscribed(5)

    killed = 0
    for client in redis_client.client_list():
        if client.get("name") == name:
            redis_client.client_kill_filter(_id=client["id"])
            killed += 1
    assert killed >= 1

    # Told at once, and again when subscribed anew (messages in between are only in Postgres).
    wait_until(lambda: inbox.items.count(None) >= 2, message="the viewer to hear of the loss")
    assert subscription.wait_subscribed(5)
    assert subscribers(redis_client, job_id) == 1
    redis_client.publish(live_channel(job_id), "after the reconnect")
    wait_until(lambda: b"after the reconnect" in inbox.items, message="a message after it")
    subscription.close()


def test_stream_slots_cap_each_user_across_processes(redis_client: redis.Redis) -> None:
    # Two StreamSlots are two server processes: only Redis is shared.
    first, second = (StreamSlots(redis_client, cap=2, ttl_s=60) for _ in range(2))
    user, other = uuid.uuid4(), uuid.uuid4()
    held = [first.acquire(user), second.acquire(user)]
    with pytest.raises(RateLimitedError) as refused:
        first.acquire(user)
    assert refused.value.retry_after_s >= 1
    second.acquire(other).release()  # another user is counted apart
    held[0].release()
    second.acquire(user).release()  # a released slot is free again
    held[1].release()


def test_a_stream_whose_server_died_stops_counting_after_its_ttl(
    redis_client: redis.Redis,
) -> None:
    slots = StreamSlots(redis_client, cap=1, ttl_s=1)
    user = uuid.uuid4()
    slots.acquire(user)  # never released nor refreshed: its process died
    with pytest.raises(RateLimitedError):
        slots.acquire(user)
    time.sleep(1.2)
    slots.acquire(user).release()


def test_a_running_stream_that_vouches_for_itself_keeps_its_slot(
    redis_client: redis.Redis,
) -> None:
    slots = StreamSlots(redis_client, cap=1, ttl_s=1)
    user = uuid.uuid4()
    slot = slots.acquire(user)
    assert not slot.due()  # just counted
    time.sleep(1.2)  # longer than the ttl: a slot not refreshed would have lapsed
    assert slot.due()
    slot.refresh()  # what a busy or idle follower does when due: counted again
    with pytest.raises(RateLimitedError):
        slots.acquire(user)
    slot.release()
    slots.acquire(user).release()
