"""The demo engine's repository is a workspace the publishing ops accept.

Made by :func:`vmagent.engines.demo_repo.seed` in a workspace directory, it is
asked through the op server exactly as a client's panel asks: changes,
commit, push (checked in the bare origin beside the working tree), and a
pull request (refused clearly: the demo VM has no GitHub token).
"""

from __future__ import annotations

from pathlib import Path

from tests.vmagent.gitrepo import git
from tests.vmagent.test_publish import ISSUE, ask, server
from vmagent.engines import demo_repo
from vmagent.publish import PublishSettings


async def test_the_demo_repository_commits_and_pushes_to_its_own_origin(tmp_path: Path) -> None:
    workspace = tmp_path / "workspaces" / "w1"
    root = workspace / "work"
    assert await demo_repo.seed(root, ISSUE) is True
    origin = workspace / demo_repo.ORIGIN_NAME
    assert origin.is_dir()  # inside the workspace's own directory
    srv = server(root, PublishSettings())

    changes = await ask(srv, "changes")
    assert changes["ok"] is True, changes
    assert changes["result"]["branch"] == "ff/issue-8"
    assert changes["result"]["base"] == "origin/HEAD"  # as in a real clone
    files = {f["path"]: f for f in changes["result"]["files"]}
    assert files["README.md"]["uncommitted"] is True
    assert files["src/app.py"]["unpushed"] is True

    committed = await ask(srv, "commit", message="Demo: keep the README edit")
    assert committed["ok"] is True, committed
    assert committed["result"]["branch"] == "ff/issue-8"
    pushed = await ask(srv, "push")
    assert pushed["ok"] is True, pushed
    head = git("rev-parse", "refs/heads/ff/issue-8", cwd=origin).strip()
    assert head == committed["result"]["commit"]
    after = await ask(srv, "changes")
    assert not any(f["unpushed"] or f["uncommitted"] for f in after["result"]["files"])

    refused = await ask(srv, "pull_request", title="Demo")
    assert refused["ok"] is False
    assert refused["error"]["code"] == "forbidden"
    assert "no GitHub token" in refused["error"]["message"]
    # Made once: a second open keeps the repository and its history.
    assert await demo_repo.seed(root, ISSUE) is False
    assert git("rev-parse", "HEAD", cwd=root).strip() == head


async def test_an_older_demo_repository_gets_its_origin_and_branch(tmp_path: Path) -> None:
    root = tmp_path / "workspaces" / "w1" / "work"
    await demo_repo.seed(root, None)  # no issue: the old branch, as before
    assert git("symbolic-ref", "--short", "HEAD", cwd=root).strip() == demo_repo.BRANCH
    git("remote", "remove", "origin", cwd=root)

    assert await demo_repo.seed(root, ISSUE) is False
    assert git("symbolic-ref", "--short", "HEAD", cwd=root).strip() == "ff/issue-8"
    committed = await ask(server(root, PublishSettings()), "commit", message="Old demo")
    assert committed["ok"] is True, committed
    pushed = await ask(server(root, PublishSettings()), "push")
    assert pushed["ok"] is True, pushed


def test_the_branch_follows_the_issue() -> None:
    assert demo_repo.branch_for({"number": 12}) == "ff/issue-12"
    assert demo_repo.branch_for({"number": True}) == demo_repo.BRANCH
    assert demo_repo.branch_for(None) == demo_repo.BRANCH
