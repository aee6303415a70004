"""Workflows in Chromium: create through the form, find and filter in the list, errors at their
field, terminate through the confirm dialog, and another user's workflow is a 404 page."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.browser.ui import (
    Account,
    ConsoleWatch,
    counting_script,
    create_container_workflow,
)
from tests.e2e.stack import ApiUser

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(300)]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_create_a_container_workflow_then_find_it_and_filter_the_list(
    page: Page, signed_in: Account
) -> None:
    countdown = unique("countdown")
    workflow_id = create_container_workflow(page, countdown, counting_script(3, 0.1))
    # The workflow page shows what was typed.
    expect(page.get_by_text("local/busybox:latest").first).to_be_visible()
    other = unique("nightly")
    create_container_workflow(page, other, "echo hi")

    page.goto("/ui/workflows")
    rows = page.get_by_role("row")
    expect(page.get_by_role("link", name=countdown, exact=True)).to_be_visible()
    expect(page.get_by_role("link", name=other, exact=True)).to_be_visible()

    page.get_by_label("Search by name").fill(countdown)
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(rf"[?&]name={countdown}"))
    expect(page.get_by_role("link", name=countdown, exact=True)).to_be_visible()
    expect(page.get_by_role("link", name=other, exact=True)).to_have_count(0)

    # Filters combine, and live in the URL: reloading it shows the same list.
    page.get_by_label("Kind", exact=True).select_option("HEARTBEAT")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"kind=HEARTBEAT"))
    expect(page.get_by_text("No workflow matches these filters.")).to_be_visible()
    page.get_by_label("Kind", exact=True).select_option("CONTAINER")
    page.get_by_role("button", name="Filter").click()
    # The filtered page has loaded before it is reloaded (a reload during the navigation the
    # click started finds no page to reload).
    expect(page).to_have_url(re.compile(r"kind=CONTAINER"))
    page.wait_for_load_state()
    page.reload()
    expect(page.get_by_label("Kind", exact=True)).to_have_value("CONTAINER")
    expect(page.get_by_label("Search by name")).to_have_value(countdown)
    expect(rows.filter(has=page.get_by_role("link", name=countdown))).to_have_count(1)

    # A counter filters when clicked.
    page.goto("/ui/workflows")
    page.get_by_role("navigation", name="Workflows by state").get_by_role(
        "link", name=re.compile(r"Active$")
    ).click()
    expect(page).to_have_url(re.compile(r"state=active"))
    expect(page.get_by_role("link", name=countdown, exact=True)).to_be_visible()
    page.get_by_role("link", name=countdown, exact=True).click()
    expect(page).to_have_url(re.compile(rf"/ui/workflows/{workflow_id}$"))


def test_a_validation_error_is_shown_at_its_field(
    page: Page, signed_in: Account, console: ConsoleWatch
) -> None:
    console.allow(r"status of 422")
    page.goto("/ui/workflows/new")
    page.get_by_label("Name", exact=True).fill(unique("bad-interval"))
    page.get_by_label("Interval (minutes)").fill("0")
    page.get_by_role("button", name="Create").click()

    interval = page.get_by_label("Interval (minutes)")
    expect(interval).to_have_attribute("aria-invalid", "true")
    error = page.locator("[data-field-error=interval]")
    expect(error).to_be_visible()
    expect(interval).to_have_accessible_description(re.compile(re.escape(error.inner_text())))
    # The other fields keep what was typed, and carry no error.
    expect(page.get_by_label("Name", exact=True)).not_to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Name", exact=True)).to_have_value(re.compile("^bad-interval-"))


def test_terminate_through_the_confirm_dialog(page: Page, signed_in: Account) -> None:
    name = unique("to-terminate")
    create_container_workflow(page, name, "echo bye")
    actions = page.get_by_role("group", name="Workflow actions")
    dialog = page.get_by_role("dialog")

    # Asked first; cancelled, nothing happens.
    actions.get_by_role("button", name="Terminate").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"Terminate “{name}”?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    page.reload()
    expect(page.locator("[data-state=active]")).to_be_visible()

    actions.get_by_role("button", name="Terminate").click()
    dialog.get_by_role("button", name="Terminate").click()
    expect(page.locator("[data-state=terminated]")).to_be_visible()
    expect(page.locator("[data-terminated]")).to_be_visible()
    expect(page.get_by_role("button", name="Run now")).to_have_count(0)


def test_another_users_workflow_is_a_404_page(
    page: Page, signed_in: Account, api_user: ApiUser, console: ConsoleWatch
) -> None:
    theirs = api_user.create(
        name="not-yours", kind="CONTAINER", interval=10080, payload={"image": "local/busybox"}
    )
    console.allow(r"status of 404")

    for path in (f"/ui/workflows/{theirs['id']}", f"/ui/workflows/{theirs['id']}/edit"):
        response = page.goto(path)
        assert response is not None and response.status == 404, path
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        expect(page.get_by_text("not-yours")).to_have_count(0)
