"""A browser that falls behind relayd's log gets a fresh snapshot in-band, and the view holds.

Its own stack, with a log of 20 messages per workspace (``--replay-messages``
as ``RELAYD_REPLAY_MESSAGES``) and a demo engine that streams its words with
no pause, so that relayd reads the VM's words many to a read and the page's
place falls out of the log: relayd sends it ``subscribed`` (mode
``snapshot``) and a ``messages_snapshot`` on the same socket. The page must
show the conversation whole, once, without repainting what it showed already
and without moving what the reader scrolled to.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import Stack, record_frames, run_stack
from tests.e2e.test_webui import ISSUE_URL, login, send, wait_results

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

#: Marks the rendered messages and counts any of them taken out of the page.
WATCH_MESSAGES = """
() => {
  window.__removed = 0;
  document.querySelectorAll('[data-testid=assistant-message]').forEach((el, i) => {
    el.dataset.mark = 'seen-' + i;
  });
  new MutationObserver((records) => {
    for (const r of records) {
      for (const n of r.removedNodes) {
        if (n.nodeType === 1 && (n.matches('[data-testid=assistant-message]')
            || n.querySelector('[data-testid=assistant-message]'))) window.__removed++;
      }
    }
  }).observe(document.querySelector('.messages'), { subtree: true, childList: true });
}
"""


@pytest.fixture(scope="module")
def small_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"RELAYD_REPLAY_MESSAGES": "20", "VMAGENT_DEMO_DELAY": "0"}
    with run_stack(tmp_path_factory.mktemp("small-log"), env) as running:
        yield running


@pytest.fixture(scope="module")
def page(browser: Browser, small_log: Stack) -> Iterator[Page]:
    ctx = browser.new_context(base_url=small_log.url, viewport={"width": 1280, "height": 700})
    ctx.set_default_timeout(20_000)
    p = ctx.new_page()
    record_frames(p, "small-log")
    try:
        yield p
    finally:
        ctx.close()


def subscribed_modes(frames: list[str]) -> list[str]:
    """The ``mode`` of every ``subscribed`` the page received, in order."""
    modes = []
    for text in frames:
        try:
            msg: dict[str, Any] = json.loads(text)
        except ValueError:
            continue
        if msg.get("type") == "subscribed" and msg.get("mode") != "status":
            modes.append(str(msg.get("mode")))
    return modes


def test_a_fresh_snapshot_in_band_keeps_the_view_whole_and_in_place(page: Page) -> None:
    received: list[str] = []
    closed: list[str] = []

    def on_socket(ws: Any) -> None:
        ws.on("framereceived", lambda f: received.append(f if isinstance(f, str) else ""))
        ws.on("close", lambda _: closed.append("closed"))

    page.on("websocket", on_socket)
    page.goto("/")
    login(page)
    page.get_by_label("New workspace from a GitHub issue").fill(ISSUE_URL)
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_text("Ready to start")).to_be_visible(timeout=30_000)
    # A first long reply, all of it on the page.
    send(page, "tell me something long")
    wait_results(page, 1)
    expect(page.get_by_test_id("assistant-message").last).to_contain_text("(40) This is")
    # The reader scrolls up into it, and the page watches its messages.
    scroller = page.locator(".scroller")
    scroller.evaluate("el => { el.scrollTop = Math.floor(el.scrollHeight / 3); }")
    page.wait_for_timeout(200)
    position = scroller.evaluate("el => el.scrollTop")
    assert position > 0
    page.evaluate(WATCH_MESSAGES)
    seen = len(received)
    # A second long reply, asked for from another window of the same user (the
    # page that sends follows the stream), streams in faster than this page
    # reads relayd's log.
    other = page.context.new_page()
    try:
        other.goto(page.url)
        send(other, "and another long one")
        wait_results(page, 2)
    finally:
        other.close()
    later = subscribed_modes(received[seen:])
    assert "snapshot" in later, f"relayd sent no fresh snapshot in-band: {later}"
    assert not closed, "the socket closed: the snapshot was not in-band"
    # The whole conversation, once: two replies, each numbered 1 to 40 in order.
    text = page.locator(".messages").inner_text()
    numbers = [int(n) for n in re.findall(r"\((\d+)\) This is a long reply", text)]
    assert numbers == list(range(1, 41)) * 2, numbers
    assert page.get_by_test_id("assistant-message").count() == 2
    # Nothing the page showed was taken out and painted again, and the reader
    # is where they were.
    assert page.evaluate("window.__removed") == 0
    first = page.get_by_test_id("assistant-message").first
    assert first.evaluate("el => el.dataset.mark") == "seen-0"
    assert scroller.evaluate("el => el.scrollTop") == position
