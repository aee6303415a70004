"""The shell of every page in Chromium: the profile (preference, API tokens), the notifications
drawer with its unread badge, the remembered theme, and times in the reader's timezone."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from uuid import UUID

import httpx
import psycopg
import pytest
from playwright.sync_api import Page, expect
from psycopg.rows import dict_row

from chronoverse import alerts
from tests.browser.ui import Account
from tests.e2e.stack import Stack
from tests.factories import make_workflow

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(300)]


def session_token(page: Page) -> str:
    [cookie] = [c for c in page.context.cookies() if c["name"] == "cv_session"]
    return cookie["value"]


def api_status(stack: Stack, token: str) -> int:
    return httpx.get(
        f"{stack.api}/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=30
    ).status_code


def test_preference_and_api_tokens(page: Page, signed_in: Account, stack: Stack) -> None:
    page.goto("/ui/profile")
    expect(page.get_by_text(signed_in.email).first).to_be_visible()

    preference = page.get_by_label("Notification preference")
    expect(preference).to_have_value("ALERTS")
    preference.select_option("ALL")
    page.get_by_role("button", name="Save preference").click()
    expect(page.get_by_role("status")).to_have_text("Notification preference saved.")
    expect(page.get_by_label("Notification preference")).to_have_value("ALL")

    page.get_by_label("Token name").fill("ci")
    page.get_by_role("button", name="Create token").click()
    shown = page.get_by_label("New token")
    expect(shown).to_have_value(re.compile(r"^cv_"))
    token = shown.input_value()
    assert api_status(stack, token) == 200

    page.goto("/ui/profile")  # shown once: never again
    expect(page.get_by_label("New token")).to_have_count(0)
    page.get_by_role("button", name=re.compile(r"^Revoke ci ")).click()
    expect(page.get_by_role("status")).to_have_text("Token revoked.")
    expect(page.get_by_role("button", name=re.compile(r"^Revoke ci "))).to_have_count(0)
    assert api_status(stack, token) == 401
    # The session itself is listed, and marked.
    expect(page.get_by_text("this session")).to_be_visible()


def test_notifications_drawer(page: Page, signed_in: Account, stack: Stack) -> None:
    me = httpx.get(
        f"{stack.api}/users/me",
        headers={"Authorization": f"Bearer {session_token(page)}"},
        timeout=30,
    ).json()
    with psycopg.connect(stack.env["CHRONOVERSE_DATABASE_URL"], row_factory=dict_row) as tx:
        workflow_id = make_workflow(tx, UUID(me["id"]))
        state = alerts.WorkflowState(
            id=workflow_id,
            user_id=UUID(me["id"]),
            name="nightly",
            health=alerts.Health.FAILING,
            consecutive_failures=3,
        )
        decided = alerts.decide_all(
            [alerts.Terminated(workflow=state, reason="3 failures in a row", by_user=False)],
            public_url=stack.api,
            now=datetime.now(UTC),
        )
        alerts.write(tx, decided)

    page.goto("/ui/profile")
    badge = page.locator("[data-unread-badge]")
    expect(badge).to_be_visible()
    expect(badge).to_contain_text("1 unread")

    toggle = page.get_by_role("button", name="Notifications")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    drawer = page.get_by_role("complementary", name="Notifications")
    expect(drawer).to_be_visible()
    link = drawer.get_by_role("link").first
    expect(link).to_have_attribute("href", f"/ui/workflows/{workflow_id}")
    expect(drawer.get_by_text("unread", exact=True)).to_be_visible()

    drawer.get_by_role("button", name="Mark all read").click()
    expect(drawer.get_by_text("unread", exact=True)).to_have_count(0)
    expect(badge).to_be_hidden()

    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")


def test_the_theme_toggle_is_remembered(page: Page, signed_in: Account) -> None:
    page.emulate_media(color_scheme="light")
    page.goto("/ui/profile")
    root = page.locator("html")
    light = root.evaluate("el => getComputedStyle(document.body).backgroundColor")
    toggle = page.get_by_role("button", name="Switch between dark and light")
    expect(toggle).to_have_attribute("aria-pressed", "false")

    toggle.click()
    expect(root).to_have_attribute("data-theme", "dark")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    dark = root.evaluate("el => getComputedStyle(document.body).backgroundColor")
    assert dark != light

    page.reload()  # remembered, against the system's light scheme
    expect(root).to_have_attribute("data-theme", "dark")
    assert root.evaluate("el => getComputedStyle(document.body).backgroundColor") == dark
    toggle = page.get_by_role("button", name="Switch between dark and light")
    toggle.click()
    page.reload()
    expect(root).to_have_attribute("data-theme", "light")


def test_times_state_the_readers_timezone(page: Page, signed_in: Account) -> None:
    page.goto("/ui/profile")
    when = page.locator("time[data-local-time]").first
    # The context's timezone is Europe/Paris: UTC+1 or +2, named; the UTC text is the tooltip.
    expect(when).to_have_text(re.compile(r"^\d\d/\d\d/\d{4}, \d\d:\d\d:\d\d GMT\+[12]$"))
    expect(when).to_have_attribute("title", re.compile(r" UTC$"))
