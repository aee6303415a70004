"""The job page's log viewer in Chromium: numbered lines appear live and in order, a server restart
shows "reconnecting…" and then the remaining lines with no gap and no duplicate; then the
stream filter, search, download and "Jump to latest", on a real CONTAINER job."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.ui import Account, ConsoleWatch, screenshot
from tests.conftest import wait_until
from tests.e2e.stack import Stack
from tests.integration.test_api_logs import retried_job

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(300)]

BUSYBOX = "local/busybox:latest"
LINES = 200
# Line i on stdout, every fifth on stderr, one every 0.1 s: about 20 s of live output, more
# than the log's box holds, so that it scrolls.
SCRIPT = (
    f"i=0; while [ $i -lt {LINES} ]; do "
    'if [ $((i % 5)) -eq 4 ]; then echo "line $i" >&2; else echo "line $i"; fi; '
    "i=$((i + 1)); sleep 0.1; done"
)


@pytest.fixture
def api(stack: Stack, signed_in: Account) -> Iterator[httpx.Client]:
    """The JSON API, as the user signed in on the page (a token of its own)."""
    with httpx.Client(base_url=stack.api, timeout=30) as client:
        credentials = {"email": signed_in.email, "password": signed_in.password}
        token = client.post("/auth/login", json=credentials).json()["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def started_job(api: httpx.Client) -> tuple[str, str]:
    """A CONTAINER workflow that prints numbered lines; its first job, once it exists."""
    response = api.post(
        "/workflows",
        json={
            "name": "counter",
            "kind": "CONTAINER",
            "interval": 10080,
            "payload": {"image": BUSYBOX, "command": ["sh", "-c", SCRIPT]},
        },
    )
    assert response.status_code == 201, response.text
    workflow_id = response.json()["id"]

    def first_job() -> str | None:
        jobs = api.get(f"/workflows/{workflow_id}/jobs").json()["jobs"]
        return str(jobs[0]["id"]) if jobs else None

    return workflow_id, wait_until(first_job, timeout_s=120, message="the first job")


def shown(log: Locator) -> list[dict[str, Any]]:
    """The lines the viewer shows, in page order."""
    rows: list[dict[str, Any]] = log.locator("[data-seq]").evaluate_all(
        "rows => rows.map(r => ({seq: Number(r.dataset.seq), stream: r.dataset.stream, "
        "attempt: Number(r.dataset.attempt), text: r.lastChild.textContent}))"
    )
    return rows


def number(row: dict[str, Any]) -> int:
    return int(row["text"].removeprefix("line "))


def in_order(rows: list[dict[str, Any]]) -> None:
    """Each stream's lines in the order printed, on the stream they were printed to (the two
    streams' lines may interleave otherwise: the runtime reads them apart)."""
    for stream in ("stdout", "stderr"):
        numbers = [number(r) for r in rows if r["stream"] == stream]
        assert numbers == sorted(numbers), stream
        assert all((n % 5 == 4) == (stream == "stderr") for n in numbers), stream


def test_live_lines_in_order_through_a_server_restart(
    page: Page, api: httpx.Client, stack: Stack, console: ConsoleWatch
) -> None:
    # Chromium logs the stream cut by the kill, and its reconnections while the server is down.
    console.allow(r"(ERR_INCOMPLETE_CHUNKED_ENCODING|ERR_CONNECTION_REFUSED) \(at \S+/logs/stream")
    workflow_id, job_id = started_job(api)
    page.goto(f"/ui/workflows/{workflow_id}/jobs/{job_id}")
    log = page.get_by_role("log", name="Log output")
    state = page.get_by_role("status").filter(has_text="Stream:")

    # Numbered lines appear live, in order, each with its seq and stream.
    expect(log.get_by_text("line 5", exact=True)).to_be_visible(timeout=120_000)
    expect(log.get_by_text("line 50", exact=True)).to_be_visible()
    expect(state).to_contain_text("live")
    before = shown(log)
    assert [r["seq"] for r in before] == list(range(len(before)))
    assert {r["stream"] for r in before} == {"stdout", "stderr"}
    in_order(before)

    # Scrolled up, the view stays put and offers "Jump to latest"; that goes back to following.
    log.hover()
    page.mouse.wheel(0, -5000)
    jump = page.get_by_role("button", name="Jump to latest")
    expect(jump).to_be_visible()
    jump.click()
    expect(jump).to_be_hidden()

    # The server goes away mid-stream: the viewer says so, and resumes when it is back.
    stack.kill("server")
    expect(state).to_contain_text("reconnecting…")
    dropped_at = len(shown(log))
    assert dropped_at < LINES, "the job ended before the restart: make it longer"
    stack.start("server", "server")
    expect(state).to_contain_text("ended", timeout=120_000)

    rows = shown(log)
    assert [r["seq"] for r in rows] == list(range(LINES))  # no gap, no duplicate
    assert sorted(number(r) for r in rows) == list(range(LINES))
    in_order(rows)
    assert {r["attempt"] for r in rows} == {1}
    # The status and the timeline followed the job to its end without a reload.
    expect(page.get_by_text("COMPLETED", exact=True)).to_be_visible()
    expect(page.locator("[data-event='finished']")).to_be_visible()
    for scheme in ("light", "dark"):
        screenshot(page, "job-logs", scheme)

    # The stream filter hides stdout's lines (client side), and shows them again.
    stdout_line = log.get_by_text("line 0", exact=True)
    stderr_line = log.get_by_text("line 4", exact=True)
    page.get_by_label("stdout", exact=True).uncheck()
    expect(stdout_line).to_be_hidden()
    expect(stderr_line).to_be_visible()
    page.get_by_label("stdout", exact=True).check()
    expect(stdout_line).to_be_visible()

    # Search reads the stored lines through the server.
    search = page.get_by_role("search")
    search.get_by_label("Text").fill("LINE 1")
    search.get_by_label("Stream").select_option("stdout")
    search.get_by_role("button", name="Search").click()
    results = page.get_by_role("region", name="Search results").locator("[data-seq]")
    expected = [r["seq"] for r in rows if r["stream"] == "stdout" and "line 1" in r["text"]]
    expect(results).to_have_count(len(expected))
    assert [int(x) for x in results.evaluate_all("rs => rs.map(r => r.dataset.seq)")] == expected

    # Downloads carry the session cookie.
    with page.expect_download() as download:
        page.get_by_role("link", name="txt", exact=True).click()
    path = download.value.path()
    assert path.read_text().splitlines() == [r["text"] for r in rows]
    assert re.fullmatch(rf"job-{job_id}-attempt-1\.txt", download.value.suggested_filename)


def test_a_retried_jobs_attempts_are_shown_apart(
    page: Page, api: httpx.Client, stack: Stack
) -> None:
    # Stored as the log processor stores them: attempt 1 printed lines 0..4, attempt 2 lines 0..2.
    with psycopg.connect(stack.env["CHRONOVERSE_DATABASE_URL"], autocommit=True) as db:
        workflow_id, job_id = retried_job(api, dict(api.headers), db)
    page.goto(f"/ui/workflows/{workflow_id}/jobs/{job_id}")
    log = page.get_by_role("log", name="Log output")
    expect(page.get_by_role("status").filter(has_text="Stream:")).to_contain_text("ended")
    separator = log.get_by_role("separator")
    expect(separator).to_have_text("attempt 2")
    rows = shown(log)
    assert [(r["attempt"], r["seq"]) for r in rows] == [(1, s) for s in range(5)] + [
        (2, s) for s in range(3)
    ]
    # The separator sits between the attempts.
    order = log.locator("[data-seq], [role=separator]").evaluate_all(
        "xs => xs.map(x => x.getAttribute('role') || x.dataset.attempt + '.' + x.dataset.seq)"
    )
    assert order == ["1.0", "1.1", "1.2", "1.3", "1.4", "separator", "2.0", "2.1", "2.2"]
