"""Headless Chromium for the page tests: Debian's ``chromium`` driven by Playwright for Python.

Playwright is pointed at the system browser (``executable_path``); it never downloads one. When
Chromium or Playwright is missing the browser tests skip with a one-line reason, except in CI
(``CI=true``), where they fail: CI must install it (``.ci/run`` does, with apt).
``FRAMEREEL_CHROMIUM`` picks another binary. ``FRAMEREEL_SCREENSHOTS=DIR`` also copies each
page's screenshot into DIR (``FRAMEREEL_SCREENSHOTS=docs`` refreshes the README's pictures).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("FRAMEREEL_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu",
        "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required"]


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "browser tests need Playwright for Python (pip install playwright)"
    if not Path(CHROMIUM).exists():
        return f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = _missing()
    if reason:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{reason}: CI must provide it", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A page that records what a user would not want: script errors and JavaScript dialogs."""

    def __init__(self, browser, **context):
        self.context = browser.new_context(**{"viewport": {"width": 1360, "height": 880}, **context})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def screenshot(self, path: Path, name: str | None = None, **kw) -> Path:
        """Save a screenshot at ``path`` (the test's temp folder); ``name``: also copy it there."""
        self.page.screenshot(path=str(path), **kw)
        target = os.environ.get("FRAMEREEL_SCREENSHOTS")
        if target and name:
            Path(target).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(target) / name)
        return path

    def close(self) -> None:
        self.context.close()


def wait_until(page, script: str, arg=None, timeout: float = 30.0):
    """Poll ``script`` (a JS function of one argument) until it returns something truthy. Unlike
    ``page.wait_for_function`` this works under the pages' Content-Security-Policy (no eval)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(script, arg)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {script}")
        page.wait_for_timeout(100)
