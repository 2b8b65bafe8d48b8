"""The slash command palette in a real Chromium against the real stack (demo
engine), keyboard only: "/" lists the session's commands (the demo's own and
the repository's .claude/commands), typing narrows, arrows and Enter choose,
the command runs; Escape closes; the palette on a phone, by touch; and
readable in the light and the dark theme.

Its own browser contexts and workspaces (acme/widgets#23, #24) on the shared stack.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import Stack, record_frames, screenshot
from tests.e2e.test_webui import login, wait_results
from tests.e2e.test_webui_controls import CONTRAST, MIN_CONTRAST

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ISSUE_URL = "https://github.com/acme/widgets/issues/23"
PHONE_ISSUE_URL = "https://github.com/acme/widgets/issues/24"


@pytest.fixture(scope="module")
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    ctx = browser.new_context(base_url=stack.url, viewport={"width": 1280, "height": 860})
    ctx.set_default_timeout(15_000)
    p = ctx.new_page()
    record_frames(p, "slash")
    try:
        yield p
    finally:
        ctx.close()


def test_palette_by_keyboard_runs_the_chosen_command(page: Page) -> None:
    page.goto("/")
    login(page)
    field = page.get_by_label("New workspace from a GitHub issue")
    field.fill(ISSUE_URL)
    field.press("Enter")
    expect(page).to_have_url(re.compile(r"/w/[^/]+$"))
    expect(page.get_by_text("Ready to start")).to_be_visible(timeout=30_000)
    box = page.get_by_role("textbox", name="Message to Claude")
    expect(box).to_be_enabled()
    box.focus()

    page.keyboard.type("/")
    palette = page.get_by_role("combobox", name="Message to Claude")
    expect(palette).to_have_attribute("aria-expanded", "true")
    listbox = page.get_by_role("listbox", name="Slash commands")
    options = listbox.get_by_role("option")
    expect(options.first).to_contain_text("/explain")
    # The repository's own file first, under its heading, then the demo's own (built-in).
    expect(options).to_have_text(
        [
            re.compile("^/explain"),
            re.compile(r"^/roll"),
            re.compile(r"^/shout"),
            re.compile(r"^/context"),
        ]
    )
    project = listbox.get_by_role("group", name="This repository")
    expect(project.get_by_role("option")).to_have_text([re.compile("^/explain")])
    expect(listbox.get_by_role("group", name="Built-in").get_by_role("option")).to_have_count(3)
    expect(project.get_by_role("option")).to_contain_text("Explain a file of the demo project")
    expect(project.get_by_role("option")).not_to_contain_text("(project)")
    expect(listbox.get_by_role("option", name=re.compile("explain"))).to_contain_text("<path>")
    screenshot(page, "slash-palette")

    # Typing narrows; the arrows move the active option, which the text box names.
    page.keyboard.type("sh")
    # /shout by its name, /context by its description ("Show …").
    expect(options).to_have_text([re.compile("^/shout"), re.compile("^/context")])
    page.keyboard.press("ArrowDown")
    context = listbox.get_by_role("option", name=re.compile("context"))
    expect(context).to_have_attribute("aria-selected", "true")
    expect(palette).to_have_attribute("aria-activedescendant", context.get_attribute("id") or "")
    page.keyboard.press("ArrowUp")
    expect(listbox.get_by_role("option", name=re.compile("shout"))).to_have_attribute(
        "aria-selected", "true"
    )
    page.keyboard.press("Enter")
    expect(box).to_have_value("/shout ")
    expect(listbox).to_have_count(0)
    expect(box).to_be_focused()
    page.keyboard.type("quiet please")
    page.keyboard.press("Enter")
    wait_results(page, 1)
    expect(page.get_by_test_id("assistant-message").last).to_contain_text(
        "Demo /shout: QUIET PLEASE"
    )

    # A repository command, chosen with Tab: the demo quotes its expanded prompt.
    page.keyboard.type("/ex")
    page.keyboard.press("Tab")
    expect(box).to_have_value("/explain ")
    page.keyboard.type("src/app.py")
    page.keyboard.press("Enter")
    wait_results(page, 2)
    expect(page.get_by_test_id("assistant-message").last).to_contain_text(
        "Explain briefly what src/app.py does"
    )

    # Escape closes the palette; Enter then sends the text as typed.
    page.keyboard.type("/roll")
    expect(listbox).to_be_visible()
    page.keyboard.press("Escape")
    expect(listbox).to_have_count(0)
    expect(box).to_have_value("/roll")
    page.keyboard.press("Enter")
    wait_results(page, 3)
    expect(page.get_by_test_id("assistant-message").last).to_contain_text(
        re.compile(r"Demo /roll: the d6 shows [1-6]\.")
    )


def test_palette_on_a_phone_by_touch(browser: Browser, stack: Stack) -> None:
    ctx = browser.new_context(
        base_url=stack.url, viewport={"width": 390, "height": 760}, is_mobile=True, has_touch=True
    )
    ctx.set_default_timeout(15_000)
    try:
        phone = ctx.new_page()
        phone.goto("/")
        login(phone)
        field = phone.get_by_label("New workspace from a GitHub issue")
        field.fill(PHONE_ISSUE_URL)
        field.press("Enter")
        expect(phone.get_by_text("Ready to start")).to_be_visible(timeout=30_000)
        box = phone.get_by_role("textbox", name="Message to Claude")
        expect(box).to_be_enabled()
        box.tap()
        phone.keyboard.type("/")
        listbox = phone.get_by_role("listbox", name="Slash commands")
        expect(listbox.get_by_role("option").first).to_be_visible()
        palette = listbox.bounding_box()
        composer = phone.locator("#composer-input").bounding_box()
        assert palette is not None
        assert composer is not None
        # Above the text box, within the screen's width, options big enough to tap.
        assert palette["y"] + palette["height"] <= composer["y"] + 1
        assert palette["x"] >= 0
        assert palette["x"] + palette["width"] <= 390
        first = listbox.get_by_role("option").first.bounding_box()
        assert first is not None
        assert first["height"] >= 44
        screenshot(phone, "slash-palette-phone")
        listbox.get_by_role("option", name=re.compile("context")).tap()
        expect(box).to_have_value("/context ")
        expect(box).to_be_focused()
        phone.keyboard.press("Enter")
        wait_results(phone, 1)
        expect(phone.get_by_test_id("assistant-message").last).to_contain_text("Demo /context:")
    finally:
        ctx.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_palette_reads_well_in_both_themes(page: Page, scheme: str) -> None:
    page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
    box = page.get_by_role("textbox", name="Message to Claude")
    expect(box).to_be_enabled()
    box.focus()
    page.keyboard.type("/")
    listbox = page.get_by_role("listbox", name="Slash commands")
    expect(listbox.get_by_role("option").first).to_be_visible()
    bad = []
    for part in (".command-name", ".command-hint", ".command-desc"):
        for which in ("[aria-selected=true]", "[aria-selected=false]"):
            loc = listbox.locator(f".command-option{which} {part}").first
            c = loc.evaluate(CONTRAST)
            if c["ratio"] < MIN_CONTRAST:
                bad.append(f"{which} {part}: {c['ratio']:.2f}")
    assert not bad, f"{scheme}: " + "; ".join(bad)
    if scheme == "dark":
        screenshot(page, "slash-palette-dark")
    page.keyboard.press("Escape")
    box.fill("")
