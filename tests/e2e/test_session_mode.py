"""Model and permission mode from the composer, and the plan card, in a real
Chromium against the real stack (demo engine): bypass asks first; plan mode
brings a plan to send back with a comment, then to approve.

Its own browser context and workspace (acme/widgets#11) on the shared stack.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import Stack, record_frames, screenshot
from tests.e2e.test_webui import login, send, wait_results

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ISSUE_URL = "https://github.com/acme/widgets/issues/11"


@pytest.fixture(scope="module")
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    ctx = browser.new_context(base_url=stack.url, viewport={"width": 1280, "height": 860})
    ctx.set_default_timeout(15_000)
    p = ctx.new_page()
    record_frames(p, "mode")
    try:
        yield p
    finally:
        ctx.close()


def test_mode_with_bypass_confirmation_then_a_plan_sent_back_and_approved(page: Page) -> None:
    page.goto("/")
    login(page)
    page.get_by_label("New workspace from a GitHub issue").fill(ISSUE_URL)
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(re.compile(r"/w/[^/]+$"))
    expect(page.get_by_text("Ready to start")).to_be_visible(timeout=30_000)
    send(page, "hello")
    wait_results(page, 1)
    model = page.get_by_role("combobox", name="Model")
    mode = page.get_by_role("combobox", name="Permission mode")
    expect(model).to_have_value("demo")

    # The model: the demo offers two; the choice comes back through the log.
    model.select_option("demo-large")
    expect(model).to_have_value("demo-large")

    # Bypass: nothing happens before the confirmation; Cancel keeps the mode.
    mode.select_option("bypassPermissions")
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text("without asking")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    expect(mode).to_have_value("default")
    mode.select_option("bypassPermissions")
    page.get_by_role("alertdialog").get_by_role("button", name="Bypass permissions").click()
    expect(mode).to_have_value("bypassPermissions")

    # Plan mode: the demo answers with a plan card.
    mode.select_option("plan")
    expect(mode).to_have_value("plan")
    send(page, "rename the widget")
    card = page.get_by_test_id("plan-card")
    expect(card.locator("h1")).to_have_text("Demo plan")
    expect(card.locator("strong")).to_have_text("Read")
    screenshot(page, "plan-card")
    card.get_by_role("textbox", name=re.compile("send the plan back")).fill("tests first")
    card.get_by_role("button", name="Keep planning").click()
    expect(card).to_have_count(0)
    wait_results(page, 2)
    expect(page.get_by_test_id("assistant-message").last).to_contain_text("tests first")

    send(page, "again")
    card = page.get_by_test_id("plan-card")
    card.get_by_role("button", name="Approve plan").click()
    wait_results(page, 3)
    expect(page.get_by_test_id("assistant-message").last).to_contain_text("plan approved")
    # An approved plan leaves plan mode; the picker follows the engine.
    send(page, "thanks")
    wait_results(page, 4)
    expect(mode).to_have_value("default")
    expect(model).to_have_value("demo-large")
