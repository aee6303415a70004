"""Screenshots of the main pages, light and dark, written into docs/images/ for docs/dashboard.md.

The data is set up through the JSON API (a user signs up in the browser, then the same account
creates workflows and runs a job with a bearer token); the pages are then visited as that user.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.ui import BUSYBOX, Account, screenshot
from tests.conftest import wait_until
from tests.e2e.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(300)]

SCHEMES: tuple[Literal["light", "dark"], ...] = ("light", "dark")
BACKUP_SCRIPT = (
    'for i in $(seq 1 14); do echo "backup: copied batch $i of 14 ($((i * 37)) files)"; '
    "sleep 0.05; done; echo 'warning: 2 files changed during the copy, retried' >&2; "
    "echo 'backup: done'"
)


@pytest.fixture
def api(stack: Stack, signed_in: Account) -> Iterator[httpx.Client]:
    """The signed-in user's JSON API client (a bearer token from /auth/login)."""
    client = httpx.Client(base_url=stack.api, timeout=30)
    login = client.post(
        "/auth/login", json={"email": signed_in.email, "password": signed_in.password}
    )
    client.headers["Authorization"] = f"Bearer {login.json()['token']}"
    yield client
    client.close()


def create(api: httpx.Client, **body: Any) -> dict[str, Any]:
    response = api.post("/workflows", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def finished_job(api: httpx.Client, workflow_id: str) -> dict[str, Any]:
    """Run the workflow once it is built; the job, once it has finished."""

    def built() -> bool:
        status = api.get(f"/workflows/{workflow_id}").json()["build_status"]
        assert status != "FAILED", "the build failed"
        return bool(status == "COMPLETED")

    wait_until(built, timeout_s=90, interval_s=0.3, message="the build")
    response = api.post(f"/workflows/{workflow_id}/jobs")
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]

    def done() -> dict[str, Any] | None:
        job = api.get(f"/workflows/{workflow_id}/jobs/{job_id}").json()
        return job if job["status"] in {"COMPLETED", "FAILED", "CANCELED"} else None

    return dict(wait_until(done, timeout_s=90, interval_s=0.3, message="the job to finish"))


def test_screenshots_of_the_main_pages(page: Page, api: httpx.Client) -> None:
    backup = create(
        api,
        name="nightly-backup",
        kind="CONTAINER",
        cron="30 2 * * *",
        timezone="Europe/Paris",
        payload={
            "image": BUSYBOX,
            "command": ["sh", "-c"],
            "args": [BACKUP_SCRIPT],
            "env": {"BACKUP_TOKEN": "s3cr3t"},
        },
    )
    create(api, name="api-liveness", kind="HEARTBEAT", interval=5, payload={})
    create(
        api,
        name="weekly-report",
        kind="CONTAINER",
        interval=10080,
        payload={"image": BUSYBOX, "command": ["echo", "report"]},
    )
    job = finished_job(api, backup["id"])
    assert job["status"] == "COMPLETED", job

    pages = [
        ("workflows", "/ui/workflows", page.get_by_role("link", name="nightly-backup")),
        (
            "workflow",
            f"/ui/workflows/{backup['id']}",
            page.get_by_role("heading", name="nightly-backup"),
        ),
        (
            "job",
            f"/ui/workflows/{backup['id']}/jobs/{job['id']}",
            page.locator("[data-log-state][data-state=ended]"),
        ),
        ("profile", "/ui/profile", page.get_by_role("heading", name="Profile")),
    ]
    for name, path, ready in pages:
        page.goto(path)
        expect(ready).to_be_visible()
        for scheme in SCHEMES:
            screenshot(page, name, scheme)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    for scheme in SCHEMES:
        screenshot(page, "login", scheme)
