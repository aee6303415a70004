"""The workflows pages' own behaviour in Chromium: the form shows the chosen kind's and schedule's
inputs and previews the next runs as the user types; the workflow page counts down to its next
runs in the reader's time zone; edit keeps masked secrets; Delete asks first."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.browser.ui import YEARLY, Account

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(300)]


def test_the_form_follows_the_kind_and_previews_the_schedule(
    page: Page, signed_in: Account
) -> None:
    page.goto("/ui/workflows/new")
    endpoint, image = page.get_by_label("Endpoint", exact=True), page.get_by_label("Image")
    expect(endpoint).to_be_visible()
    expect(image).to_be_hidden()
    page.get_by_label("Kind", exact=True).select_option("CONTAINER")
    expect(image).to_be_visible()
    expect(endpoint).to_be_hidden()

    # The preview loads with the page (every 5 minutes), then follows what is typed.
    preview = page.locator("[data-schedule-preview]")
    expect(preview.locator("li")).to_have_count(5)
    cron = page.get_by_role("textbox", name="Cron expression")
    expect(cron).to_be_hidden()
    page.get_by_role("radio", name="Cron expression").check()
    expect(cron).to_be_visible()
    cron.fill("61 * * * *")
    expect(preview.locator("[data-preview-errors]")).to_contain_text("cron")
    cron.fill("30 2 * * *")
    page.get_by_label("Time zone", exact=True).fill("Asia/Tokyo")
    expect(preview.locator("li")).to_have_count(5)
    expect(preview).to_contain_text("JST")
    # Times are the reader's (the browser runs in Europe/Paris), each naming its zone.
    expect(preview.locator("time").first).not_to_contain_text("UTC")


def test_the_workflow_page_counts_down_and_delete_asks_first(
    page: Page, signed_in: Account
) -> None:
    name = f"countdown-{uuid.uuid4().hex[:6]}"
    page.goto("/ui/workflows/new")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Interval (minutes)").fill("10080")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()

    expect(page.locator("[data-local-zone]")).to_have_text("Europe/Paris")
    countdown = page.locator("[data-countdown]").first
    expect(countdown).to_have_text(re.compile(r"^\(in \d+d \d+h\)$"))
    runs = page.locator("#next-runs li")
    expect(runs).to_have_count(5)

    delete = page.get_by_role("button", name="Delete")
    delete.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(name)
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()

    delete.click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page).to_have_url(re.compile(r"/ui/workflows$"))
    expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)


def test_edit_keeps_masked_secrets(page: Page, signed_in: Account) -> None:
    name = f"secrets-{uuid.uuid4().hex[:6]}"
    page.goto("/ui/workflows/new")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Kind", exact=True).select_option("CONTAINER")
    page.get_by_role("radio", name="Cron expression").check()
    page.get_by_role("textbox", name="Cron expression").fill(YEARLY)
    page.get_by_label("Image", exact=True).fill("local/busybox:latest")
    page.get_by_label("Environment").fill("TOKEN=very-secret")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
    expect(page.get_by_text("very-secret")).to_have_count(0)

    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Environment")).to_have_value("TOKEN=***")
    page.get_by_label("Name", exact=True).fill(f"{name}-renamed")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name=f"{name}-renamed", exact=True)).to_be_visible()
    expect(page.locator("[data-payload]")).to_contain_text('"TOKEN": "***"')
