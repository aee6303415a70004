"""The live log in Chromium: "Run now", lines appearing in order while the job runs, and a server
restart in the middle: "reconnecting…", then the remaining lines with no gap and no duplicate."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.browser.ui import (
    Account,
    ConsoleWatch,
    counting_script,
    create_container_workflow,
    wait_until_built,
)
from tests.e2e.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(300)]

LINES = 40
PAUSE_S = 0.3


def shown_lines(page: Page) -> list[tuple[int, str, str]]:
    """(data-seq, data-stream, text) of every line the viewer shows, top to bottom."""
    rows = page.locator("[data-log-lines] [data-seq]").evaluate_all(
        """rows => rows.map(row => [Number(row.dataset.seq), row.dataset.stream,
                                    row.textContent])"""
    )
    return [(int(seq), str(stream), str(text)) for seq, stream, text in rows]


def line_numbers(lines: list[tuple[int, str, str]]) -> list[int]:
    numbers = []
    for _, _, text in lines:
        found = re.search(r"line (\d+)$", text)
        assert found, f"not a numbered line: {text!r}"
        numbers.append(int(found.group(1)))
    return numbers


def run_now_and_open_the_job(page: Page, workflow_id: str) -> None:
    page.get_by_role("button", name="Run now").click()
    job_link = page.get_by_role("region", name="Jobs").get_by_role("link").first
    expect(job_link).to_be_visible()
    job_link.click()
    expect(page).to_have_url(re.compile(rf"/ui/workflows/{workflow_id}/jobs/[0-9a-f-]+$"))


def test_run_now_and_watch_the_lines_live_through_a_server_restart(
    page: Page, signed_in: Account, stack: Stack, console: ConsoleWatch
) -> None:
    name = f"count-{uuid.uuid4().hex[:6]}"
    workflow_id = create_container_workflow(page, name, counting_script(LINES, PAUSE_S))
    wait_until_built(page)
    run_now_and_open_the_job(page, workflow_id)

    state = page.locator("[data-log-state]")
    lines = page.locator("[data-log-lines] [data-seq]")
    # Lines appear while the job runs: some are shown, and the stream is live, before the last.
    expect(lines.nth(4)).to_be_attached(timeout=90_000)
    expect(state).to_have_text("live")
    early = shown_lines(page)
    assert len(early) < LINES, "every line was there at once: not a live tail"
    assert line_numbers(early) == list(range(1, len(early) + 1))

    # The server goes away mid-stream: every connection drops, and the page says so.
    console.allow(r"ERR_CONNECTION_REFUSED|ERR_INCOMPLETE_CHUNKED_ENCODING|ERR_EMPTY_RESPONSE")
    stack.kill("server")
    expect(state).to_have_text("reconnecting…")
    before_restart = len(shown_lines(page))
    time.sleep(1)  # lines keep coming in the container while nobody serves them
    stack.start("server", "server")

    expect(state).to_have_text(re.compile(r"^(live|ended)$"))
    expect(lines).to_have_count(LINES, timeout=90_000)
    expect(state).to_have_text("ended", timeout=60_000)

    final = shown_lines(page)
    seqs = [seq for seq, _, _ in final]
    assert seqs == list(range(seqs[0], seqs[0] + LINES)), f"a gap or a duplicate: {seqs}"
    assert line_numbers(final) == list(range(1, LINES + 1))
    assert {stream for _, stream, _ in final} == {"stdout"}
    assert final[: len(early)] == early, "lines shown before the restart changed"
    assert before_restart < LINES, "the job had finished before the restart: nothing was resumed"
