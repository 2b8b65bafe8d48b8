"""The Changes and Files panels in Chromium, through relayd, on the demo engine's
small real repository: by role and label, desktop and phone."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import Stack, record_frames, screenshot
from tests.e2e.test_webui import login, send, wait_results

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PANELS_ISSUE = "https://github.com/acme/widgets/issues/14"
#: Records the text of every alert shown in the panels into window.panelAlerts.
PANEL_ALERTS = """() => {
  window.panelAlerts = [];
  new MutationObserver(() => {
    for (const el of document.querySelectorAll('[aria-label="Workspace panels"] [role=alert]'))
      if (!window.panelAlerts.includes(el.textContent)) window.panelAlerts.push(el.textContent);
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


@pytest.fixture(scope="module")
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    ctx = browser.new_context(base_url=stack.url, viewport={"width": 1400, "height": 860})
    ctx.set_default_timeout(20_000)
    p = ctx.new_page()
    record_frames(p, "panels")
    try:
        yield p
    finally:
        ctx.close()


def test_changes_and_files_beside_the_conversation(page: Page) -> None:
    page.goto("/")
    login(page)
    page.get_by_label("New workspace from a GitHub issue").fill(PANELS_ISSUE)
    # Every error the panels show from here on (a fresh workspace is "preparing", not one).
    page.evaluate(PANEL_ALERTS)
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(re.compile(r"/w/[^/]+$"))
    item = page.get_by_test_id("workspace-item").filter(has_text="acme/widgets#14")
    expect(item.get_by_test_id("status-badge")).to_have_attribute(
        "data-status", "idle", timeout=30_000
    )
    panels = page.get_by_role("complementary", name="Workspace panels")
    # No refresh asked for: the session going idle (its tree ready) refreshes.
    changes = panels.get_by_role("list", name="Changed files")
    expect(changes).to_contain_text("README.md")
    readme = changes.get_by_role("button", name="README.md")
    expect(readme).to_contain_text("uncommitted")
    app = changes.get_by_role("button", name="src/app.py")
    expect(app).to_contain_text("not pushed")
    assert page.evaluate("window.panelAlerts") == []
    app.click()
    diff = panels.get_by_role("region", name="Unified diff of src/app.py")
    expect(diff).to_contain_text("+def bye()")
    expect(diff.locator(".hljs-addition").first).to_be_visible()
    screenshot(page, "panel-changes")

    # A tool run (the demo's edit) refreshes the list without asking.
    send(page, "edit: a note for the panel")
    wait_results(page, 1)
    expect(changes.get_by_role("button", name="notes.md")).to_be_visible()

    # Commit & push in the demo: its origin is a bare repository in the workspace's directory.
    publish = panels.get_by_role("region", name="Commit, push and pull request")
    publish.get_by_label("Commit message").fill("Demo: a note for the panel")
    publish.get_by_role("button", name="Commit & push").click()
    expect(publish.get_by_text("Committed and pushed.")).to_be_visible()
    expect(changes.get_by_role("button", name="notes.md")).not_to_contain_text("uncommitted")
    expect(changes).not_to_contain_text("not pushed")
    # A pull request needs a GitHub token, which the demo VM has not.
    publish.get_by_role("button", name="Create pull request").click()
    expect(publish.get_by_role("alert")).to_contain_text("no GitHub token")

    panels.get_by_role("tab", name="Files").click()
    files = panels.get_by_role("navigation", name="Files")
    files.get_by_text("src/").click()
    files.get_by_role("button", name="src/app.py").click()
    content = panels.get_by_role("region", name="Content of src/app.py")
    expect(content).to_contain_text("def greet(name: str)")
    expect(content.locator(".hljs-keyword").first).to_be_visible()
    screenshot(page, "panel-files")


def test_the_phone_layout_shows_the_panels_as_tabs(page: Page) -> None:
    page.set_viewport_size({"width": 390, "height": 800})
    panels = page.get_by_role("complementary", name="Workspace panels")
    conversation = panels.get_by_role("tab", name="Conversation")
    expect(conversation).to_be_visible()
    conversation.click()
    expect(page.get_by_label("Message to Claude")).to_be_visible()
    expect(panels.get_by_role("list", name="Changed files")).to_be_hidden()
    panels.get_by_role("tab", name="Changes").click()
    expect(panels.get_by_role("list", name="Changed files")).to_be_visible()
    expect(panels.get_by_role("list", name="Changed files")).to_contain_text("notes.md")
    screenshot(page, "panel-phone")
    conversation.click()
    expect(page.get_by_label("Message to Claude")).to_be_visible()
