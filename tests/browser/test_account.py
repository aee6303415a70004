"""Accounts in Chromium: sign up, sign out, log in again, and forms refused without a CSRF token."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.ui import Account, ConsoleWatch, log_in, new_account, sign_up

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(300)]


def test_sign_up_sign_out_and_log_in_again(page: Page) -> None:
    account = new_account()
    sign_up(page, account)
    expect(page).to_have_url(re.compile(r"/ui/workflows$"))

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/ui/login"))
    # The session is revoked: a page that needs one sends the visitor to the login page, and
    # back to that page once logged in.
    page.goto("/ui/profile")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    log_in(page, account)
    expect(page).to_have_url(re.compile(r"/ui/profile$"))
    expect(page.get_by_text(account.email).first).to_be_visible()


def test_a_wrong_password_is_refused_on_the_login_page(page: Page, console: ConsoleWatch) -> None:
    account = new_account()
    sign_up(page, account)
    page.get_by_role("button", name="Sign out").click()
    console.allow(r"status of 401")  # the login page answers 401 with the form again

    page.goto("/ui/login")
    page.get_by_label("Email", exact=True).fill(account.email)
    page.get_by_label("Password", exact=True).fill("not the password")
    page.get_by_role("button", name="Log in").click()

    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    expect(page.get_by_label("Email", exact=True)).to_have_value(account.email)
    assert not [c for c in page.context.cookies() if c["name"] == "cv_session"]


def test_a_sign_up_error_is_shown_at_its_field(page: Page, console: ConsoleWatch) -> None:
    console.allow(r"status of 422")
    page.goto("/ui/signup")
    page.get_by_label("Email", exact=True).fill("not-an-email")
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_role("button", name="Sign up").click()

    email = page.get_by_label("Email", exact=True)
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_text("must be an email address")).to_be_visible()
    expect(page.get_by_text("must be 8 to 1024 characters")).to_be_visible()


def test_a_form_without_its_csrf_token_is_refused(
    page: Page, signed_in: Account, console: ConsoleWatch
) -> None:
    console.allow(r"status of 403")
    page.goto("/ui/profile")
    # The sign-out form, posted as a forged page would: without the hidden csrf_token field.
    form = page.locator("form").filter(has=page.get_by_role("button", name="Sign out")).first
    form.locator("input[name=csrf_token]").evaluate("input => input.remove()")
    form.get_by_role("button", name="Sign out").click()

    expect(page.get_by_role("heading", name="Forbidden")).to_be_visible()
    # Still signed in: the refused request changed nothing.
    page.goto("/ui/profile")
    expect(page.get_by_text(signed_in.email).first).to_be_visible()

    # The same without a browser form: a request carrying the cookie but no token.
    response = page.request.post("/ui/logout", form={"next": "/ui/"}, max_redirects=0)
    assert response.status == 403
    page.goto("/ui/profile")
    expect(page.get_by_text(signed_in.email).first).to_be_visible()


def test_pages_need_a_session(page: Page) -> None:
    page.goto("/ui/workflows?kind=CONTAINER")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    account = new_account()
    # Signing up from there lands on the page first asked for.
    page.get_by_role("main").get_by_role("link", name="Sign up").click()
    page.get_by_label("Email", exact=True).fill(account.email)
    page.get_by_label("Password", exact=True).fill(account.password)
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(re.compile(r"/ui/workflows\?kind=CONTAINER$"))
