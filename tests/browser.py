"""What a person sees in a browser: Playwright driving Debian's headless `chromium` (installed by .ci/run).

Playwright's own browser builds are not downloaded: it launches the system binary (`executable_path`), with
the flags a root user on this machine's closed network needs. `page()` opens one page whose console errors
and uncaught exceptions are collected in `page.errors` (a test asserts there are none where it should).
Waits are Playwright's (`goto` until load, `wait_for_selector`, `wait_for_function`, text locators).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

from support import scaled

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--hide-scrollbars"]
VIEWPORT = {"width": 1400, "height": 1000}


def chromium() -> str | None:
    """Debian's chromium, if installed."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


def missing() -> str | None:
    """Why no browser can be driven here, or None."""
    if chromium() is None:
        return "chromium is not installed (.ci/run installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (requirements.txt)"
    return None


@contextlib.contextmanager
def page(cookies: list[dict] | None = None) -> Iterator:
    """A fresh headless Chromium page (Playwright's `Page`) with `cookies`; `page.errors` collects the
    console's errors and uncaught exceptions. The browser is closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS, headless=True,
                                         timeout=scaled(60) * 1000)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.set_default_timeout(scaled(60) * 1000)
            if cookies:
                context.add_cookies(cookies)
            context.on("page", _watch)  # a page opened from it too (a link to a new tab)
            opened = context.new_page()
            yield opened
        finally:
            browser.close()


def _watch(opened) -> None:
    """Collect the page's console errors and uncaught exceptions in `opened.errors`."""
    errors: list[str] = []
    opened.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    opened.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    opened.errors = errors


def token_cookie(url: str, token: str) -> dict:
    """The Airflow UI's session: its `_token` cookie holds the API's access token."""
    return {"name": "_token", "value": token, "url": url}


def text(opened) -> str:
    return opened.inner_text("body")
