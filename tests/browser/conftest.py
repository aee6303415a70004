"""Fixtures of the browser tier: the whole stack on loopback, and Chromium driven by Playwright.

One stack of the five real service processes serves every test of the session (its own
database, topics and ports). pytest-playwright's fixtures are kept, with its launch settings
overridden: the browser is Debian's ``/usr/bin/chromium`` (``make services`` installs it with
apt; no browser build is ever downloaded). A missing Chromium fails the run under CI=true and
skips elsewhere, like any other missing service.

Every ``page`` fails its test on a console error or an uncaught page error, unless the test
declared that error expected (``console.allow``), e.g. the 404 of a page it asked for on purpose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from chronoverse.kafka.admin import ensure_topics
from chronoverse.settings import KafkaSettings
from tests.browser.ui import Account, ConsoleWatch, new_account, sign_up
from tests.conftest import unavailable
from tests.e2e.stack import ApiUser, Stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1280, "height": 800}
SERVICES = ("server", "scheduling-worker", "workflow-worker", "execution-worker", "log-processor")

# Pages render server-side, but a shared 2-core machine can be slow: wait up to 20 s for what a
# user would see.
expect.set_options(timeout=20_000)


# --- the stack ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def stack(
    environ: Mapping[str, str],
    empty_database_factory: Callable[..., str],
    migrated_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """The five service processes (registration open: bench.stack sets it), HTTP on loopback."""
    stack = Stack(
        environ,
        empty_database_factory(template=migrated_template),
        tmp_path_factory.mktemp("browser-stack"),
        label="browser",
        CHRONOVERSE_LEASE_S="4",
        CHRONOVERSE_STOP_GRACE_S="1",
        CHRONOVERSE_REAPER_INTERVAL_S="1",
        CHRONOVERSE_RETRY_BASE_DELAY_S="0.5",
        CHRONOVERSE_SSE_KEEPALIVE_S="1",
    )
    settings = KafkaSettings.from_environ(stack.env)
    ensure_topics(settings, settings.all_topics())
    try:
        for name in SERVICES:
            stack.start(name, name)
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture
def api_user(stack: Stack) -> Iterator[ApiUser]:
    """Another registered user, driven through the JSON API (set-up a test does not look at)."""
    user = ApiUser(stack.api)
    yield user
    user.close()


# --- the browser: pytest-playwright's fixtures, pointed at Debian's Chromium --------------------


@pytest.fixture(scope="session")
def base_url(stack: Stack) -> str:
    return stack.api


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not CHROMIUM.exists():
        unavailable("Chromium", FileNotFoundError(f"{CHROMIUM} is missing"))
    return {
        **browser_type_launch_args,
        "executable_path": str(CHROMIUM),
        "headless": True,
        "args": CHROMIUM_ARGS,
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    return {
        **browser_context_args,
        "viewport": VIEWPORT,
        "locale": "en-US",
        "timezone_id": "Europe/Paris",
    }


@pytest.fixture
def console() -> ConsoleWatch:
    return ConsoleWatch()


@pytest.fixture
def context(context: BrowserContext, console: ConsoleWatch) -> BrowserContext:
    return console.watch(context)


@pytest.fixture
def page(context: BrowserContext, console: ConsoleWatch) -> Iterator[Page]:
    """A page of a fresh context; the test fails on any console or page error it did not allow."""
    page = context.new_page()
    yield page
    unexpected = console.unexpected()
    assert not unexpected, "errors in the browser console:\n" + "\n".join(unexpected)


@pytest.fixture
def signed_in(page: Page) -> Account:
    """A new user, signed up through the UI; ``page`` holds its session."""
    account = new_account()
    sign_up(page, account)
    return account
