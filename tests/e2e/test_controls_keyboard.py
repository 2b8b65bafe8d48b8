"""The session's controls with the keyboard alone, and on a phone, in a real Chromium
against the real stack (demo engine): the model and permission-mode pickers (with
bypass's confirmation), the plan card, the queue of held messages, Stop while a
prompt is open, and the theme switch.

Keyboard: every control is reached with Tab / Shift+Tab and worked with keys;
the focus never falls back to the page when a control changes or goes away.
Phone (375x740): nothing scrolls sideways, and each control is inside the
screen, big enough to tap, and works by tapping.

Its own browser contexts and workspaces (acme/widgets#15 and #16) on the shared stack.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, ViewportSize, expect

from tests.e2e.conftest import Stack, record_frames, screenshot
from tests.e2e.test_webui import composer, login, wait_results

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

DESKTOP_ISSUE = "https://github.com/acme/widgets/issues/15"
PHONE_ISSUE = "https://github.com/acme/widgets/issues/16"
PHONE: ViewportSize = {"width": 375, "height": 740}
#: The smallest tap target (WCAG 2.2 target size, minimum: 24 by 24 CSS pixels).
MIN_TARGET = 24
#: How many Tab presses may separate two controls next to each other.
MAX_TABS = 40


def focused(loc: Locator) -> bool:
    return bool(loc.evaluate("(el) => el === document.activeElement"))


def active(page: Page) -> str:
    """What has the focus, for messages: tag, label and text."""
    return str(
        page.evaluate(
            "() => { const e = document.activeElement; if (!e) return 'none';"
            " return `${e.tagName} ${e.getAttribute('aria-label') || ''}"
            " ${(e.textContent || '').slice(0, 40)}` }"
        )
    )


def tab_to(page: Page, target: Locator, key: str = "Tab") -> None:
    """Press ``key`` until ``target`` has the focus (failing after MAX_TABS presses)."""
    expect(target).to_be_visible()
    for _ in range(MAX_TABS):
        if focused(target):
            return
        page.keyboard.press(key)
    raise AssertionError(f"{key} never reached the control; the focus is on {active(page)}")


def expect_focus(page: Page, target: Locator) -> None:
    """The focus is (soon) on ``target``, not lost to the page."""
    expect(target).to_be_focused(timeout=5_000)


def type_and_send(page: Page, text: str) -> None:
    box = composer(page)
    if not focused(box):
        tab_to(page, box, "Shift+Tab")
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def held(page: Page) -> Locator:
    return page.get_by_role("region", name="Queued messages").get_by_test_id("held-message")


def user_messages(page: Page, text: str) -> Locator:
    return page.get_by_test_id("user-message").filter(has_text=text)


@pytest.fixture(scope="module")
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    ctx = browser.new_context(
        base_url=stack.url, viewport={"width": 1280, "height": 860}, color_scheme="light"
    )
    ctx.set_default_timeout(15_000)
    p = ctx.new_page()
    record_frames(p, "keyboard")
    try:
        yield p
    finally:
        ctx.close()


def test_open_a_workspace_with_the_keyboard(page: Page) -> None:
    page.goto("/")
    login(page)
    field = page.get_by_label("New workspace from a GitHub issue")
    field.focus()
    page.keyboard.type(DESKTOP_ISSUE)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/w/[^/]+$"))
    expect(page.get_by_text("Ready to start")).to_be_visible(timeout=30_000)
    composer(page).focus()
    type_and_send(page, "hello")
    wait_results(page, 1)


def test_model_and_mode_pickers_with_the_keyboard_and_bypass_confirmed(page: Page) -> None:
    model = page.get_by_role("combobox", name="Model")
    mode = page.get_by_role("combobox", name="Permission mode")
    composer(page).focus()
    tab_to(page, model)
    expect(model).to_have_value("demo")
    page.keyboard.press("ArrowDown")  # a closed select changes with the arrows
    expect(model).to_have_value("demo-large")
    expect_focus(page, model)  # the change went to the VM and the focus stayed

    page.keyboard.press("Tab")
    expect_focus(page, mode)
    expect(mode).to_have_value("default")
    page.keyboard.press("ArrowDown")
    expect(mode).to_have_value("acceptEdits")
    expect_focus(page, mode)
    page.keyboard.press("ArrowDown")
    expect(mode).to_have_value("plan")
    expect_focus(page, mode)

    # Bypass: the confirmation takes the focus; Escape cancels and gives it back.
    page.keyboard.press("ArrowDown")
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text("without asking")
    expect_focus(page, dialog.get_by_role("button", name="Cancel"))
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(mode).to_have_value("plan")
    expect_focus(page, mode)

    # Again, and confirmed with the keyboard.
    page.keyboard.press("ArrowDown")
    expect_focus(page, dialog.get_by_role("button", name="Cancel"))
    page.keyboard.press("Tab")
    expect_focus(page, dialog.get_by_role("button", name="Bypass permissions"))
    page.keyboard.press("Enter")
    expect(dialog).to_have_count(0)
    expect(mode).to_have_value("bypassPermissions")
    expect_focus(page, mode)

    # Back to plan mode for the plan card.
    page.keyboard.press("ArrowUp")
    expect(mode).to_have_value("plan")
    expect_focus(page, mode)


def test_plan_card_sent_back_then_approved_with_the_keyboard(page: Page) -> None:
    before = page.get_by_test_id("result-line").count()
    tab_to(page, composer(page), "Shift+Tab")
    type_and_send(page, "rename the widget")
    card = page.get_by_test_id("plan-card")
    expect(card.locator("h1")).to_have_text("Demo plan")
    comment = card.get_by_role("textbox", name=re.compile("send the plan back"))
    tab_to(page, comment, "Shift+Tab")
    page.keyboard.type("tests first")
    page.keyboard.press("Tab")
    expect_focus(page, card.get_by_role("button", name="Keep planning"))
    page.keyboard.press("Enter")
    expect(card).to_have_count(0)
    # The card is gone: the focus goes back to the composer, not to the page.
    expect_focus(page, composer(page))
    wait_results(page, before + 1)
    expect(page.get_by_test_id("assistant-message").last).to_contain_text("tests first")

    type_and_send(page, "again")
    card = page.get_by_test_id("plan-card")
    approve = card.get_by_role("button", name="Approve plan")
    tab_to(page, approve, "Shift+Tab")
    page.keyboard.press("Enter")
    expect(card).to_have_count(0)
    expect_focus(page, composer(page))
    wait_results(page, before + 2)
    expect(page.get_by_test_id("assistant-message").last).to_contain_text("plan approved")


def test_queue_edit_remove_and_stop_with_a_prompt_open_by_keyboard(page: Page) -> None:
    before = page.get_by_test_id("result-line").count()
    tab_to(page, composer(page), "Shift+Tab")
    type_and_send(page, "use the permission tool")
    card = page.get_by_test_id("permission-card")
    expect(card).to_be_visible(timeout=20_000)
    # After the approved plan the demo is back in default mode, which asks.
    expect(page.get_by_role("combobox", name="Permission mode")).to_have_value("default")
    expect_focus(page, composer(page))  # the card does not take the focus from typing
    type_and_send(page, "first queued")
    type_and_send(page, "second queued")
    expect(held(page)).to_have_count(2)

    edit = page.get_by_role("button", name="Edit queued message 1")
    tab_to(page, edit, "Shift+Tab")
    page.keyboard.press("Enter")
    box = page.get_by_role("textbox", name="Edit queued message 1")
    expect_focus(page, box)
    page.keyboard.press("Control+a")
    page.keyboard.type("first queued, reworded")
    page.keyboard.press("Enter")
    expect(held(page).first).to_have_text(re.compile("first queued, reworded"))
    expect_focus(page, edit)  # back on the row's Edit button

    # Escape leaves an edit without changing the message, focus back on Edit.
    page.keyboard.press("Enter")
    expect_focus(page, box)
    page.keyboard.type(" never saved")
    page.keyboard.press("Escape")
    expect(held(page).first).to_have_text(re.compile(r"first queued, reworded\s*Edit"))
    expect_focus(page, edit)

    remove = page.get_by_role("button", name="Remove queued message 2")
    tab_to(page, remove)
    page.keyboard.press("Enter")
    expect(held(page)).to_have_count(1)
    # The removed row's button is gone: the focus moves to the queue's next
    # control (here the one left's Remove), never to the page.
    expect_focus(page, page.get_by_role("button", name="Remove queued message 1"))

    stop = page.get_by_role("button", name="Stop")
    tab_to(page, stop)
    page.keyboard.press("Enter")
    expect(card).to_have_count(0)
    expect(page.get_by_test_id("prompt-record").last).to_contain_text("cancelled")
    wait_results(page, before + 1)
    expect(user_messages(page, "first queued, reworded")).to_have_count(1)
    wait_results(page, before + 2)
    expect(held(page)).to_have_count(0)
    expect(user_messages(page, "second queued")).to_have_count(0)
    # Stop is gone with the turn: the focus is in the composer, ready for more.
    expect_focus(page, composer(page))


def background(page: Page) -> float:
    lum: float = page.evaluate(
        """() => {
          const c = getComputedStyle(document.body).backgroundColor.match(/[\\d.]+/g).map(Number);
          const [r, g, b] = c.slice(0, 3).map((v) => {
            v /= 255;
            return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
          });
          return 0.2126 * r + 0.7152 * g + 0.0722 * b;
        }"""
    )
    return lum


def test_theme_switch_with_the_keyboard(page: Page) -> None:
    switch = page.get_by_role("combobox", name="Theme")
    tab_to(page, switch, "Shift+Tab")
    expect(switch).to_have_value("system")
    assert background(page) > 0.8
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(switch).to_have_value("dark")
    assert background(page) < 0.05
    expect_focus(page, switch)
    page.keyboard.press("Home")
    expect(switch).to_have_value("system")
    assert background(page) > 0.8


# -- the phone ---------------------------------------------------------------------------


def no_sideways_scroll(page: Page, what: str) -> None:
    widths: dict[str, Any] = page.evaluate(
        "() => ({doc: document.documentElement.scrollWidth, body: document.body.scrollWidth,"
        " view: window.innerWidth})"
    )
    assert widths["doc"] <= widths["view"], f"{what}: the page scrolls sideways ({widths})"
    assert widths["body"] <= widths["view"], f"{what}: the page scrolls sideways ({widths})"


def reachable(loc: Locator, what: str) -> None:
    """Inside the screen's width once scrolled to, and at least MIN_TARGET square."""
    loc.scroll_into_view_if_needed()
    box = loc.bounding_box()
    assert box is not None, f"{what} is not shown"
    assert box["x"] >= 0, f"{what} starts off the screen: {box}"
    assert box["x"] + box["width"] <= PHONE["width"] + 0.5, f"{what} ends off the screen: {box}"
    assert box["y"] >= 0, f"{what} is above the screen: {box}"
    assert box["y"] + box["height"] <= PHONE["height"] + 0.5, f"{what} is below the screen: {box}"
    assert box["width"] >= MIN_TARGET, f"{what} is too narrow to tap: {box}"
    assert box["height"] >= MIN_TARGET, f"{what} is too short to tap: {box}"


def test_the_controls_on_a_phone(browser: Browser, stack: Stack) -> None:
    ctx = browser.new_context(base_url=stack.url, viewport=PHONE, is_mobile=True, has_touch=True)
    ctx.set_default_timeout(15_000)
    try:
        phone = ctx.new_page()
        phone.goto("/")
        login(phone)
        phone.get_by_label("New workspace from a GitHub issue").fill(PHONE_ISSUE)
        phone.get_by_role("button", name="Create").tap()
        expect(phone).to_have_url(re.compile(r"/w/[^/]+$"))
        expect(phone.get_by_text("Ready to start")).to_be_visible(timeout=30_000)
        composer(phone).fill("hello")
        phone.get_by_role("button", name="Send").tap()
        wait_results(phone, 1)
        no_sideways_scroll(phone, "the session")

        model = phone.get_by_role("combobox", name="Model")
        mode = phone.get_by_role("combobox", name="Permission mode")
        for loc, what in [
            (composer(phone), "the composer"),
            (phone.get_by_role("button", name="Send"), "Send"),
            (model, "the model picker"),
            (mode, "the mode picker"),
            (phone.get_by_role("region", name="Session usage"), "the usage meter"),
            (phone.get_by_role("button", name="Back to workspaces"), "Back"),
        ]:
            reachable(loc, what)
        model.tap()
        model.select_option("demo-large")
        expect(model).to_have_value("demo-large")

        mode.select_option("bypassPermissions")
        dialog = phone.get_by_role("alertdialog")
        expect(dialog).to_be_visible()
        no_sideways_scroll(phone, "the bypass confirmation")
        for name in ("Cancel", "Bypass permissions"):
            reachable(dialog.get_by_role("button", name=name), f"the dialog's {name}")
        screenshot(phone, "phone-bypass")
        dialog.get_by_role("button", name="Bypass permissions").tap()
        expect(mode).to_have_value("bypassPermissions")
        mode.select_option("plan")
        expect(mode).to_have_value("plan")

        composer(phone).fill("rename the widget")
        phone.get_by_role("button", name="Send").tap()
        card = phone.get_by_test_id("plan-card")
        expect(card.locator("h1")).to_have_text("Demo plan")
        no_sideways_scroll(phone, "the plan card")
        comment = card.get_by_role("textbox", name=re.compile("send the plan back"))
        keep = card.get_by_role("button", name="Keep planning")
        approve = card.get_by_role("button", name="Approve plan")
        for loc, what in [(comment, "the comment"), (keep, "Keep planning"), (approve, "Approve")]:
            reachable(loc, what)
        screenshot(phone, "phone-plan")
        approve.tap()
        expect(card).to_have_count(0)
        wait_results(phone, 2)
        expect(phone.get_by_test_id("assistant-message").last).to_contain_text("plan approved")

        # A prompt open, messages queued, Stop: all on the screen at once.
        composer(phone).fill("use the permission tool")
        phone.get_by_role("button", name="Send").tap()
        permission = phone.get_by_test_id("permission-card")
        expect(permission).to_be_visible(timeout=20_000)
        composer(phone).fill("queued on the phone")
        phone.get_by_role("button", name="Send").tap()
        expect(held(phone)).to_have_count(1)
        no_sideways_scroll(phone, "a prompt and the queue")
        for loc, what in [
            (permission.get_by_role("button", name="Allow"), "Allow"),
            (permission.get_by_role("button", name="Deny"), "Deny"),
            (phone.get_by_role("button", name="Edit queued message 1"), "Edit queued"),
            (phone.get_by_role("button", name="Remove queued message 1"), "Remove queued"),
            (phone.get_by_role("button", name="Stop"), "Stop"),
        ]:
            reachable(loc, what)
        phone.get_by_role("button", name="Edit queued message 1").tap()
        box = phone.get_by_role("textbox", name="Edit queued message 1")
        box.fill("queued on the phone, edited")
        reachable(phone.get_by_role("button", name="Save"), "Save")
        phone.get_by_role("button", name="Save").tap()
        expect(held(phone).first).to_contain_text("queued on the phone, edited")
        phone.get_by_role("button", name="Stop").tap()
        expect(permission).to_have_count(0)
        expect(user_messages(phone, "queued on the phone, edited")).to_have_count(1)
        wait_results(phone, 4)
        expect(held(phone)).to_have_count(0)

        # The theme switch: in the workspace list on a phone.
        phone.get_by_role("button", name="Back to workspaces").tap()
        switch = phone.get_by_role("combobox", name="Theme")
        reachable(switch, "the theme switch")
        switch.select_option("dark")
        assert background(phone) < 0.05
        no_sideways_scroll(phone, "the list, dark")
        switch.select_option("system")
    finally:
        ctx.close()


# -- both themes, with the screenshots docs/webui.md shows --------------------------------

#: What must read at 4.5:1 in each theme, per control.
CONTROL_TEXT = {
    "pickers": [
        ".session-controls label > span",
        "select[aria-label=Model]",
        "select[aria-label='Permission mode']",
        ".bypass-confirm p",
        ".bypass-confirm button.danger",
        ".bypass-confirm button:not(.danger)",
    ],
    "usage-meter": ["[data-testid=usage-tokens]", "[data-testid=usage-context]"],
    "plan-card": [
        "[data-testid=plan-card] .prompt-kind",
        "[data-testid=plan-card] .plan-body h1",
        "[data-testid=plan-card] .plan-body li",
        "[data-testid=plan-card] .reason span",
        "[data-testid=plan-card] button.primary",
        "[data-testid=plan-card] button:not(.primary)",
    ],
    "queue": [
        ".held-title",
        ".held-text",
        ".held-actions button.link",
        ".held-actions .danger-text",
    ],
}


def check_text(page: Page, control: str, theme: str) -> None:
    from tests.e2e.test_webui_controls import MIN_CONTRAST, contrast

    bad = []
    for selector in CONTROL_TEXT[control]:
        c = contrast(page, selector)
        if c["ratio"] < MIN_CONTRAST:
            bad.append(f"{selector}: {c['ratio']:.2f} ({c['fg']} on {c['bg']})")
    assert not bad, f"{control}, {theme} theme, below {MIN_CONTRAST}:1: " + "; ".join(bad)


def shot(page: Page, name: str, loc: Locator, pad: int = 12) -> None:
    """A screenshot of ``loc`` and a margin around it (FFCLOUD_SCREENSHOTS=1)."""
    box = loc.bounding_box()
    assert box is not None
    view = page.viewport_size or {"width": 1280, "height": 860}
    x, y = max(0.0, box["x"] - pad), max(0.0, box["y"] - pad)
    clip = {
        "x": x,
        "y": y,
        "width": min(view["width"] - x, box["width"] + 2 * pad),
        "height": min(view["height"] - y, box["height"] + 2 * pad),
    }
    screenshot(page, name, clip=clip)


def pill_clear_of_the_dock(page: Page) -> None:
    """The "Latest" pill, when shown, floats over the conversation, not over the dock's controls."""
    pill = page.get_by_role("button", name="↓ Latest")
    if pill.count() == 0:
        return
    box, dock = pill.bounding_box(), page.locator(".dock").bounding_box()
    assert box is not None
    assert dock is not None
    assert box["y"] + box["height"] <= dock["y"], f"the Latest pill {box} covers the dock {dock}"


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_controls_read_well_in_both_themes(page: Page, theme: str) -> None:
    page.get_by_role("combobox", name="Theme").select_option(theme)
    assert (background(page) > 0.8) if theme == "light" else (background(page) < 0.05)
    controls = page.get_by_test_id("session-controls")
    mode = page.get_by_role("combobox", name="Permission mode")
    expect(mode).to_have_value("default")
    latest = page.get_by_role("button", name="↓ Latest")
    if latest.count():  # tabbing through the conversation scrolled it up
        latest.click()
    expect(latest).to_have_count(0)

    mode.select_option("bypassPermissions")
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_be_visible()
    # The reader at the bottom stays there while the dock grows: no "Latest" pill.
    expect(latest).to_have_count(0)
    check_text(page, "pickers", theme)
    shot(page, f"pickers-{theme}", controls)
    page.locator(".scroller").evaluate("(el) => { el.scrollTop = 0; }")
    expect(page.get_by_role("button", name="↓ Latest")).to_be_visible()
    pill_clear_of_the_dock(page)
    page.get_by_role("button", name="↓ Latest").click()
    expect(page.get_by_role("button", name="↓ Latest")).to_have_count(0)
    dialog.get_by_role("button", name="Cancel").click()
    expect(mode).to_have_value("default")

    meter = page.get_by_role("region", name="Session usage")
    expect(meter).to_contain_text(re.compile(r"\d+ tokens"))
    check_text(page, "usage-meter", theme)
    shot(page, f"usage-meter-{theme}", meter, pad=6)

    before = page.get_by_test_id("result-line").count()
    mode.select_option("plan")
    expect(mode).to_have_value("plan")
    type_and_send(page, "plan the widget's rename")
    card = page.get_by_test_id("plan-card")
    expect(card.locator("h1")).to_have_text("Demo plan")
    check_text(page, "plan-card", theme)
    shot(page, f"plan-card-{theme}", page.locator(".dock"))
    card.get_by_role("button", name="Approve plan").click()
    wait_results(page, before + 1)

    type_and_send(page, "tell me something long")
    expect(page.get_by_test_id("assistant-message").last).to_contain_text(
        "This is a long reply", timeout=20_000
    )
    type_and_send(page, "then add a test for the rename")
    type_and_send(page, "and update the changelog")
    expect(held(page)).to_have_count(2)
    check_text(page, "queue", theme)
    shot(page, f"queue-{theme}", page.locator(".dock"))
    page.locator(".scroller").evaluate("(el) => { el.scrollTop = 0; }")
    pill_clear_of_the_dock(page)
    for _ in range(2):
        page.get_by_role("button", name="Remove queued message 1").click()
    expect(held(page)).to_have_count(0)
    page.get_by_role("button", name="Stop").click()
    wait_results(page, before + 2)
    # The approved plan's turn and the stopped one: back in the default mode.
    expect(mode).to_have_value("default")
    page.get_by_role("combobox", name="Theme").select_option("system")
