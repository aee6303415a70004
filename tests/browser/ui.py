"""What the browser tests do as a user would: sign up, log in, watch the console, take screenshots.

Pages are found by their labels and roles (the issue's words: "Email", "Password", "Log in",
"Sign up"), never by CSS paths.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from playwright.sync_api import BrowserContext, ConsoleMessage, Page, WebError, expect

from tests.conftest import ROOT
from tests.e2e.stack import Stack

IMAGES = ROOT / "docs" / "images"
PASSWORD = "correct horse battery"


@dataclass(frozen=True, kw_only=True)
class Account:
    email: str
    password: str = PASSWORD


def new_account() -> Account:
    return Account(email=f"web-{uuid.uuid4().hex[:10]}@example.com")


def log_in(page: Page, account: Account) -> None:
    """Log in on the login page (this one, when a page sent the user there); waits until it is
    left."""
    if "/ui/login" not in page.url:
        page.goto("/ui/login")
    page.get_by_label("Email", exact=True).fill(account.email)
    page.get_by_label("Password", exact=True).fill(account.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/ui/login" not in url)


def sign_up(page: Page, account: Account) -> None:
    """Sign up on /ui/signup, then log in unless signing up already signed the user in."""
    page.goto("/ui/signup")
    page.get_by_label("Email", exact=True).fill(account.email)
    page.get_by_label("Password", exact=True).fill(account.password)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(lambda url: "/ui/signup" not in url)
    if "/ui/login" in page.url:
        log_in(page, account)


class ConsoleWatch:
    """Collects the console errors and uncaught page errors of the contexts it watches."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._allowed: list[re.Pattern[str]] = []

    def watch(self, context: BrowserContext) -> BrowserContext:
        context.on("console", self._on_console)
        context.on("weberror", self._on_web_error)
        return context

    def allow(self, pattern: str) -> None:
        """Expect errors matching ``pattern`` (a regular expression): a test's deliberate 404."""
        self._allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self._allowed)]

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} (at {message.location.get('url')})")

    def _on_web_error(self, error: WebError) -> None:
        self.errors.append(f"page error: {error.error}")


def restart_server(stack: Stack) -> None:
    """SIGKILL the HTTP server (every open connection drops), then start it on the same port."""
    stack.kill("server")
    stack.start("server", "server")


def screenshot(page: Page, name: str, scheme: Literal["light", "dark"]) -> Path:
    """Write docs/images/<name>-<scheme>.png: the viewport, in that color scheme."""
    page.emulate_media(color_scheme=scheme)
    IMAGES.mkdir(parents=True, exist_ok=True)
    path = IMAGES / f"{name}-{scheme}.png"
    page.screenshot(path=path, animations="disabled", caret="hide")
    return path


# --- workflows, through the UI -----------------------------------------------------------------

BUSYBOX = "local/busybox:latest"
# A cron schedule that does not fire during a test: the only jobs are the ones it starts.
YEARLY = "0 3 1 1 *"


def counting_script(lines: int, pause_s: float) -> str:
    """A busybox shell script printing ``line 1`` ... ``line N``, one every ``pause_s``."""
    return f'for i in $(seq 1 {lines}); do echo "line $i"; sleep {pause_s}; done'


def create_container_workflow(page: Page, name: str, script: str) -> str:
    """Create a CONTAINER workflow through the "New workflow" form; its id (from the page URL)."""
    page.goto("/ui/workflows")
    page.get_by_role("link", name="New workflow").click()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Kind", exact=True).select_option("CONTAINER")
    page.get_by_role("radio", name="Cron expression").check()
    page.get_by_role("textbox", name="Cron expression").fill(YEARLY)
    page.get_by_label("Time zone", exact=True).fill("Europe/Paris")
    page.get_by_label("Image", exact=True).fill(BUSYBOX)
    page.get_by_label("Command", exact=True).fill("sh\n-c")
    page.get_by_label("Args", exact=True).fill(script)
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
    return page.url.split("/ui/workflows/", 1)[1].split("?")[0].split("#")[0]


def wait_until_built(page: Page, timeout_s: float = 90) -> None:
    """Reload the workflow page, as a user would, until its build shows COMPLETED."""
    deadline = time.monotonic() + timeout_s
    while page.get_by_text("COMPLETED", exact=True).count() == 0:
        assert time.monotonic() < deadline, f"the build did not complete in {timeout_s}s"
        time.sleep(0.5)
        page.reload()
