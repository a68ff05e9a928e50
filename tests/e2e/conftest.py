"""Browser tests: Debian's Chromium driven by Playwright against a live Django server.

Playwright's own browser download is not used (no network at run time): the launch points at
``CHROMIUM`` (default /usr/bin/chromium, installed by .ci/run). Without it the tests are skipped
with the reason; CI always has it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
# Flags from the machine notes: no background networking or component updates on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def pytest_collection_modifyitems(items):
    if Path(CHROMIUM).exists():
        return
    skip = pytest.mark.skip(reason=f"no Chromium at {CHROMIUM} (set CHROMIUM or install chromium)")
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    """Playwright's sync API keeps an event loop in this thread; Django refuses ORM calls from a
    thread with a running loop unless told that this is deliberate. Set per test and undone
    after it, so no other test runs with the safeguard off."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def browser():
    """A fresh Chromium for each test, closed at its end: Playwright's sync API holds an event
    loop in the main thread while it runs, and that loop must be gone before the database is
    cleaned up and before the next (non-browser) test touches the ORM."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(locale="en-GB", timezone_id="Europe/London")
    page = context.new_page()
    page.set_default_timeout(15_000)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs  # a script that ran where only text belongs would open one
    yield page
    context.close()
