"""Headless Chromium (Debian's ``chromium``) driven by Playwright, once per test module.

Every page opened through ``pages`` records console errors and uncaught exceptions; a test ends
by asserting there were none. Screenshots go to ``test-artifacts/web/`` (git-ignored).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from pathlib import Path

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    async_playwright,
    expect,
)

# How long an ``expect`` waits for the page to show something before failing (Playwright's
# default is 5 s). It bounds only failure: a page behind a socket push, rendered by Chromium on a
# busy 2-core machine next to other suites, can take longer than that to show it.
expect.set_options(timeout=30_000)

CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
# Every page reports what the Content-Security-Policy blocked as a console error (Chromium logs
# most violations itself; this also names the directive and the blocked URL), and keeps them in
# ``window.__cspViolations``.
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  const seen = `${event.violatedDirective} blocked ${event.blockedURI || "inline"} ` +
               `at ${event.sourceFile}:${event.lineNumber}`;
  window.__cspViolations.push(seen);
  console.error(`CSP violation: ${seen}`);
});
"""
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 860}


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is required (make browser-deps)"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


class Pages:
    """Opens pages in fresh browser contexts (separate people) and watches their consoles."""

    def __init__(self, browser: Browser, test_name: str) -> None:
        self.browser = browser
        self.contexts: list[BrowserContext] = []
        self.errors: list[str] = []
        self.allowed: set[str] = set()
        self.artifacts = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]", "_", test_name)

    async def open(self, url: str, viewport: dict[str, int] = PHONE,
                   init_script: str | None = None,
                   setup: Callable[[BrowserContext], Awaitable[None]] | None = None) -> Page:
        """``init_script`` runs in the page before any of its own scripts (instrumentation);
        ``setup`` prepares the person's browser before the page loads (e.g. routes)."""
        context = await self.browser.new_context(viewport=viewport)  # type: ignore[arg-type]
        self.contexts.append(context)
        await context.add_init_script(CSP_WATCH)
        if init_script:
            await context.add_init_script(init_script)
        if setup:
            await setup(context)
        page = await context.new_page()
        label = url.split("#", 1)[0]

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error" and message.text not in self.allowed:
                self.errors.append(f"{label}: console: {message.text}")

        def on_page_error(error: Error) -> None:
            self.errors.append(f"{label}: pageerror: {error}")

        page.on("console", on_console)
        page.on("pageerror", on_page_error)
        await page.goto(url)
        return page

    def allow_refusal(self, status: int) -> None:
        """The test makes the server refuse a request with ``status`` on purpose (the page shows
        why): Chromium logs every HTTP error response as a console error, which is then no
        fault of the page."""
        self.allowed.add(
            f"Failed to load resource: the server responded with a status of {status} "
            f"({HTTPStatus(status).phrase})")

    async def shot(self, page: Page, name: str) -> None:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(self.artifacts / f"{name}.png"), full_page=True)

    def assert_clean(self) -> None:
        assert self.errors == [], "\n".join(self.errors)

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


@pytest.fixture
async def pages(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Pages]:
    opened = Pages(browser, request.node.name)
    try:
        yield opened
    finally:
        await opened.close()
