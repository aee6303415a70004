"""The dashboard's job page over HTTP: status and timeline, and its log viewer's routes (the live
SSE stream read with the session cookie, search, download), against a real server and Postgres."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import redis
from httpx_sse import connect_sse

from chronoverse.logs import encode_live_end, encode_live_lines, live_channel
from services.server.web.session import COOKIE
from tests.integration.conftest import RunningServer, new_user
from tests.integration.test_api_logs import add_lines, job_with_lines, log_lines, retried_job

pytestmark = pytest.mark.integration


@pytest.fixture
def db(server: RunningServer) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(server.database_url, autocommit=True) as conn:
        yield conn


# The user of each signed-in client: its bearer header, to seed data through the JSON API.
_AUTH: dict[int, dict[str, str]] = {}


@pytest.fixture
def browser(server: RunningServer) -> Iterator[httpx.Client]:
    """A client that holds a session cookie (a signed-in browser), and no Authorization header."""
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        _, auth = new_user(client)
        client.cookies.set(COOKIE, auth["Authorization"].removeprefix("Bearer "))
        _AUTH[id(client)] = auth
        yield client
        del _AUTH[id(client)]


def api_auth(browser: httpx.Client) -> dict[str, str]:
    return _AUTH[id(browser)]


def finished_job(browser: httpx.Client, db: Any, count: int) -> tuple[str, str, str]:
    """A COMPLETED job of the browser's user with lines 0..count-1 stored; (wid, jid, page)."""
    workflow_id, job_id = job_with_lines(browser, api_auth(browser), db, count)
    return workflow_id, job_id, f"/ui/workflows/{workflow_id}/jobs/{job_id}"


def sse_events(
    client: httpx.Client, path: str, headers: dict[str, str] | None = None
) -> list[tuple[str, str, Any]]:
    with connect_sse(client, "GET", path, headers=headers or {}) as source:
        assert source.response.status_code == 200
        return [
            (e.event, e.id, json.loads(e.data))
            for e in source.iter_sse()
            if e.event in {"log", "attempt", "end"}
        ]


def test_the_page_shows_status_trigger_attempt_and_the_timeline(
    browser: httpx.Client, db: Any
) -> None:
    workflow_id, job_id = job_with_lines(browser, api_auth(browser), db, 0, finished=False)
    # What the worker's outcome writes (the history's trigger records it).
    db.execute(
        "UPDATE jobs SET status = 'FAILED', exit_code = 3, failure_kind = 'USER', "
        "error = 'exit code 3 <boom>', finished_at = now() WHERE id = %s",
        (job_id,),
    )
    workflow = {"id": workflow_id}
    job = {"id": job_id}
    response = browser.get(f"/ui/workflows/{workflow['id']}/jobs/{job['id']}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert re.search(r"data-job-status>FAILED<", html)
    assert "MANUAL" in html and "box" in html
    assert re.search(r"data-job-exit-code>3<", html)
    assert "exit code 3 &lt;boom&gt;" in html  # escaped, never raw
    events = api_timeline(browser, workflow["id"], job["id"])
    assert events[0] == "created" and "finished" in events
    for event in events:
        assert f'data-event="{event}"' in html
    timeline = html[html.index("data-timeline") :]
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", timeline)  # every time says its zone
    # The viewer's hooks: where the stream is, and the download links.
    base = f"/ui/workflows/{workflow['id']}/jobs/{job['id']}"
    assert f'data-stream-url="{base}/logs/stream"' in html
    for fmt in ("txt", "json", "jsonl"):
        assert f'href="{base}/logs/download?format={fmt}"' in html
    summary = browser.get(f"{base}/summary")
    assert summary.status_code == 200 and 'id="job-summary"' in summary.text
    assert "<html" not in summary.text  # a fragment for htmx, not a page


def api_timeline(client: httpx.Client, workflow_id: str, job_id: str) -> list[str]:
    response = client.get(
        f"/workflows/{workflow_id}/jobs/{job_id}/events", headers=api_auth(client)
    )
    return [e["type"] for e in response.json()["events"]]


def test_the_stream_sends_a_finished_jobs_lines_then_end_with_the_cookie(
    browser: httpx.Client, db: Any
) -> None:
    _, _, base = finished_job(browser, db, 12)
    events = sse_events(browser, f"{base}/logs/stream")
    # The end event has no id of its own (httpx-sse repeats the last one): resume from 1.11.
    assert [(e, i) for e, i, _ in events] == [("log", f"1.{s}") for s in range(12)] + [
        ("end", "1.11")
    ]
    assert events[0][2] == {
        "attempt": 1,
        "seq": 0,
        "stream": "stdout",
        "ts": events[0][2]["ts"],
        "line": "line 0",
    }
    assert events[-1][2] == {"attempt": 1, "last_seq": 11, "incomplete": False}


def test_the_stream_refuses_a_request_without_a_session_with_401(
    browser: httpx.Client, db: Any, http: httpx.Client
) -> None:
    _, _, base = finished_job(browser, db, 3)
    # 401, not a redirect to the login page: EventSource must not take HTML for a stream.
    response = http.get(f"{base}/logs/stream", follow_redirects=False)
    assert response.status_code == 401
    assert "location" not in response.headers
    http.cookies.set(COOKIE, "not-a-token")  # a session revoked or expired
    assert http.get(f"{base}/logs/stream", follow_redirects=False).status_code == 401
    http.cookies.clear()
    # A bearer token alone is not a session either: the web edge reads the cookie.
    bearer = http.get(f"{base}/logs/stream", headers=api_auth(browser), follow_redirects=False)
    assert bearer.status_code == 401


def test_the_stream_resumes_after_last_event_id(browser: httpx.Client, db: Any) -> None:
    _, _, base = finished_job(browser, db, 10)
    events = sse_events(browser, f"{base}/logs/stream", {"Last-Event-ID": "1.6"})
    assert [i for _, i, _ in events] == ["1.7", "1.8", "1.9", "1.9"]
    # The fallback of the page's script when EventSource gave up: the same, as parameters.
    again = sse_events(browser, f"{base}/logs/stream?attempt=1&after=6")
    assert [i for _, i, _ in again] == ["1.7", "1.8", "1.9", "1.9"]


def test_the_stream_from_the_first_attempt_says_when_the_next_begins(
    browser: httpx.Client, db: Any
) -> None:
    workflow_id, job_id = retried_job(browser, api_auth(browser), db)
    base = f"/ui/workflows/{workflow_id}/jobs/{job_id}"
    events = sse_events(browser, f"{base}/logs/stream?attempt=1")  # what the viewer asks first
    assert [(e, i) for e, i, _ in events if e != "end"] == [
        *[("log", f"1.{s}") for s in range(5)],
        ("attempt", "2.-1"),
        *[("log", f"2.{s}") for s in range(3)],
    ]
    assert events[-1][2] == {"attempt": 2, "last_seq": 2, "incomplete": False}


def test_the_stream_goes_live_and_a_reconnect_has_no_gap_and_no_duplicate(
    browser: httpx.Client, db: Any, server: RunningServer
) -> None:
    workflow_id, job_id = job_with_lines(browser, api_auth(browser), db, 3, finished=False)
    base = f"/ui/workflows/{workflow_id}/jobs/{job_id}"
    publisher = redis.Redis.from_url(server.settings.redis_url)
    seen: list[str] = []
    # The first connection reads what is stored, then drops (a client going away).
    with connect_sse(browser, "GET", f"{base}/logs/stream") as source:
        for event in source.iter_sse():
            if event.event == "log":
                seen.append(event.id)
            if len(seen) == 3:
                break
    # Lines printed while no one was connected, then live ones while the viewer is back.
    add_lines(db, job_id, range(3, 5))
    publisher.publish(live_channel(job_id), encode_live_lines(log_lines(range(3, 5)), attempt=1))

    def produce() -> None:
        time.sleep(0.5)
        add_lines(db, job_id, range(5, 8))
        publisher.publish(
            live_channel(job_id), encode_live_lines(log_lines(range(5, 8)), attempt=1)
        )
        time.sleep(0.3)
        db.execute(
            "UPDATE jobs SET status = 'COMPLETED', finished_at = now(), logs_last_seq = 7, "
            "logs_closed_at = now() WHERE id = %s",
            (job_id,),
        )
        publisher.publish(live_channel(job_id), encode_live_end(7, attempt=1))

    thread = threading.Thread(target=produce)
    thread.start()
    rest = sse_events(browser, f"{base}/logs/stream", {"Last-Event-ID": seen[-1]})
    thread.join()
    publisher.close()
    assert seen + [i for e, i, _ in rest if e == "log"] == [f"1.{s}" for s in range(8)]
    assert rest[-1][0] == "end"


def test_search_renders_matching_lines_as_a_fragment(browser: httpx.Client, db: Any) -> None:
    _, job_id, base = finished_job(browser, db, 30)
    db.execute(
        "UPDATE job_logs SET line = '<b>needle</b> ' || line WHERE job_id = %s AND seq IN "
        "(3, 4, 12)",
        (job_id,),
    )
    response = browser.get(f"{base}/logs", params={"q": "NEEDLE", "stream": ""})
    assert response.status_code == 200
    html = response.text
    assert "<html" not in html
    assert re.findall(r'data-seq="(\d+)"', html) == ["3", "4", "12"]
    assert "&lt;b&gt;needle&lt;/b&gt; line 3" in html  # text, never markup
    assert 'data-stream="stderr"' in html and 'data-stream="stdout"' in html
    only_stderr = browser.get(f"{base}/logs", params={"q": "needle", "stream": "stderr"})
    assert re.findall(r'data-seq="(\d+)"', only_stderr.text) == ["3"]
    none = browser.get(f"{base}/logs", params={"q": "absent"})
    assert "No line of attempt 1 contains" in none.text
    # A value the use case refuses is said in the fragment (htmx shows it), not a JSON 422.
    bad = browser.get(f"{base}/logs", params={"q": "x", "stream": "stdin"})
    assert bad.status_code == 200 and 'role="alert"' in bad.text and "stream" in bad.text
    past = browser.get(f"{base}/logs", params={"q": "x", "attempt": "2"})  # it had one attempt
    assert past.status_code == 200 and "attempt: must be 1 to 1 for this job" in past.text
    # Undeclared parameters are still refused, as on every route.
    assert browser.get(f"{base}/logs", params={"query": "x"}).status_code == 422


def test_search_pages_with_more(browser: httpx.Client, db: Any) -> None:
    _, _, base = finished_job(browser, db, 205)
    first = browser.get(f"{base}/logs", params={"q": "line"}).text
    assert len(re.findall(r'data-seq="', first)) == 200
    more = re.search(r'hx-get="([^"]+)"', first)
    assert more is not None
    second = browser.get(more.group(1).replace("&amp;", "&")).text
    assert re.findall(r'data-seq="(\d+)"', second) == ["200", "201", "202", "203", "204"]
    assert "hx-get" not in second


def test_download_with_the_session_cookie(browser: httpx.Client, db: Any) -> None:
    _, job_id, base = finished_job(browser, db, 4)
    txt = browser.get(f"{base}/logs/download", params={"format": "txt"})
    assert txt.status_code == 200
    assert txt.text.splitlines() == ["line 0", "line 1", "line 2", "line 3"]
    assert f"job-{job_id}-attempt-1.txt" in txt.headers["content-disposition"]
    jsonl = browser.get(f"{base}/logs/download", params={"format": "jsonl", "stream": "stderr"})
    assert [json.loads(x)["seq"] for x in jsonl.text.splitlines()] == [1, 3]
    whole = browser.get(f"{base}/logs/download", params={"format": "json"}).json()
    assert [x["line"] for x in whole["logs"]] == [f"line {s}" for s in range(4)]
    signed_out = httpx.get(
        browser.base_url.join(f"{base}/logs/download"), follow_redirects=False, timeout=30
    )
    assert signed_out.status_code in {303, 307}  # to the login page, as every page
    assert "/ui/login" in signed_out.headers["location"]


def test_another_users_job_is_not_found(
    browser: httpx.Client, db: Any, server: RunningServer
) -> None:
    _, _, base = finished_job(browser, db, 2)
    with httpx.Client(base_url=server.http_url, timeout=30) as other:
        _, auth = new_user(other)
        other.cookies.set(COOKIE, auth["Authorization"].removeprefix("Bearer "))
        for path in (
            base,
            f"{base}/summary",
            f"{base}/logs?q=line",
            f"{base}/logs/download",
            f"{base}/logs/stream",
        ):
            assert other.get(path).status_code == 404, path
        page = other.get(base)
        assert page.headers["content-type"].startswith("text/html")  # the error page
        assert "not yours" in page.text
