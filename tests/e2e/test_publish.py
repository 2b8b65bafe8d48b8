"""Commit & push and the pull request in Chromium, through relayd, against real parts.

The VM clones a local bare repository through ``file://`` and talks to the fake
GitHub REST API (tests/support/fake_github.py) on loopback: the push is checked
in the bare repository, the pull request in what the fake was asked.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import Stack, record_frames, run_stack, screenshot
from tests.e2e.test_webui import login, send, wait_results
from tests.support.fake_github import FakeGitHub, fake_github
from tests.vmagent.gitrepo import git

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

ISSUE = "https://github.com/acme/widgets/issues/8"  # "Dark mode for the settings page"
TOKEN = "ghp_e2e_token_never_in_the_browser"


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    """The trio fake, served from a thread for the duration of the module."""
    holder: list[FakeGitHub] = []
    ready, stop = threading.Event(), threading.Event()

    async def main() -> None:
        async with fake_github() as fake:
            holder.append(fake)
            ready.set()
            await trio.to_thread.run_sync(stop.wait)

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    assert ready.wait(10), "the fake GitHub did not start"
    try:
        yield holder[0]
    finally:
        stop.set()
        thread.join(10)


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file:// base holding acme/widgets.git with one commit on main."""
    base = tmp_path_factory.mktemp("origin")
    bare = base / "acme" / "widgets.git"
    bare.parent.mkdir(parents=True)
    git("init", "--bare", "--quiet", str(bare))
    seed = base / "seed"
    git("init", "--quiet", str(seed))
    (seed / "README.md").write_text("# Widgets\n")
    git("add", "README.md", cwd=seed)
    git("commit", "--quiet", "-m", "first", cwd=seed)
    git("push", "--quiet", str(bare), "HEAD:refs/heads/main", cwd=seed)
    return base


@pytest.fixture(scope="module")
def publish_stack(
    tmp_path_factory: pytest.TempPathFactory, github: FakeGitHub, origin: Path
) -> Iterator[Stack]:
    token = tmp_path_factory.mktemp("secrets") / "github-token"
    token.write_text(TOKEN + "\n")
    env = {
        "CONTROLPLANE_LOCAL_NO_CLONE": "false",
        "VMAGENT_CLONE": "1",
        "CONTROLPLANE_LOCAL_GIT_BASE_URL": f"file://{origin}",
        "VMAGENT_GITHUB_TOKEN_FILE": str(token),
        "VMAGENT_GITHUB_API_URL": github.url,
        "VMAGENT_GIT_AUTHOR_NAME": "E2E Author",
        "VMAGENT_DEMO_DELAY": "0",
    }
    with run_stack(tmp_path_factory.mktemp("publish"), env) as running:
        yield running


@pytest.fixture(scope="module")
def page(browser: Browser, publish_stack: Stack) -> Iterator[Page]:
    ctx = browser.new_context(base_url=publish_stack.url, viewport={"width": 1400, "height": 860})
    ctx.set_default_timeout(20_000)
    p = ctx.new_page()
    record_frames(p, "publish")
    try:
        yield p
    finally:
        ctx.close()


def test_commit_push_and_open_a_pull_request(page: Page, github: FakeGitHub, origin: Path) -> None:
    bodies: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: bodies.append(str(f))))
    page.goto("/")
    login(page)
    page.get_by_label("New workspace from a GitHub issue").fill(ISSUE)
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(re.compile(r"/w/[^/]+$"))
    item = page.get_by_test_id("workspace-item").filter(has_text="acme/widgets#8")
    expect(item.get_by_test_id("status-badge")).to_have_attribute(
        "data-status", "idle", timeout=30_000
    )
    send(page, "edit: dark mode everywhere")
    wait_results(page, 1)
    panels = page.get_by_role("complementary", name="Workspace panels")
    changes = panels.get_by_role("list", name="Changed files")
    expect(changes.get_by_role("button", name="notes.md")).to_contain_text("uncommitted")

    publish = panels.get_by_role("region", name="Commit, push and pull request")
    publish.get_by_label("Commit message").fill("Dark mode: a note")
    publish.get_by_role("button", name="Commit & push").click()
    expect(publish.get_by_text("Committed and pushed.")).to_be_visible()
    expect(changes.get_by_role("button", name="notes.md")).not_to_contain_text("uncommitted")
    bare = origin / "acme" / "widgets.git"
    assert git("log", "-1", "--format=%an|%s", "ff/issue-8", cwd=bare).strip() == (
        "E2E Author|Dark mode: a note"
    )
    assert "dark mode everywhere" in git("show", "ff/issue-8:notes.md", cwd=bare)

    publish.get_by_role("button", name="Create pull request").click()
    link = publish.get_by_role("link", name="Pull request #100: open")
    expect(link).to_have_attribute("href", "https://github.com/acme/widgets/pull/100")
    # The session's header shows it too.
    session = page.get_by_role("main", name=re.compile(r"^Session "))
    header_link = session.get_by_role("link", name="Pull request #100: open")
    expect(header_link).to_have_attribute("href", "https://github.com/acme/widgets/pull/100")
    asked: list[Any] = [r.json for r in github.requests if r.method == "POST"]
    assert len(asked) == 1
    assert asked[0]["head"] == "ff/issue-8"
    assert asked[0]["base"] == "main"
    assert asked[0]["title"] == "Dark mode for the settings page"
    assert "Closes #8" in asked[0]["body"]
    screenshot(page, "panel-pull-request")

    # Merged on GitHub: a refresh shows it.
    github.set_pull_state("acme", "widgets", 100, "merged")
    panels.get_by_role("button", name="Refresh the panel").click()
    expect(publish.get_by_role("link", name="Pull request #100: merged")).to_be_visible()
    expect(session.get_by_role("link", name="Pull request #100: merged")).to_be_visible()
    # The token stayed on the VM.
    assert not any(TOKEN in b for b in bodies)
