"""Several sessions of one workspace as tabs, in a real Chromium against the real
stack (demo engine): a second session streams while the first does, each in
its own transcript; rename; a question in the second session makes the list
show the workspace as waiting (the open page's and a list-only page's, which
relayd's statusOnly aggregate feeds); close keeps the transcript readable
under Closed sessions, also after a reload; the tabs by keyboard alone; the
phone layout; the tabs read at 4.5:1 in both themes.

Its own browser context and workspace (acme/widgets#31) on the shared stack;
the tests run in order, as one visit.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import Stack, record_frames, screenshot
from tests.e2e.test_webui import composer, login, send, wait_results
from tests.e2e.test_webui_controls import MIN_CONTRAST, contrast

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ISSUE_URL = "https://github.com/acme/widgets/issues/31"
SESSION_PATH = re.compile(r"/w/[^/]+/s/(s_[0-9a-f]{32})$")

#: Shared between the ordered tests of this module.
state: dict[str, Any] = {}


@pytest.fixture(scope="module")
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    ctx = browser.new_context(
        base_url=stack.url, viewport={"width": 1280, "height": 860}, color_scheme="light"
    )
    ctx.set_default_timeout(15_000)
    p = ctx.new_page()
    record_frames(p, "tabs")
    try:
        yield p
    finally:
        ctx.close()


def tab(page: Page, name: str | re.Pattern[str]):  # type: ignore[no-untyped-def]
    return page.get_by_role("tablist", name="Sessions").get_by_role("tab", name=name)


def tab_labels(page: Page):  # type: ignore[no-untyped-def]
    return page.locator(".session-tab .tab-label")


def user_texts(page: Page):  # type: ignore[no-untyped-def]
    return page.get_by_test_id("user-message").locator(".user-text")


def check_readable(page: Page, selectors: list[str]) -> None:
    """Each selector's last element reads at MIN_CONTRAST on its background."""
    bad = []
    for selector in selectors:
        c = contrast(page, selector)
        if c["ratio"] < MIN_CONTRAST:
            bad.append(f"{selector}: {c['ratio']:.2f} ({c['fg']} on {c['bg']})")
    assert not bad, f"below {MIN_CONTRAST}:1: " + "; ".join(bad)


def test_a_second_session_streams_while_the_first_does(page: Page) -> None:
    page.goto("/")
    login(page)
    page.get_by_label("New workspace from a GitHub issue").fill(ISSUE_URL)
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(re.compile(r"/w/[^/]+$"))
    state["main_url"] = page.url
    expect(page.get_by_text("Ready to start")).to_be_visible(timeout=30_000)
    expect(tab(page, "Session 1")).to_have_attribute("aria-selected", "true")

    # A second session: its own tab, its own URL, an empty transcript.
    page.get_by_role("button", name="New session").click()
    expect(page).to_have_url(SESSION_PATH)
    m = SESSION_PATH.search(page.url)
    assert m
    state["s2"] = m[1]
    state["s2_url"] = page.url
    expect(tab(page, "Session 2")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_text("Ready to start")).to_be_visible()
    expect(tab_labels(page)).to_have_text(["Session 1", "Session 2"])

    # Both stream at once: a long reply in the second, then one in the first.
    send(page, "long reply in two")
    expect(tab(page, re.compile("^Session 2"))).to_have_attribute("data-status", "running")
    tab(page, re.compile("^Session 1")).click()
    expect(page).to_have_url(state["main_url"])
    send(page, "long reply in one")
    expect(tab(page, re.compile("^Session 1"))).to_have_attribute("data-status", "running")
    # The second is still at it: both tabs are marked running at the same moment.
    expect(tab(page, re.compile("^Session 2"))).to_have_attribute("data-status", "running")
    expect(page.locator(".session-tab[data-status=running]")).to_have_count(2)
    screenshot(page, "sessions-running")

    wait_results(page, 1, timeout=60_000)
    expect(user_texts(page)).to_have_text(["long reply in one"])
    tab(page, re.compile("^Session 2")).click()
    wait_results(page, 1, timeout=60_000)
    expect(user_texts(page)).to_have_text(["long reply in two"])
    expect(page.get_by_test_id("assistant-message").last).to_contain_text("(40) This is")


def test_rename_inline_enter_saves_escape_cancels(page: Page) -> None:
    tab(page, re.compile("^Session 2")).dblclick()
    field = page.get_by_role("textbox", name="New name for Session 2")
    field.fill("Refactor")
    field.press("Enter")
    expect(tab(page, re.compile("^Refactor"))).to_have_attribute("aria-selected", "true")
    # Escape leaves the name as it was.
    tab(page, re.compile("^Refactor")).press("F2")
    field = page.get_by_role("textbox", name="New name for Refactor")
    field.fill("Not this")
    field.press("Escape")
    expect(field).to_have_count(0)
    expect(tab_labels(page)).to_have_text(["Session 1", "Refactor"])
    # The name is the VM's: a reload keeps it, and the tab.
    page.reload()
    expect(tab(page, re.compile("^Refactor"))).to_have_attribute("aria-selected", "true")
    expect(user_texts(page)).to_have_text(["long reply in two"])


def test_the_list_shows_waiting_when_only_the_second_session_waits(
    page: Page, browser: Browser, stack: Stack
) -> None:
    send(page, "a question please")
    card = page.get_by_test_id("question-card")
    expect(card).to_be_visible(timeout=20_000)
    # From the first session's tab: the second's tab and the list say it waits.
    tab(page, re.compile("^Session 1")).click()
    expect(card).to_have_count(0)
    expect(tab(page, re.compile("^Refactor"))).to_have_attribute("data-status", "waiting_for_input")
    expect(tab(page, re.compile("^Refactor"))).to_have_accessible_name(
        re.compile("waiting for input")
    )
    item = page.get_by_test_id("workspace-item").filter(has_text="acme/widgets#31")
    expect(item.get_by_test_id("status-badge")).to_have_attribute(
        "data-status", "waiting_for_input"
    )
    screenshot(page, "sessions")

    # A page that shows only the list: relayd's aggregate over the sessions.
    other = browser.new_context(base_url=stack.url, viewport={"width": 1280, "height": 860})
    other.set_default_timeout(15_000)
    try:
        lister = other.new_page()
        lister.goto("/")
        login(lister)
        listed = lister.get_by_test_id("workspace-item").filter(has_text="acme/widgets#31")
        expect(listed.get_by_test_id("status-badge")).to_have_attribute(
            "data-status", "waiting_for_input"
        )
        expect(lister.locator(".group-title").first).to_have_text(re.compile("Waiting", re.I))

        # Answered in the second session: the list is no longer waiting.
        tab(page, re.compile("^Refactor")).click()
        card = page.get_by_test_id("question-card")
        card.get_by_role("radio", name=re.compile("Teal")).check()
        card.get_by_role("button", name="Next").click()
        card.get_by_role("checkbox", name=re.compile("Dark mode")).check()
        card.get_by_role("button", name="Submit answers").click()
        expect(card).to_have_count(0)
        wait_results(page, 2)
        expect(listed.get_by_test_id("status-badge")).to_have_attribute("data-status", "idle")
    finally:
        other.close()


def test_close_keeps_the_transcript_readable(page: Page) -> None:
    page.get_by_role("button", name="Actions for Refactor").click()
    page.get_by_role("menuitem", name="Close session").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Close Refactor?")
    dialog.get_by_role("button", name="Close session").click()
    expect(dialog).to_have_count(0)
    # The tab before it is shown; the closed one is listed under Closed sessions.
    expect(page).to_have_url(state["main_url"])
    expect(tab_labels(page)).to_have_text(["Session 1"])
    page.get_by_role("button", name="Closed sessions (1)").click()
    page.get_by_role("menuitem", name="Refactor").click()
    expect(page).to_have_url(state["s2_url"])
    expect(page.get_by_text("This session is closed")).to_be_visible()
    expect(composer(page)).to_have_count(0)
    expect(user_texts(page)).to_have_text(["long reply in two", "a question please"])
    expect(tab(page, re.compile("^Refactor"))).to_have_accessible_name(re.compile("closed"))
    check_readable(
        page,
        [
            ".session-tab[aria-selected=false] .tab-label",
            ".session-tab.closed .tab-label",
            ".tab-closed-note",
            ".tab-closed-menu",
            ".session-closed",
        ],
    )
    screenshot(page, "session-closed")
    # Still readable after a reload.
    page.reload()
    expect(page.get_by_text("This session is closed")).to_be_visible()
    expect(page.get_by_test_id("user-message")).to_have_count(2)


def test_tabs_by_keyboard_alone(page: Page) -> None:
    page.goto(state["main_url"])
    expect(tab(page, "Session 1")).to_be_visible()
    # From the header's issue link, Tab reaches the shown tab, then its menu, then +.
    page.locator(".session-head a").first.focus()
    page.keyboard.press("Tab")
    expect(tab(page, "Session 1")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Actions for Session 1")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="New session")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(SESSION_PATH)
    expect(tab(page, "Session 3")).to_have_attribute("aria-selected", "true")
    state["s3_url"] = page.url

    # Back to the new tab, then arrows move the focus between the tabs, Enter opens one.
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    expect(tab(page, "Session 3")).to_be_focused()
    page.keyboard.press("ArrowLeft")
    expect(tab(page, "Session 1")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(state["main_url"])
    page.keyboard.press("End")
    expect(tab(page, "Session 3")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(state["s3_url"])

    # F2 renames; Delete asks to close, Escape keeps it; the menus by keyboard.
    expect(tab(page, "Session 3")).to_be_focused()
    page.keyboard.press("F2")
    page.keyboard.type("Docs")
    page.keyboard.press("Enter")
    expect(tab(page, "Docs")).to_be_focused()
    page.keyboard.press("Delete")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Close Docs?")
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(tab(page, "Docs")).to_be_focused()
    expect(tab_labels(page)).to_have_text(["Session 1", "Docs"])
    for _ in range(3):  # its menu, +, Closed
        page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Closed sessions (1)")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("menuitem", name="Refactor")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("button", name="Closed sessions (1)")).to_be_focused()
    # Another one made and closed by keyboard: the focus lands on the tab shown next.
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("button", name="New session")).to_be_focused()
    page.keyboard.press("Enter")
    expect(tab(page, "Session 4")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    expect(tab(page, "Session 4")).to_be_focused()
    page.keyboard.press("Delete")
    expect(dialog).to_contain_text("Close Session 4?")
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Close session")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(state["s3_url"])
    expect(tab(page, "Docs")).to_be_focused()
    expect(page.get_by_role("button", name="Closed sessions (2)")).to_be_visible()
    # The session shown takes messages like the first.
    composer(page).focus()
    page.keyboard.type("hello from the keyboard")
    page.keyboard.press("Enter")
    wait_results(page, 1)


def test_phone_layout(browser: Browser, stack: Stack) -> None:
    ctx = browser.new_context(
        base_url=stack.url,
        viewport={"width": 375, "height": 740},
        is_mobile=True,
        has_touch=True,
        color_scheme="dark",
    )
    ctx.set_default_timeout(15_000)
    try:
        phone = ctx.new_page()
        phone.goto(state["s3_url"])
        login(phone)
        docs = tab(phone, re.compile("^Docs"))
        expect(docs).to_have_attribute("aria-selected", "true")
        for control in [
            docs,
            tab(phone, "Session 1"),
            phone.get_by_role("button", name="New session"),
        ]:
            box = control.bounding_box()
            assert box is not None
            assert box["height"] >= 40, box
            assert box["x"] >= 0, box
            assert box["x"] + box["width"] <= 375, box
        tab(phone, "Session 1").tap()
        expect(phone).to_have_url(state["main_url"])
        expect(composer(phone)).to_be_visible()
        screenshot(phone, "sessions-phone")
        tab(phone, re.compile("^Docs")).tap()
        expect(phone.get_by_test_id("user-message")).to_have_count(1)
        send(phone, "from the phone")
        wait_results(phone, 2)
    finally:
        ctx.close()


def test_dark_theme_screenshot(browser: Browser, stack: Stack) -> None:
    ctx = browser.new_context(
        base_url=stack.url, viewport={"width": 1280, "height": 860}, color_scheme="dark"
    )
    ctx.set_default_timeout(15_000)
    try:
        dark = ctx.new_page()
        dark.goto(state["main_url"])
        login(dark)
        expect(tab(dark, "Session 1")).to_have_attribute("aria-selected", "true")
        expect(tab(dark, re.compile("^Docs"))).to_be_visible()
        expect(dark.get_by_role("button", name="Closed sessions (2)")).to_be_visible()
        check_readable(
            dark,
            [
                ".session-tab[aria-selected=true] .tab-label",
                ".session-tab[aria-selected=false] .tab-label",
                ".tab-closed-menu",
                ".tab-actions",
                ".tab-new",
            ],
        )
        screenshot(dark, "sessions-dark")
    finally:
        ctx.close()
