"""The Terminal panel in Chromium, through relayd, to a real PTY on the demo
VM: typing runs in the shell, a resize reaches the PTY, closing the tab ends
the shell."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.e2e.conftest import Stack, record_frames, screenshot
from tests.e2e.test_webui import login
from tests.vmagent.test_terminals import _alive

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

TERMINAL_ISSUE = "https://github.com/acme/widgets/issues/41"


@pytest.fixture(scope="module")
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    ctx = browser.new_context(base_url=stack.url, viewport={"width": 1400, "height": 860})
    ctx.set_default_timeout(20_000)
    p = ctx.new_page()
    record_frames(p, "terminal")
    try:
        yield p
    finally:
        ctx.close()


def line(term: Locator, pattern: str) -> Locator:
    """The terminal's screen row that is exactly ``pattern`` (a regex)."""
    return term.locator(".xterm-rows > div").filter(has_text=re.compile(rf"^\s*{pattern}\s*$"))


def run(page: Page, term: Locator, command: str) -> None:
    term.locator(".xterm-helper-textarea").focus()
    page.keyboard.type(command)
    page.keyboard.press("Enter")


def test_a_terminal_in_the_workspace(page: Page) -> None:
    page.goto("/")
    login(page)
    page.get_by_label("New workspace from a GitHub issue").fill(TERMINAL_ISSUE)
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(re.compile(r"/w/[^/]+$"))
    item = page.get_by_test_id("workspace-item").filter(has_text="acme/widgets#41")
    expect(item.get_by_test_id("status-badge")).to_have_attribute(
        "data-status", "idle", timeout=30_000
    )
    panels = page.get_by_role("complementary", name="Workspace panels")
    panels.get_by_role("tab", name="Terminal").click()
    panels.get_by_role("button", name="New terminal").click()
    term = panels.get_by_role("region", name="Terminal 1")
    # The shell's prompt: it is ready.
    expect(term.locator(".xterm-rows")).to_contain_text(re.compile(r"[#$]"))

    # The product is the shell's: "42" is not in what was typed.
    run(page, term, "echo $((6*7))")
    expect(line(term, "42")).to_have_count(1)
    # In the workspace's working directory.
    workspace_id = page.url.rsplit("/", 1)[1]
    run(page, term, f"echo cwd-$(pwd | grep -c {workspace_id[:8]})-$((1+1))")
    expect(line(term, "cwd-1-2")).to_have_count(1)
    screenshot(page, "panel-terminal")

    run(page, term, "echo size=$(stty size)")
    first = line(term, r"size=\d+ \d+")
    expect(first).to_have_count(1)
    before = first.inner_text().strip()
    page.set_viewport_size({"width": 1100, "height": 620})
    run(page, term, "clear; echo size=$(stty size)")
    after = line(term, r"size=\d+ \d+")
    expect(after).not_to_have_text(before)
    expect(after).to_have_count(1)

    # A second terminal is its own shell; the first keeps its screen.
    panels.get_by_role("button", name="New terminal").click()
    second = panels.get_by_role("region", name="Terminal 2")
    expect(second.locator(".xterm-rows")).to_contain_text(re.compile(r"[#$]"))
    run(page, second, "echo second-$((2+3))")
    expect(line(second, "second-5")).to_have_count(1)
    panels.get_by_role("tab", name="Terminal 1").click()
    expect(term.locator(".xterm-rows")).to_contain_text("size=")

    run(page, term, "echo pid=$$")
    shown = line(term, r"pid=\d+")
    expect(shown).to_have_count(1)
    pid = int(shown.inner_text().strip().split("=", 1)[1])
    assert _alive(pid)
    panels.get_by_role("button", name="Close Terminal 1").click()
    expect(term).to_have_count(0)
    deadline = time.monotonic() + 15
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)


PHONE_TERMINAL_ISSUE = "https://github.com/acme/widgets/issues/42"


def page_width(p: Page) -> dict[str, int]:
    """How wide the page is laid out, and the screen's width."""
    widths: dict[str, int] = p.evaluate(
        "() => ({doc: document.documentElement.scrollWidth, body: document.body.scrollWidth,"
        " view: window.innerWidth})"
    )
    return widths


def test_a_terminal_on_a_phone(browser: Browser, stack: Stack) -> None:
    ctx = browser.new_context(
        base_url=stack.url, viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True
    )
    ctx.set_default_timeout(20_000)
    try:
        phone = ctx.new_page()
        phone.goto("/")
        login(phone)
        phone.get_by_label("New workspace from a GitHub issue").fill(PHONE_TERMINAL_ISSUE)
        phone.get_by_role("button", name="Create").click()
        expect(phone).to_have_url(re.compile(r"/w/[^/]+$"))
        expect(phone.get_by_role("textbox", name="Message to Claude")).to_be_enabled(timeout=30_000)
        panels = phone.get_by_role("complementary", name="Workspace panels")
        panels.get_by_role("tab", name="Terminal").tap()
        panels.get_by_role("button", name="New terminal").tap()
        term = panels.get_by_role("region", name="Terminal 1")
        expect(term.locator(".xterm-rows")).to_contain_text(re.compile(r"[#$]"))
        box = term.bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 375 + 0.5, box
        assert box["height"] >= 120, box  # rows enough to read what a command says
        # Typed on the phone's keyboard after a tap on the screen.
        term.locator(".xterm-screen").tap()
        phone.keyboard.type("echo phone-$((6*7))")
        phone.keyboard.press("Enter")
        expect(line(term, "phone-42")).to_have_count(1)
        # The PTY is as wide as the phone's terminal, not the desktop's.
        phone.keyboard.type("echo cols=$(tput cols)")
        phone.keyboard.press("Enter")
        cols = line(term, r"cols=\d+")
        expect(cols).to_have_count(1)
        assert int(cols.inner_text().strip().split("=", 1)[1]) <= 60
        widths = page_width(phone)
        assert widths["doc"] <= widths["view"], f"the page scrolls sideways ({widths})"
        assert widths["body"] <= widths["view"], f"the page scrolls sideways ({widths})"
        screenshot(phone, "panel-terminal-phone")
    finally:
        ctx.close()
