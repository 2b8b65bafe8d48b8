"""On a 375x740 phone, a plan card or a permission card and the composer fit together.

The cards sit in the dock above the composer; a tall one scrolls in a bounded
area of its own, so the composer, Send and the pickers stay in view (not merely
reachable by scrolling the dock) while every control of the card can still be
scrolled to and tapped. Real Chromium against the real stack (demo engine), its
own workspace (acme/widgets#17) on the shared stack.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.e2e.conftest import Stack
from tests.e2e.test_controls_keyboard import PHONE, reachable
from tests.e2e.test_webui import composer, login, wait_results

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ISSUE = "https://github.com/acme/widgets/issues/17"


def in_view(loc: Locator, what: str) -> None:
    """Wholly on the screen and not hidden by a scroll area's edge, without scrolling."""
    seen: dict[str, Any] = loc.evaluate(
        "(el) => { const r = el.getBoundingClientRect();"
        " const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);"
        " return {top: r.top, bottom: r.bottom, left: r.left, right: r.right,"
        " shown: !!hit && (hit === el || el.contains(hit))}; }"
    )
    assert seen["top"] >= 0, f"{what} starts above the screen: {seen}"
    assert seen["bottom"] <= PHONE["height"] + 0.5, f"{what} ends below the screen: {seen}"
    assert seen["left"] >= 0, f"{what} starts left of the screen: {seen}"
    assert seen["right"] <= PHONE["width"] + 0.5, f"{what} ends right of the screen: {seen}"
    assert seen["shown"], f"{what} is covered or cut off by a scroll area: {seen}"


def composer_in_view(page: Page, when: str) -> None:
    in_view(composer(page), f"the composer ({when})")
    in_view(page.get_by_role("button", name=re.compile("^(Send|Stop)$")).first, f"Send ({when})")
    in_view(page.get_by_role("combobox", name="Model"), f"the model picker ({when})")
    in_view(page.get_by_role("combobox", name="Permission mode"), f"the mode picker ({when})")


def test_a_card_and_the_composer_both_in_reach_on_a_phone(browser: Browser, stack: Stack) -> None:
    ctx = browser.new_context(base_url=stack.url, viewport=PHONE, is_mobile=True, has_touch=True)
    ctx.set_default_timeout(15_000)
    try:
        phone = ctx.new_page()
        phone.goto("/")
        login(phone)
        phone.get_by_label("New workspace from a GitHub issue").fill(ISSUE)
        phone.get_by_role("button", name="Create").tap()
        expect(phone).to_have_url(re.compile(r"/w/[^/]+$"))
        expect(phone.get_by_text("Ready to start")).to_be_visible(timeout=30_000)
        mode = phone.get_by_role("combobox", name="Permission mode")
        mode.select_option("plan")
        expect(mode).to_have_value("plan")

        composer(phone).fill("rename the widget")
        phone.get_by_role("button", name="Send").tap()
        card = phone.get_by_test_id("plan-card")
        expect(card.locator("h1")).to_have_text("Demo plan")
        composer_in_view(phone, "a plan card open")
        in_view(card.locator(".prompt-kind"), "the plan card's title")
        comment = card.get_by_role("textbox", name=re.compile("send the plan back"))
        keep = card.get_by_role("button", name="Keep planning")
        approve = card.get_by_role("button", name="Approve plan")
        for loc, what in [(comment, "the comment"), (keep, "Keep planning"), (approve, "Approve")]:
            reachable(loc, what)  # scrolled to in the card's own area...
            in_view(loc, what)
            composer_in_view(phone, f"scrolled to {what}")  # ...the composer still there
        # Typing in the composer with the card open: the card stays where it was.
        composer(phone).tap()
        composer(phone).fill("a thought for later")
        in_view(approve, "Approve, after typing")
        composer(phone).fill("")
        approve.tap()
        expect(card).to_have_count(0)
        wait_results(phone, 1)

        composer(phone).fill("use the permission tool")
        phone.get_by_role("button", name="Send").tap()
        permission = phone.get_by_test_id("permission-card")
        expect(permission).to_be_visible(timeout=20_000)
        composer_in_view(phone, "a permission card open")
        for name in ("Allow", "Deny"):
            button = permission.get_by_role("button", name=name)
            reachable(button, name)
            in_view(button, name)
            composer_in_view(phone, f"scrolled to {name}")
        permission.get_by_role("button", name="Allow").tap()
        expect(permission).to_have_count(0)
        wait_results(phone, 2)
    finally:
        ctx.close()
