"""The session's controls in a real Chromium against the real stack (demo engine):
the light and dark themes, readable in both; the usage meter; messages queued while
Claude works (edited, removed, kept over a reload) and Stop, by button or Ctrl+.,
with a prompt open.

Its own browser context and workspace (acme/widgets#9) on the shared stack.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import Stack, record_frames, screenshot
from tests.e2e.test_webui import composer, login, send, wait_results

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ISSUE_URL = "https://github.com/acme/widgets/issues/9"
#: WCAG AA for normal text.
MIN_CONTRAST = 4.5

# The contrast ratio (WCAG 2) of an element's text on the first opaque
# background behind it; an element whose background is partly transparent is
# blended over what is behind.
CONTRAST = """
(el) => {
  const parse = (c) => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) throw new Error('not an rgb colour: ' + c);
    const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const layers = [];
  for (let n = el; n; n = n.parentElement) {
    const bg = parse(getComputedStyle(n).backgroundColor);
    if (bg[3] > 0) layers.push(bg);
    if (bg[3] >= 1) break;
  }
  let bg = [255, 255, 255];
  for (const l of layers.reverse()) bg = bg.map((v, i) => l[i] * l[3] + v * (1 - l[3]));
  const fg0 = parse(getComputedStyle(el).color);
  const fg = bg.map((v, i) => fg0[i] * fg0[3] + v * (1 - fg0[3]));
  const lum = (c) => {
    const [r, g, b] = c.map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const a = lum(fg), b = lum(bg);
  return { ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05), bgLum: b, fg: fg0, bg };
}
"""

CODE_MESSAGE = "show code\n```python\ndef answer():\n    return 42  # the answer\n```\nthanks"


@pytest.fixture(scope="module")
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    ctx = browser.new_context(
        base_url=stack.url, viewport={"width": 1280, "height": 860}, color_scheme="light"
    )
    ctx.set_default_timeout(15_000)
    p = ctx.new_page()
    record_frames(p, "controls")
    try:
        yield p
    finally:
        ctx.close()


def contrast(page: Page, selector: str) -> dict[str, Any]:
    """The contrast of the last element matching ``selector`` (which must be there)."""
    loc = page.locator(selector).last
    expect(loc).to_be_visible()
    result: dict[str, Any] = loc.evaluate(CONTRAST)
    return result


def page_background(page: Page) -> float:
    """The luminance of the page's background."""
    return float(page.locator("body").evaluate(CONTRAST)["bgLum"])


#: What must read well in both themes: text, muted text, status words, code, prompts.
READABLE = [
    ".session-head h2",
    ".session-head a.muted",
    ".session-head [data-testid=status-badge]",
    "[data-testid=user-message] .user-text",
    "[data-testid=assistant-message] .markdown p",
    ".codeblock pre code",
    ".codeblock .hljs-keyword",
    ".codeblock .hljs-number",
    ".codeblock .hljs-comment",
    ".codeblock .hljs-title",
    "[data-testid=result-line]",
    "[data-testid=workspace-item] .ws-issue",
    "[data-testid=permission-card] .prompt-kind",
    "[data-testid=permission-card] button.primary",
    "[data-testid=permission-card] button.danger",
    "select[aria-label=Theme]",
    "[data-testid=usage-meter]",
]


def check_readable(page: Page, theme: str) -> None:
    bad = []
    for selector in READABLE:
        c = contrast(page, selector)
        if c["ratio"] < MIN_CONTRAST:
            bad.append(f"{selector}: {c['ratio']:.2f} ({c['fg']} on {c['bg']})")
    assert not bad, f"{theme} theme, below {MIN_CONTRAST}:1: " + "; ".join(bad)


def test_sign_in_and_open_a_workspace(page: Page) -> None:
    page.goto("/")
    login(page)
    expect(page.get_by_test_id("connection")).to_have_text("Connected")
    field = page.get_by_label("New workspace from a GitHub issue")
    field.fill(ISSUE_URL)
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(re.compile(r"/w/[^/]+$"))
    expect(page.locator(".session-head")).to_contain_text("acme/widgets#9")
    expect(page.get_by_text("Ready to start")).to_be_visible(timeout=30_000)
    send(page, CODE_MESSAGE)
    wait_results(page, 1)
    expect(page.locator(".codeblock .hljs-keyword").first).to_have_text("def")
    # The usage meter by the composer counts the turn's tokens (the demo's words).
    meter = page.get_by_role("region", name="Session usage")
    expect(meter).to_contain_text(re.compile(r"\d+ tokens"))
    expect(meter).to_contain_text("$0")
    # The demo reports its prompt and a 200k window: the context fill shows.
    expect(page.get_by_test_id("usage-context")).to_contain_text(re.compile(r"of 200\.0k"))
    fill = float(page.get_by_role("meter", name="Context window used").get_attribute("value") or 0)
    assert 0 < fill < 0.1, fill


def test_the_theme_follows_the_system_then_the_switch_and_reads_well_in_both(
    page: Page,
) -> None:
    switch = page.get_by_role("combobox", name="Theme")
    expect(switch).to_have_value("system")
    assert page_background(page) > 0.8  # light, as the system says
    page.emulate_media(color_scheme="dark")
    assert page_background(page) < 0.05  # the system's change followed, no reload
    page.emulate_media(color_scheme="light")
    assert page_background(page) > 0.8

    # A prompt open, so its card is checked too.
    send(page, "use the permission tool")
    expect(page.get_by_test_id("permission-card")).to_be_visible(timeout=20_000)
    check_readable(page, "light")
    screenshot(page, "theme-light")

    switch.select_option("dark")
    assert page_background(page) < 0.05  # the switch wins over the light system
    check_readable(page, "dark")
    screenshot(page, "theme-dark")

    # Kept across a reload.
    page.reload()
    expect(page.get_by_test_id("permission-card")).to_be_visible()
    expect(page.get_by_role("combobox", name="Theme")).to_have_value("dark")
    assert page_background(page) < 0.05
    assert page.evaluate("localStorage.getItem('ffcloud.theme')") == "dark"

    page.get_by_role("combobox", name="Theme").select_option("light")
    page.emulate_media(color_scheme="dark")
    assert page_background(page) > 0.8  # light chosen on a dark system
    page.get_by_role("combobox", name="Theme").select_option("system")
    assert page_background(page) < 0.05  # back to following the system
    assert page.evaluate("localStorage.getItem('ffcloud.theme')") is None
    page.emulate_media(color_scheme="light")

    page.get_by_test_id("permission-card").get_by_role("button", name="Allow").click()
    wait_results(page, 2)
    expect(composer(page)).to_be_enabled()


def held(page: Page):  # type: ignore[no-untyped-def]
    return page.get_by_role("region", name="Queued messages").get_by_test_id("held-message")


def user_messages(page: Page, text: str):  # type: ignore[no-untyped-def]
    return page.get_by_test_id("user-message").filter(has_text=text)


def test_messages_queue_while_a_prompt_is_open_and_ctrl_dot_stops_the_turn(page: Page) -> None:
    before = page.get_by_test_id("result-line").count()
    send(page, "use the permission tool again")
    card = page.get_by_test_id("permission-card")
    expect(card).to_be_visible(timeout=20_000)
    expect(page.get_by_role("button", name="Stop")).to_be_visible()

    # Written while Claude waits: queued in view, not sent.
    send(page, "first queued")
    send(page, "second queued")
    expect(held(page)).to_have_count(2)
    expect(held(page).first).to_contain_text("first queued")
    expect(user_messages(page, "queued")).to_have_count(0)
    screenshot(page, "queue")

    page.get_by_role("button", name="Edit queued message 1").click()
    edit = page.get_by_role("textbox", name="Edit queued message 1")
    expect(edit).to_be_focused()
    edit.fill("first queued, reworded")
    edit.press("Enter")
    page.get_by_role("button", name="Remove queued message 2").click()
    expect(held(page)).to_have_count(1)
    expect(held(page).first).to_have_text(re.compile("first queued, reworded"))
    expect(user_messages(page, "queued")).to_have_count(0)

    # Ctrl+. with the focus away from the composer: the prompt is cancelled, the turn ends.
    page.locator("body").click(position={"x": 5, "y": 400})
    page.keyboard.press("Control+.")
    expect(card).to_have_count(0)
    expect(page.get_by_test_id("prompt-record").last).to_contain_text("cancelled")
    wait_results(page, before + 1)
    expect(page.get_by_test_id("result-line").nth(before)).to_contain_text("Stopped")

    # Then the queued message goes out, once, as its own turn; the removed one never.
    expect(user_messages(page, "first queued, reworded")).to_have_count(1)
    expect(held(page)).to_have_count(0)
    wait_results(page, before + 2)
    reply = page.get_by_test_id("assistant-message").last.inner_text()
    assert "first queued, reworded" in reply, reply
    expect(user_messages(page, "second queued")).to_have_count(0)
    expect(composer(page)).to_be_enabled()


def test_a_queued_message_survives_a_reload_and_the_stop_button_ends_a_long_turn(
    page: Page,
) -> None:
    before = page.get_by_test_id("result-line").count()
    send(page, "tell me something long")
    last = page.get_by_test_id("assistant-message").last
    expect(last).to_contain_text("(2) This is a long reply", timeout=20_000)
    send(page, "after the reload")
    expect(held(page)).to_have_count(1)
    page.reload()
    expect(page.get_by_test_id("connection")).to_have_text("Connected")
    expect(held(page)).to_have_count(1)
    expect(user_messages(page, "after the reload")).to_have_count(0)
    page.get_by_role("button", name="Stop").click()
    wait_results(page, before + 1)
    expect(user_messages(page, "after the reload")).to_have_count(1)
    wait_results(page, before + 2)
    expect(held(page)).to_have_count(0)
    # Nothing of the queue is left in the tab (the tab's owner mark may stay).
    left = page.evaluate("Object.keys(sessionStorage).filter(k => k.startsWith('ffcloud.held.'))")
    assert left == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_login_screen_reads_well_in_the_system_theme(
    browser: Browser, stack: Stack, scheme: str
) -> None:
    ctx = browser.new_context(base_url=stack.url, color_scheme=scheme)  # type: ignore[arg-type]
    ctx.set_default_timeout(15_000)
    try:
        p = ctx.new_page()
        p.goto("/")
        expect(p.get_by_role("button", name="Sign in")).to_be_visible()
        lum = page_background(p)
        assert lum < 0.05 if scheme == "dark" else lum > 0.8
        login(p, "not-the-password")
        expect(p.get_by_role("alert")).to_be_visible()
        bad = []
        for selector in [
            ".card h1",
            ".card .muted",
            ".card label",
            ".card button",
            ".field-error",
            ".card input",
        ]:
            c = contrast(p, selector)
            if c["ratio"] < MIN_CONTRAST:
                bad.append(f"{selector}: {c['ratio']:.2f}")
        assert not bad, f"{scheme} login screen: " + "; ".join(bad)
    finally:
        ctx.close()


def test_queue_stop_and_meter_fit_a_phone(browser: Browser, stack: Stack) -> None:
    ctx = browser.new_context(
        base_url=stack.url, viewport={"width": 390, "height": 800}, is_mobile=True, has_touch=True
    )
    ctx.set_default_timeout(15_000)
    try:
        phone = ctx.new_page()
        phone.goto("/")
        login(phone)
        phone.get_by_test_id("workspace-item").filter(has_text="acme/widgets#9").locator(
            "a"
        ).click()
        send(phone, "tell me something long on the phone")
        expect(phone.get_by_role("button", name="Stop")).to_be_visible(timeout=20_000)
        send(phone, "queued on the phone")
        expect(held(phone)).to_have_count(1)
        for loc in [
            phone.get_by_role("region", name="Queued messages"),
            phone.get_by_role("button", name="Remove queued message 1"),
            phone.get_by_role("button", name="Stop"),
            phone.get_by_role("button", name="Send"),
            phone.get_by_role("region", name="Session usage"),
            phone.get_by_role("combobox", name="Theme"),
            phone.get_by_role("button", name="Sign out"),
        ]:
            box = loc.bounding_box()
            assert box is not None
            assert box["x"] >= 0
            assert box["x"] + box["width"] <= 390
        screenshot(phone, "phone-queue")
        phone.get_by_role("button", name="Remove queued message 1").click()
        expect(held(phone)).to_have_count(0)
        phone.get_by_role("button", name="Stop").click()
        expect(phone.get_by_role("button", name="Stop")).to_have_count(0, timeout=20_000)
        expect(user_messages(phone, "queued on the phone")).to_have_count(0)
    finally:
        ctx.close()
