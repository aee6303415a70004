"""The HEARTBEAT client's transport, made at the first request (`heartbeat.OnDemandTransport`)."""

import threading

import httpx

from services.execution_worker.heartbeat import OnDemandTransport


class Made:
    """Counts the transports made, and closed, for requests answered 204."""

    def __init__(self) -> None:
        self.made = 0
        self.closed = 0

    def __call__(self) -> httpx.BaseTransport:
        self.made += 1
        made = self

        class Answering(httpx.MockTransport):
            def close(self) -> None:
                made.closed += 1

        return Answering(lambda request: httpx.Response(204))


def test_the_transport_is_made_at_the_first_request_and_shared() -> None:
    made = Made()
    client = httpx.Client(transport=OnDemandTransport(made))
    assert made.made == 0
    statuses: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: statuses.append(client.get("http://127.0.0.1/").status_code)
        )
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [204] * 8
    assert made.made == 1
    client.close()
    assert made.closed == 1


def test_a_client_that_sent_nothing_closes_without_making_one() -> None:
    made = Made()
    httpx.Client(transport=OnDemandTransport(made)).close()
    assert (made.made, made.closed) == (0, 0)
