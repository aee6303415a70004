"""/docs in Chromium: Swagger UI renders the API's operations from vendored assets only."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, Request, expect

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(300)]


def test_docs_renders_the_operations_from_local_assets(page: Page, base_url: str) -> None:
    requested: list[str] = []

    def record(request: Request) -> None:
        requested.append(request.url)

    page.on("request", record)
    page.goto("/docs")

    expect(page.get_by_role("heading", name="Chronoverse")).to_be_visible()
    create = page.locator(".opblock-post").filter(has_text="/workflows").first
    expect(create).to_be_visible()
    expect(create.locator(".opblock-summary-method")).to_have_text("POST")
    expect(
        page.locator(".opblock-get").filter(has_text="/workflows/{workflow_id}").first
    ).to_be_visible()
    # Opening an operation shows its parameters and responses: the page is alive, not a picture.
    create.locator(".opblock-summary").click()
    expect(page.get_by_role("button", name="Try it out")).to_be_visible()

    off_site = [url for url in requested if not url.startswith((base_url, "data:"))]
    assert off_site == [], f"/docs loaded assets from elsewhere: {off_site}"
