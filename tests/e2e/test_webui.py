"""The web UI in a real Chromium against the real stack (``controlplane dev``, demo engine).

The tests run in order and share one stack, one browser and one logged-in
page, as one person's visit would: log in, create a workspace, talk, answer,
approve and deny, reload, watch from a second window, lose the VM.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import PASSWORD, USER, Stack, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ISSUE_URL = "https://github.com/acme/widgets/issues/7"
ISSUE_TITLE = "Widgets render twice on reload"

#: Shared between the ordered tests of this module.
state: dict[str, Any] = {}

# Records, in the page, every text the last assistant message showed, to prove
# that the reply appeared in parts before it was complete.
RECORD_STREAM = """
() => {
  window.__parts = [];
  const root = document.querySelector('.messages');
  const obs = new MutationObserver(() => {
    const all = document.querySelectorAll('[data-testid=assistant-message]');
    const last = all[all.length - 1];
    if (!last) return;
    const text = Array.from(last.querySelectorAll('.markdown')).map((m) => m.innerText).join('\\n');
    const parts = window.__parts;
    if (parts[parts.length - 1] !== text) parts.push(text);
  });
  obs.observe(root, { subtree: true, childList: true, characterData: true });
}
"""

# Records every status the session header and the composer went through.
RECORD_STATUS = """
() => {
  window.__statuses = [];
  const note = () => {
    const badge = document.querySelector('.session-head [data-testid=status-badge]');
    const box = document.querySelector('#composer-input');
    const s = (badge ? badge.dataset.status : '?')
      + (box && box.disabled ? ':disabled' : ':enabled');
    const all = window.__statuses;
    if (all[all.length - 1] !== s) all.push(s);
  };
  note();
  new MutationObserver(note).observe(
    document.body, { subtree: true, childList: true, attributes: true, characterData: true });
}
"""


# Records every text the connection indicator showed.
RECORD_CONNECTION = """
() => {
  window.__connection = [];
  const note = () => {
    const el = document.querySelector('[data-testid=connection]');
    const all = window.__connection;
    const text = el ? el.innerText : '?';
    if (all[all.length - 1] !== text) all.push(text);
  };
  note();
  new MutationObserver(note).observe(
    document.body, { subtree: true, childList: true, characterData: true });
}
"""


def login(page: Page, password: str = PASSWORD) -> None:
    page.get_by_label("Username").fill(USER)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def composer(page: Page):  # type: ignore[no-untyped-def]
    return page.get_by_role("textbox", name="Message to Claude")


def send(page: Page, text: str) -> None:
    box = composer(page)
    expect(box).to_be_enabled()
    box.fill(text)
    box.press("Enter")


def results(page: Page) -> int:
    return page.get_by_test_id("result-line").count()


def wait_results(page: Page, n: int, timeout: float = 30_000) -> None:
    expect(page.get_by_test_id("result-line")).to_have_count(n, timeout=timeout)


def test_login_rejects_a_wrong_password_then_signs_in(page: Page, stack: Stack) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", name="FF Cloud")).to_be_visible()
    screenshot(page, "login")
    login(page, "not-the-password")
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    login(page)
    expect(page.get_by_test_id("connection")).to_have_text("Connected")
    expect(page.get_by_label("New workspace from a GitHub issue")).to_be_visible()


def test_create_workspace_from_an_issue_url(page: Page) -> None:
    field = page.get_by_label("New workspace from a GitHub issue")
    field.fill("https://github.com/acme/widgets/pull/7")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#issue-url-error")).to_have_text(
        "Expected https://github.com/OWNER/REPO/issues/NUMBER"
    )
    expect(field).to_have_attribute("aria-invalid", "true")
    field.fill(ISSUE_URL)
    expect(page.locator("#issue-url-error")).to_have_count(0)
    page.get_by_role("button", name="Create").click()
    item = page.get_by_test_id("workspace-item").filter(has_text="acme/widgets#7")
    expect(item).to_have_count(1)
    expect(page).to_have_url(re.compile(r"/w/[^/]+$"))
    state["path"] = page.url.split("//", 1)[1].split("/", 1)[1]
    # The live status badge settles on idle once the VM has prepared the workspace.
    expect(item.get_by_test_id("status-badge")).to_have_attribute(
        "data-status", "idle", timeout=30_000
    )
    expect(page.locator(".session-head")).to_contain_text("acme/widgets#7")
    expect(page.get_by_text("Ready to start")).to_be_visible()


def test_reply_streams_in_parts(page: Page) -> None:
    page.evaluate(RECORD_STREAM)
    send(page, "hello from the browser")
    expect(
        page.get_by_test_id("user-message").filter(has_text="hello from the browser")
    ).to_have_count(1)
    wait_results(page, 1)
    final = page.get_by_test_id("assistant-message").last.locator(".markdown").inner_text()
    assert "hello from the browser" in final
    parts: list[str] = page.evaluate("window.__parts")
    partial = [p for p in parts if p and p != final and final.startswith(p.rstrip("…"))]
    assert len(partial) >= 3, f"the reply did not stream in parts: {parts[:5]}"
    line = page.get_by_test_id("result-line").last.inner_text()
    assert re.search(r"Done.*\d.*(ms|s).*tokens.*\$", line, re.S), line
    # Thinking is there, collapsed.
    thinking = page.locator("details.thinking").last
    expect(thinking).to_be_visible()
    expect(thinking).not_to_have_attribute("open", "")
    screenshot(page, "session")


def test_answer_a_question(page: Page) -> None:
    before = results(page)
    send(page, "please ask me a question")
    card = page.get_by_test_id("question-card")
    expect(card).to_be_visible(timeout=20_000)
    expect(card).to_contain_text("Which colour should the demo button be?")
    expect(card).to_contain_text("Calm and readable")
    expect(card).to_contain_text("Question 1 of 2")
    # The title counts the workspaces waiting for the user.
    expect(page).to_have_title("(1) FF Cloud")
    screenshot(page, "question")
    card.get_by_role("radio", name=re.compile("Teal")).check()
    card.get_by_role("button", name="Next").click()
    expect(card).to_contain_text("Which extras should the demo add?")
    card.get_by_role("checkbox", name=re.compile("Dark mode")).check()
    card.get_by_role("textbox", name=re.compile("Other answer")).fill("Balloons")
    card.get_by_role("button", name="Submit answers").click()
    expect(card).to_have_count(0)
    expect(page.get_by_test_id("prompt-record").last).to_have_text("Question: answered by you")
    expect(page).to_have_title("FF Cloud")
    wait_results(page, before + 1)
    reply = page.get_by_test_id("assistant-message").last.inner_text()
    for chosen in ["Teal", "Dark mode", "Balloons"]:
        assert chosen in reply, reply
    tool = page.get_by_test_id("tool-card").filter(has_text="AskUserQuestion").last
    expect(tool).to_contain_text("Success")


def test_allow_one_permission_and_deny_another_with_a_reason(page: Page) -> None:
    before = results(page)
    send(page, "use the permission tool")
    card = page.get_by_test_id("permission-card")
    expect(card).to_be_visible(timeout=20_000)
    expect(card).to_contain_text("RollDice")
    expect(card).to_contain_text('"sides": 20')
    screenshot(page, "permission")
    card.get_by_role("button", name="Allow").click()
    expect(card).to_have_count(0)
    expect(page.get_by_test_id("prompt-record").last).to_have_text(
        "Permission for RollDice: allowed by you"
    )
    wait_results(page, before + 1)
    assert "The die shows" in page.get_by_test_id("assistant-message").last.inner_text()

    send(page, "permission again please")
    card = page.get_by_test_id("permission-card")
    expect(card).to_be_visible(timeout=20_000)
    card.get_by_role("textbox", name=re.compile("Reason")).fill("not today")
    card.get_by_role("button", name="Deny").click()
    expect(card).to_have_count(0)
    expect(page.get_by_test_id("prompt-record").last).to_have_text(
        "Permission for RollDice: denied by you"
    )
    wait_results(page, before + 2)
    assert "not today" in page.get_by_test_id("assistant-message").last.inner_text()
    denied = page.get_by_test_id("tool-card").filter(has_text="RollDice").last
    expect(denied).to_contain_text("Error")


def conversation_text(page: Page) -> str:
    return page.locator(".messages").inner_text()


def user_messages(page: Page) -> list[str]:
    """The texts of the user messages shown, in order."""
    texts: list[str] = page.get_by_test_id("user-message").locator(".user-text").all_inner_texts()
    return texts


def test_reload_mid_stream_shows_the_conversation_whole_without_duplicates(page: Page) -> None:
    before = results(page)
    users_before = page.get_by_test_id("user-message").count()
    send(page, "tell me something long")
    last = page.get_by_test_id("assistant-message").last
    expect(last).to_contain_text("(3) This is a long reply", timeout=20_000)
    page.reload()
    expect(composer(page)).to_be_visible()
    expect(page.get_by_test_id("connection")).to_have_text("Connected")
    # The stream goes on after the reload, from where the snapshot ended.
    expect(page.get_by_test_id("assistant-message").last).to_contain_text(
        "(8) This is a long reply", timeout=20_000
    )
    page.get_by_role("button", name="Stop").click()
    wait_results(page, before + 1)
    expect(page.get_by_test_id("result-line").last).to_contain_text("Stopped")
    text = conversation_text(page)
    assert page.get_by_test_id("user-message").count() == users_before + 1
    for message in ["hello from the browser", "please ask me a question", "tell me something long"]:
        assert user_messages(page).count(message) == 1, user_messages(page)
    numbers = [int(n) for n in re.findall(r"\((\d+)\) This is a long reply", text)]
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    assert len(numbers) >= 8
    assert text.count("The die shows") == 1


def test_a_second_window_sees_the_same_stream_and_its_prompt_closes(
    page: Page, browser: Browser, stack: Stack
) -> None:
    other_ctx = browser.new_context(base_url=stack.url, viewport={"width": 1000, "height": 800})
    other_ctx.set_default_timeout(15_000)
    try:
        other = other_ctx.new_page()
        other.goto("/" + state["path"])
        login(other)
        expect(other.get_by_text("hello from the browser", exact=True)).to_be_visible()
        other.evaluate(RECORD_STREAM)
        before = results(page)
        send(page, "question for both windows")
        expect(
            other.get_by_test_id("user-message").filter(has_text="question for both windows")
        ).to_be_visible()
        card_here = page.get_by_test_id("question-card")
        card_there = other.get_by_test_id("question-card")
        expect(card_there).to_be_visible(timeout=20_000)
        expect(card_here).to_be_visible()
        parts: list[str] = other.evaluate("window.__parts")
        whole = parts[-1] if parts else ""
        assert "two questions" in whole, parts
        assert any(p and p != whole and whole.startswith(p) for p in parts), parts
        card_here.get_by_role("radio", name=re.compile("Orange")).check()
        card_here.get_by_role("button", name="Next").click()
        card_here.get_by_role("checkbox", name=re.compile("Sounds")).check()
        card_here.get_by_role("button", name="Submit answers").click()
        expect(card_there).to_have_count(0)
        expect(other.get_by_test_id("prompt-record").last).to_have_text(
            re.compile("Question: answered by")
        )
        wait_results(page, before + 1)
        wait_results(other, before + 1)
        assert "Orange" in other.get_by_test_id("assistant-message").last.inner_text()
        assert user_messages(other).count("question for both windows") == 1
    finally:
        other_ctx.close()


def test_vm_goes_offline_and_comes_back(page: Page, context: BrowserContext, stack: Stack) -> None:
    agents = stack.pids("vmagent")
    assert agents, "no vmagent process in the stack:\n" + stack.output()
    # A second tab on the list only: its badge follows a statusOnly subscription.
    lister = context.new_page()
    lister.goto("/")
    badge = lister.get_by_test_id("workspace-item").filter(has_text="acme/widgets#7")
    badge = badge.get_by_test_id("status-badge")
    expect(badge).to_have_attribute("data-status", "idle")
    page.evaluate(RECORD_STATUS)
    for pid in agents:
        # A short-lived child whose command line names a vmagent directory
        # (a git run) may have ended since it was listed.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # (wait_for_function would need eval, which the app's CSP forbids: poll instead.)
    deadline = time.monotonic() + 20
    statuses: list[str] = []
    while time.monotonic() < deadline:
        statuses = page.evaluate("window.__statuses")
        if any(s.startswith("offline") for s in statuses):
            break
        time.sleep(0.1)
    assert "offline:disabled" in statuses, statuses
    expect(badge).to_have_attribute("data-status", "offline")
    # The supervisor starts the vmagent again; the session comes back.
    expect(page.locator(".session-head [data-testid=status-badge]")).to_have_attribute(
        "data-status", "idle", timeout=40_000
    )
    expect(composer(page)).to_be_enabled()
    expect(badge).to_have_attribute("data-status", "idle", timeout=30_000)
    lister.close()
    deadline = time.monotonic() + 10
    while not stack.pids("vmagent") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert set(stack.pids("vmagent")).isdisjoint(agents)
    before = results(page)
    send(page, "are you back")
    wait_results(page, before + 1)
    assert "are you back" in page.get_by_test_id("assistant-message").last.inner_text()
    assert user_messages(page).count("hello from the browser") == 1


def test_token_renewed_on_the_live_socket(page: Page, relay_frames: list[str]) -> None:
    """Access tokens live 25 s here: the page renews its token and sends it with `auth`."""
    deadline = time.monotonic() + 30
    while not any(f.startswith('main > {"type":"auth"') for f in relay_frames):
        assert time.monotonic() < deadline, "the page never sent auth on its socket"
        page.wait_for_timeout(200)
    expect(page.get_by_test_id("connection")).to_have_text("Connected")
    before = results(page)
    send(page, "still there after the renewal")
    wait_results(page, before + 1)


def test_relayd_restart_mid_stream_loses_nothing(page: Page, stack: Stack) -> None:
    relays = [pid for pid in stack.pids("relayd") if "--listen" in _cmdline(pid)]
    assert relays, "no relayd process in the stack:\n" + stack.output()
    page.evaluate(RECORD_CONNECTION)
    before = results(page)
    send(page, "one more long one")
    expect(page.get_by_test_id("assistant-message").last).to_contain_text(
        "(2) This is a long reply", timeout=20_000
    )
    for pid in relays:
        os.kill(pid, signal.SIGKILL)
    # The supervisor starts relayd again; the page reconnects and resumes from lastSeq.
    expect(page.get_by_test_id("assistant-message").last).to_contain_text(
        "(9) This is a long reply", timeout=40_000
    )
    seen: list[str] = page.evaluate("window.__connection")
    assert "Reconnecting…" in seen, seen
    expect(page.get_by_test_id("connection")).to_have_text("Connected")
    page.get_by_role("button", name="Stop").click()
    wait_results(page, before + 1)
    last = page.get_by_test_id("assistant-message").last.inner_text()
    numbers = [int(n) for n in re.findall(r"\((\d+)\) This is a long reply", last)]
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    assert user_messages(page).count("one more long one") == 1


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_phone_sized_screen(browser: Browser, stack: Stack) -> None:
    ctx = browser.new_context(
        base_url=stack.url, viewport={"width": 390, "height": 800}, is_mobile=True, has_touch=True
    )
    ctx.set_default_timeout(15_000)
    try:
        phone = ctx.new_page()
        phone.goto("/")
        login(phone)
        item = phone.get_by_test_id("workspace-item").first
        expect(item).to_be_visible()
        screenshot(phone, "phone-list")
        item.locator("a").click()
        expect(composer(phone)).to_be_visible()
        expect(phone.locator(".sidebar")).to_be_hidden()
        send(phone, "permission from the phone")
        card = phone.get_by_test_id("permission-card")
        expect(card).to_be_visible(timeout=20_000)
        box = card.bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 390
        screenshot(phone, "phone-session")
        card.get_by_role("button", name="Allow").click()
        expect(card).to_have_count(0)
        phone.get_by_role("button", name="Back to workspaces").click()
        expect(phone.get_by_test_id("workspace-item").first).to_be_visible()
    finally:
        ctx.close()


def test_keyboard_only_delete_with_confirmation(page: Page) -> None:
    page.goto("/")
    expect(page.get_by_test_id("connection")).to_have_text("Connected")
    field = page.get_by_label("New workspace from a GitHub issue")
    field.fill("https://github.com/acme/widgets/issues/8")
    field.press("Enter")
    item = page.get_by_test_id("workspace-item").filter(has_text="acme/widgets#8")
    expect(item).to_have_count(1)
    expect(item).to_contain_text("Dark mode for the settings page")
    # Settled first: an item moves to another group of the list when its status changes.
    expect(item.get_by_test_id("status-badge")).to_have_attribute(
        "data-status", "idle", timeout=30_000
    )
    screenshot(page, "workspaces")
    delete = item.get_by_role("button", name=re.compile("^Delete"))
    delete.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(item).to_have_count(1)
    delete.focus()
    page.keyboard.press("Enter")
    dialog.get_by_role("button", name="Delete workspace").focus()
    page.keyboard.press("Enter")
    expect(item).to_have_count(0)
    expect(page.get_by_test_id("workspace-item").filter(has_text="acme/widgets#7")).to_have_count(1)
