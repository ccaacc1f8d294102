"""A report opened in a real browser: Debian's Chromium driven by Playwright's Python package
(the system browser; no browser download). Skipped with the reason when either is missing;
in CI (STREAMCLI_REQUIRE_BROWSER=1, where .ci/run installs them) that is a failure instead."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str:
    found = next((p for p in map(shutil.which, CHROMIUM) if p), None)
    problem = None
    if found is None:
        problem = "Chromium is not installed (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "Playwright is not installed (pip install playwright)"
    if problem is not None:
        if os.environ.get("STREAMCLI_REQUIRE_BROWSER"):
            pytest.fail(f"a browser is required here (STREAMCLI_REQUIRE_BROWSER): {problem}")
        pytest.skip(problem)
    assert found is not None
    return found


def _open(path: Path, screenshot: Path | None) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    seen: dict[str, Any] = {"errors": [], "requests": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else 0)
            page.on("pageerror", lambda e: seen["errors"].append(str(e)))
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.goto(path.resolve().as_uri(), wait_until="load")
            page.wait_for_function(
                "Array.from(document.querySelectorAll('[data-chart]'))"
                ".every(d => d.querySelector('svg.main-svg'))",
                timeout=20_000,
            )
            seen["charts"] = page.evaluate(
                """Object.fromEntries(Array.from(document.querySelectorAll('[data-chart]')).map(
                    d => [d.dataset.chart, d.querySelectorAll('svg.main-svg g.trace').length]))"""
            )
            seen["figures"] = {
                key: json.loads(value)
                for key, value in page.evaluate(
                    """Array.from(document.querySelectorAll('[data-key]')).map(
                        c => [c.dataset.key, c.dataset.value])"""
                )
            }
            seen["shown"] = page.evaluate(
                "Array.from(document.querySelectorAll('[data-key]')).map(c => c.textContent)"
            )
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return seen


async def open_report(path: Path, screenshot: Path | None = None) -> dict[str, Any]:
    """What the browser saw: console errors, requests, traces per chart, the figures shown."""
    chromium_path()
    return await asyncio.to_thread(_open, path, screenshot)


def assert_report_matches(seen: dict[str, Any], path: Path, summary: dict[str, Any]) -> None:
    """No console error, no request but the file itself, every chart drawn, and every figure
    the summary table shows equal to the run's JSON summary."""
    assert seen["errors"] == [], seen["errors"]
    assert seen["requests"] == [path.resolve().as_uri()], seen["requests"]
    assert seen["charts"] and all(n > 0 for n in seen["charts"].values()), seen["charts"]
    assert all(text.strip() for text in seen["shown"])
    for key, value in seen["figures"].items():
        expected: Any = summary
        for part in key.split("."):
            expected = expected[part]
        assert value == expected, (key, value, expected)


def _open_page(path: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    seen: dict[str, Any] = {"errors": [], "requests": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("pageerror", lambda e: seen["errors"].append(str(e)))
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.goto(path.resolve().as_uri(), wait_until="load")
            page.wait_for_timeout(1500)
            seen["text"] = page.inner_text("body")
            seen["canvases"] = page.evaluate("document.querySelectorAll('canvas, svg').length")
        finally:
            browser.close()
    return seen


async def open_page(path: Path) -> dict[str, Any]:
    """Any page (Locust's report): its script errors, requests, text and drawing surfaces."""
    chromium_path()
    return await asyncio.to_thread(_open_page, path)
