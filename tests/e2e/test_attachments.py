"""Images and text files in the composer, in a real Chromium against the real stack
(demo engine): picked, pasted and dropped, previewed (a large one shrunk to 1568 pixels),
one removed by keyboard, refused ones saying why, sent, shown in the transcript and
after a reload, held with a queued message, and the phone layout.

Its own browser context and workspace (acme/widgets#21) on the shared stack.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, FilePayload, Page, expect

from tests.e2e.conftest import Stack, record_frames, screenshot
from tests.e2e.test_webui import composer, login, send, wait_results
from tests.support.images import png

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ISSUE_URL = "https://github.com/acme/widgets/issues/21"

#: Paste a file into the composer as a browser does for a screenshot (files only).
PASTE = """
([name, type, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], name, { type }));
  const box = document.querySelector('#composer-input');
  box.focus();
  const init = { clipboardData: dt, bubbles: true, cancelable: true };
  box.dispatchEvent(new ClipboardEvent('paste', init));
}
"""


#: Drop a file on the composer (dragover first, as a browser does: it must be accepted).
DROP = """
([name, type, text]) => {
  const dt = new DataTransfer();
  dt.items.add(new File([text], name, { type }));
  const form = document.querySelector('form.composer');
  const over = new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true });
  form.dispatchEvent(over);
  const accepted = over.defaultPrevented;
  form.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  return accepted;
}
"""


@pytest.fixture(scope="module")
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    ctx = browser.new_context(base_url=stack.url, viewport={"width": 1280, "height": 860})
    ctx.set_default_timeout(15_000)
    p = ctx.new_page()
    record_frames(p, "attachments")
    try:
        yield p
    finally:
        ctx.close()


def previews(page: Page):  # type: ignore[no-untyped-def]
    return page.get_by_test_id("attach-preview")


def pick(page: Page, *files: tuple[str, str, bytes]) -> None:
    payloads: list[FilePayload] = [{"name": n, "mimeType": t, "buffer": b} for n, t, b in files]
    page.get_by_test_id("attach-input").set_input_files(payloads)


def test_pick_paste_preview_send_and_see_them_in_the_transcript(page: Page) -> None:
    page.goto("/")
    login(page)
    page.get_by_label("New workspace from a GitHub issue").fill(ISSUE_URL)
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(re.compile(r"/w/[^/]+$"))
    expect(page.get_by_text("Ready to start")).to_be_visible(timeout=30_000)

    # Picked: a large screenshot-like PNG and a text file; refused: a fake image, a binary.
    pick(
        page,
        ("wide.png", "image/png", png(2400, 1200, (240, 120, 20))),
        ("notes.txt", "text/plain", b"the square is orange\n"),
        ("fake.png", "image/png", b"not an image at all"),
        ("blob.bin", "application/octet-stream", bytes([0, 159, 146, 150])),
    )
    expect(previews(page)).to_have_count(2)
    wide = previews(page).filter(has_text="wide.png")
    expect(wide).to_contain_text("1568\u00d7784 (from 2400\u00d71200)")  # x: the times sign
    expect(previews(page).filter(has_text="notes.txt")).to_contain_text("21 characters")
    refused = page.get_by_test_id("attach-refused")
    expect(refused).to_contain_text("fake.png: the browser cannot read this image")
    expect(refused).to_contain_text("blob.bin: not an image (PNG, JPEG, GIF or WebP) nor")

    # Pasted: a screenshot goes straight into the tray.
    page.evaluate(PASTE, ["pasted.png", "image/png", base64.b64encode(png(40, 30)).decode()])
    expect(previews(page)).to_have_count(3)

    # Dropped: a file dragged onto the composer.
    assert page.evaluate(DROP, ["dropped.log", "text/plain", "line 1\n"]) is True
    expect(previews(page)).to_have_count(4)
    expect(previews(page).last).to_contain_text("dropped.log")

    # Removed by keyboard alone: focus its button, Enter.
    for name in ("pasted.png", "dropped.log"):
        remove = page.get_by_role("button", name=f"Remove {name}")
        remove.focus()
        page.keyboard.press("Enter")
    expect(previews(page)).to_have_count(2)
    composer(page).fill("what is in these?")
    screenshot(page, "attachments-composer")
    composer(page).press("Enter")

    # Sent: the tray empties, the transcript shows the image and the file.
    expect(previews(page)).to_have_count(0)
    user = page.get_by_test_id("user-message").filter(has_text="what is in these?")
    expect(user).to_have_count(1)
    image = user.get_by_test_id("message-image")
    expect(image).to_have_count(1)
    assert image.evaluate("(img) => [img.naturalWidth, img.naturalHeight]") == [1568, 784]
    expect(user.locator("details summary")).to_have_text("notes.txt · 21 characters")
    wait_results(page, 1)
    reply = page.get_by_test_id("assistant-message").last.inner_text()
    assert "got 2 files" in reply, reply
    assert "wide.png" in reply
    assert "notes.txt (text, 21 characters)" in reply
    # An image opens larger and closes again, by keyboard too.
    button = user.get_by_role("button", name=re.compile(r"^Enlarge wide\.png"))
    button.focus()
    page.keyboard.press("Enter")
    expect(user.get_by_role("button", name=re.compile(r"^Shrink wide\.png"))).to_have_attribute(
        "aria-expanded", "true"
    )
    screenshot(page, "attachments")
    page.keyboard.press("Enter")

    # After a reload they come back from the snapshot.
    page.reload()
    user = page.get_by_test_id("user-message").filter(has_text="what is in these?")
    expect(user.get_by_test_id("message-image")).to_have_count(1)
    expect(user.locator("details summary")).to_have_text("notes.txt · 21 characters")


def test_a_queued_message_keeps_its_files(page: Page) -> None:
    before = page.get_by_test_id("result-line").count()
    send(page, "tell me something long")
    expect(page.get_by_test_id("assistant-message").last).to_contain_text(
        "This is a long reply", timeout=20_000
    )
    pick(page, ("later.png", "image/png", png(30, 20)))
    expect(previews(page)).to_have_count(1)
    send(page, "for after the turn")
    held = page.get_by_role("region", name="Queued messages").get_by_test_id("held-message")
    expect(held).to_have_count(1)
    expect(held).to_contain_text("later.png")
    expect(previews(page)).to_have_count(0)
    page.get_by_role("button", name="Stop").click()
    wait_results(page, before + 2)
    user = page.get_by_test_id("user-message").filter(has_text="for after the turn")
    expect(user.get_by_test_id("message-image")).to_have_count(1)
    assert "later.png" in page.get_by_test_id("assistant-message").last.inner_text()


def test_files_alone_and_the_phone_layout(browser: Browser, stack: Stack, page: Page) -> None:
    ctx = browser.new_context(
        base_url=stack.url, viewport={"width": 390, "height": 800}, is_mobile=True, has_touch=True
    )
    ctx.set_default_timeout(15_000)
    try:
        phone = ctx.new_page()
        phone.goto(page.url)
        login(phone)
        expect(composer(phone)).to_be_enabled(timeout=20_000)
        before = phone.get_by_test_id("result-line").count()
        attach = phone.get_by_role("button", name="Attach images or text files")
        expect(attach).to_be_visible()
        pick(
            phone,
            ("a.png", "image/png", png(800, 600)),
            ("b.png", "image/png", png(600, 800, (20, 120, 240))),
            ("c.md", "text/markdown", b"# Notes\n"),
        )
        expect(previews(phone)).to_have_count(3)
        for box in [previews(phone).nth(i).bounding_box() for i in range(3)]:
            assert box is not None
            assert box["x"] >= 0
        tray = phone.get_by_test_id("attach-previews").bounding_box()
        assert tray is not None
        assert tray["x"] + tray["width"] <= 390
        screenshot(phone, "phone-attachments")
        # Files without words are a message too.
        phone.get_by_role("button", name="Send").click()
        wait_results(phone, before + 1)
        reply = phone.get_by_test_id("assistant-message").last.inner_text()
        assert "got 3 files" in reply, reply
    finally:
        ctx.close()
