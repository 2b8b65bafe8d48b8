"""vmagent.publish through the op server: commit, push and pull request against real parts.

A real clone of a local bare repository (``file://``) and the fake GitHub
REST API on loopback; every effect is checked where it lands: the commit in
the bare repository, the pull request in what the fake was asked.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.fake_github import fake_github
from tests.vmagent.gitrepo import git, make_origin
from vmagent.op_server import OpServer
from vmagent.publish import (
    PublishSettings,
    Target,
    check_text,
    credential_env,
    pr_body,
    pr_summary,
    target_of,
)
from vmagent.workspace_ops import OpError, OpLimits
from wire.messages import Request

TOKEN = "ghp_secretsecretsecret"
ISSUE = {
    "url": "https://github.com/o/r/issues/8",
    "owner": "o",
    "repo": "r",
    "number": 8,
    "title": "Make it shine",
}


def workspace(tmp_path: Path) -> tuple[Path, Path]:
    """A clone on ff/issue-8 with an uncommitted change; and the bare origin."""
    base = make_origin(tmp_path)
    root = tmp_path / "w1"
    git("clone", "--quiet", f"{base}/o/r.git", str(root))
    git("checkout", "--quiet", "ff/issue-8", cwd=root)
    (root / "NEW.md").write_text("made by Claude\n")
    (root / "README.md").write_text("hello, changed\n")
    return root, tmp_path / "origin" / "o" / "r.git"


def server(root: Path, settings: PublishSettings, issue: dict[str, Any] | None = ISSUE) -> OpServer:
    return OpServer(
        lambda _f: None,
        lambda _ws: root,
        limits=OpLimits(),
        issue=lambda _ws: issue,
        publish=settings,
    )


async def ask(srv: OpServer, op: str, **args: object) -> dict[str, Any]:
    frame = await srv.answer(
        Request(workspace_id="w1", request_id="r1", op=op, args=dict(args), connection_id="c1")
    )
    reply: dict[str, Any] = json.loads(frame)
    return reply


def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "gh-token"
    path.write_text(TOKEN + "\n")
    return path


async def test_commit_push_and_pull_request_land_in_the_repository_and_on_github(
    tmp_path: Path,
) -> None:
    root, bare = workspace(tmp_path)
    async with fake_github() as gh:
        settings = PublishSettings(
            github_token_file=token_file(tmp_path),
            github_api_url=gh.url,
            author_name="Ada Author",
            author_email="ada@example.invalid",
        )
        srv = server(root, settings)
        assert (await ask(srv, "pr_status"))["result"] == {"pullRequest": None}

        committed = await ask(srv, "commit", message="Make it shine\n\nBoth files.")
        assert committed["ok"], committed
        sha = committed["result"]["commit"]
        # Nothing left uncommitted; the commit is the user's message, the author's name.
        assert git("status", "--porcelain", cwd=root) == ""
        assert git("log", "-1", "--format=%an <%ae>|%s", cwd=root).strip() == (
            "Ada Author <ada@example.invalid>|Make it shine"
        )
        again = await ask(srv, "commit", message="again")
        assert again["error"]["message"].startswith("nothing to commit")

        pushed = await ask(srv, "push")
        assert pushed["ok"], pushed
        # In the bare repository itself: the branch is the commit, with both files.
        assert git("rev-parse", "refs/heads/ff/issue-8", cwd=bare).strip() == sha
        assert git("show", "ff/issue-8:NEW.md", cwd=bare) == "made by Claude\n"
        assert git("rev-parse", "refs/heads/main", cwd=bare).strip() != sha
        # "changes" now counts the commit as pushed.
        changes = await ask(srv, "changes")
        files = changes["result"]["files"]
        assert {f["path"] for f in files} == {"NEW.md", "README.md", "WIP.md"}
        assert not any(f["unpushed"] or f["uncommitted"] for f in files), files

        opened = await ask(srv, "pull_request", body="Adds NEW.md.")
        assert opened["ok"], opened
        pr = opened["result"]["pullRequest"]
        assert pr == {
            "number": 100,
            "url": "https://github.com/o/r/pull/100",
            "state": "open",
            "title": "Make it shine",
        }
        (asked,) = [r for r in gh.requests if r.method == "POST"]
        assert asked.path == "/repos/o/r/pulls"
        assert asked.json["head"] == "ff/issue-8"
        assert asked.json["base"] == "main"
        assert asked.json["title"] == "Make it shine"
        assert asked.json["body"] == "Adds NEW.md.\n\nCloses #8"
        assert asked.headers["authorization"] == f"Bearer {TOKEN}"

        # Asking again finds the open one instead of failing.
        twice = await ask(srv, "pull_request", title="Other")
        assert twice["result"]["pullRequest"]["number"] == 100
        gh.set_pull_state("o", "r", 100, "merged")
        status = await ask(srv, "pr_status")
        assert status["result"]["pullRequest"]["state"] == "merged"
        gh.set_pull_state("o", "r", 100, "closed")
        assert (await ask(srv, "pr_status"))["result"]["pullRequest"]["state"] == "closed"
        head_asked = [r for r in gh.requests if r.method == "GET" and r.path.endswith("/pulls")]
        assert head_asked


async def test_failures_are_readable_errors_and_never_show_the_token(tmp_path: Path) -> None:
    root, bare = workspace(tmp_path)
    async with fake_github() as gh:
        no_token = server(root, PublishSettings(github_api_url=gh.url))
        refused = await ask(no_token, "pull_request")
        assert refused["error"] == {
            "code": "forbidden",
            "message": "this VM has no GitHub token (vmagent --github-token-file)",
        }
        assert gh.requests == []

        settings = PublishSettings(github_token_file=token_file(tmp_path), github_api_url=gh.url)
        srv = server(root, settings)
        gh.fail_with = 502
        failed = await ask(srv, "pull_request", title="T")
        assert failed["ok"] is False
        assert "GitHub answered HTTP 502" in failed["error"]["message"]

        assert (await ask(srv, "commit", message=""))["error"]["code"] == "bad_request"
        assert (await ask(srv, "commit", message=7))["error"]["code"] == "bad_request"
        assert (await ask(server(root, settings, None), "push"))["error"]["code"] == "not_found"

    # A push origin cannot take: the reply says why (and not the token).
    git("remote", "set-url", "origin", f"file://{tmp_path}/nowhere.git", cwd=root)
    pushed = await ask(srv, "push")
    assert pushed["ok"] is False
    assert pushed["error"]["message"].startswith("git push failed:")
    assert TOKEN not in json.dumps(pushed)
    # On another branch: refused before git runs.
    git("checkout", "--quiet", "-b", "elsewhere", cwd=root)
    other = await ask(srv, "commit", message="m")
    assert "not 'ff/issue-8'" in other["error"]["message"]
    assert git("rev-parse", "refs/heads/ff/issue-8", cwd=bare)


async def test_the_api_down_is_a_readable_error(tmp_path: Path) -> None:
    root, _ = workspace(tmp_path)
    settings = PublishSettings(
        github_token_file=token_file(tmp_path), github_api_url="http://127.0.0.1:9", api_timeout=2
    )
    reply = await ask(server(root, settings), "pr_status")
    assert reply["error"]["message"].startswith("GitHub could not be reached")


def test_the_token_reaches_git_as_a_header_in_the_environment_only() -> None:
    env = credential_env(TOKEN)
    assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    assert env["GIT_CONFIG_VALUE_0"].startswith("Authorization: Basic ")
    assert TOKEN not in env["GIT_CONFIG_VALUE_0"]  # base64, and only in the environment
    assert "GIT_CONFIG_COUNT" not in credential_env(None)


def test_git_reads_the_header_and_follows_no_redirect(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **credential_env(TOKEN)}
    shown = subprocess.run(
        ["git", "config", "--get-regexp", "^http\\."],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert "http.followredirects false" in shown
    assert any(line.startswith("http.extraheader Authorization: Basic ") for line in shown)


TARGET = Target("o", "r", 8, "https://github.com/o/r/issues/8", "ff/issue-8")


@given(st.text(max_size=200))
def test_every_pull_request_body_links_the_issue(body: str) -> None:
    out = pr_body(body, TARGET)
    assert "#8" in out or TARGET.url in out
    assert body.strip() in out or body in out


@pytest.mark.parametrize(
    ("data", "state"),
    [
        ({"number": 1, "state": "open"}, "open"),
        ({"number": 1, "state": "closed", "merged_at": None}, "closed"),
        ({"number": 1, "state": "closed", "merged_at": "2026-01-01T00:00:00Z"}, "merged"),
        ({"number": 1, "state": "weird"}, "closed"),
    ],
)
def test_pr_state_words(data: dict[str, Any], state: str) -> None:
    assert pr_summary(data)["state"] == state


ODD = st.none() | st.integers() | st.text(max_size=30) | st.lists(st.integers(), max_size=2)


@given(
    st.dictionaries(st.sampled_from(["owner", "repo", "number", "url", "title"]), ODD, max_size=5)
    | st.none()
)
def test_any_issue_is_a_target_or_a_readable_error(issue: dict[str, Any] | None) -> None:
    error: OpError | None = None
    try:
        target = target_of(issue)
    except OpError as exc:
        error = exc
    if error is not None:
        assert error.code in ("not_found", "bad_request")
        assert error.message
    else:
        assert target.branch == f"ff/issue-{target.number}"


@given(st.dictionaries(st.sampled_from(["message", "title", "body"]), ODD, max_size=3))
def test_any_commit_arguments_are_a_message_or_a_readable_error(args: dict[str, Any]) -> None:
    error: OpError | None = None
    try:
        message = check_text(args, "message", 100, required=True)
    except OpError as exc:
        error = exc
    if error is not None:
        assert error.code == "bad_request"
    else:
        assert message
        assert len(message) <= 100
