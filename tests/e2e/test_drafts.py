"""Drafts in a real Chromium against the real stack (demo engine): what is
typed in a session's composer and not sent stays with that session when
switching tabs and after a reload, and is gone once sent. Its own browser
context and workspace (acme/widgets#43) on the shared stack."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import Stack
from tests.e2e.test_webui import composer, login, wait_results

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

DRAFTS_ISSUE = "https://github.com/acme/widgets/issues/43"


@pytest.fixture(scope="module")
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    ctx = browser.new_context(base_url=stack.url, viewport={"width": 1280, "height": 860})
    ctx.set_default_timeout(15_000)
    p = ctx.new_page()
    try:
        yield p
    finally:
        ctx.close()


def test_a_draft_stays_with_its_session_until_sent(page: Page) -> None:
    page.goto("/")
    login(page)
    page.get_by_label("New workspace from a GitHub issue").fill(DRAFTS_ISSUE)
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(re.compile(r"/w/[^/]+$"))
    expect(composer(page)).to_be_enabled(timeout=30_000)
    composer(page).fill("a thought for the first session")

    page.get_by_role("button", name="New session").click()
    expect(page).to_have_url(re.compile(r"/w/[^/]+/s/s_[0-9a-f]{32}$"))
    expect(composer(page)).to_be_enabled(timeout=30_000)
    expect(composer(page)).to_have_value("")
    composer(page).fill("another for the second")

    tabs = page.get_by_role("tablist", name="Sessions")
    tabs.get_by_role("tab", name="Session 1").click()
    expect(composer(page)).to_have_value("a thought for the first session")
    page.reload()
    expect(composer(page)).to_have_value("a thought for the first session")
    tabs.get_by_role("tab", name="Session 2").click()
    expect(composer(page)).to_have_value("another for the second")

    # Sent: gone, after a reload too; the other session's stays.
    composer(page).press("Enter")
    wait_results(page, 1)
    expect(composer(page)).to_have_value("")
    page.reload()
    expect(composer(page)).to_be_enabled()
    expect(composer(page)).to_have_value("")
    tabs.get_by_role("tab", name="Session 1").click()
    expect(composer(page)).to_have_value("a thought for the first session")
