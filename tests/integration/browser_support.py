"""A real browser for the web UI's tests: Debian's chromium driven by Playwright for Python
(Playwright's own browser download is never used), and the accessibility check, axe-core as
axe-playwright-python ships it, run inside the page."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def launch() -> Iterator[Any]:
    """A headless chromium, for a module's tests. Playwright's sync API keeps an asyncio loop
    running in the main thread while it is open, so `asyncio.run` in any other test would fail
    meanwhile: the browser lives as long as the module using it, not the whole run."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("the web UI's tests need a browser: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the web UI's tests need Playwright: .venv/bin/pip install playwright")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def accessibility_violations(page: Any) -> list[str]:
    """What axe-core finds wrong with the page as it stands (WCAG A and AA rules), one line
    per violation and element."""
    try:
        from axe_playwright_python.sync_playwright import Axe
    except ImportError:
        pytest.fail("the web UI's tests need axe-core: .venv/bin/pip install axe-playwright-python")
    options = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21aa"]}}
    results = Axe().run(page, options=options)
    found = []
    for violation in results.response["violations"]:
        for node in violation["nodes"]:
            found.append(f"{violation['id']}: {violation['help']}: {node['target']}")
    return found
