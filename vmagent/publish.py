"""The ops that publish a workspace: ``commit``, ``push``, ``pull_request``, ``pr_status``.

The VM makes these calls itself (it has the working tree, the branch and
the operator's GitHub token): the control plane never sees the token, the
browser never does. The token is read from ``--github-token-file`` on every
op (so it can be rotated without a restart) and reaches git only through
``GIT_CONFIG_*`` variables as an ``http.extraHeader``, never in argv or a
URL; the REST API gets it as a ``Bearer`` header. Nothing here logs it.

The pull request is found again by its head branch (``GET /pulls?head=``),
so nothing about it is stored on the VM.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import httpx

from vmagent.workdir import branch_name
from vmagent.workspace_ops import OpError, OpLimits, git
from wire.protocol import ErrorCode
from wire.repos import name_problem

DEFAULT_GITHUB_API_URL: Final = "https://api.github.com"
DEFAULT_AUTHOR_NAME: Final = "FF Cloud"
DEFAULT_AUTHOR_EMAIL: Final = "ffcloud@users.noreply.github.com"
#: Seconds a push may take, and a GitHub API call.
DEFAULT_PUSH_TIMEOUT: Final = 120.0
DEFAULT_API_TIMEOUT: Final = 20.0
#: Longest commit message, pull request title and body a client may send.
MAX_COMMIT_MESSAGE: Final = 10_000
MAX_PR_TITLE: Final = 256
MAX_PR_BODY: Final = 60_000
#: Longest token file read (a GitHub token is well under 1 KiB).
MAX_TOKEN_BYTES: Final = 4096

PUBLISH_OPS: Final = frozenset({"commit", "push", "pull_request", "pr_status"})


@attrs.frozen
class PublishSettings:
    """How this VM publishes workspaces (named vmagent settings)."""

    github_token_file: Path | None = None
    github_api_url: str = DEFAULT_GITHUB_API_URL
    author_name: str = DEFAULT_AUTHOR_NAME
    author_email: str = DEFAULT_AUTHOR_EMAIL
    push_timeout: float = DEFAULT_PUSH_TIMEOUT
    api_timeout: float = DEFAULT_API_TIMEOUT
    #: Tests pass an in-process transport; None: the network.
    transport: httpx.AsyncBaseTransport | None = attrs.field(default=None, repr=False)


@attrs.frozen
class Target:
    """The repository and branch a workspace publishes to."""

    owner: str
    repo: str
    number: int
    url: str
    branch: str


def target_of(issue: Mapping[str, Any] | None) -> Target:
    """The publishing target of a workspace's issue, or ``OpError`` (pure)."""
    if issue is None:
        raise OpError(ErrorCode.NOT_FOUND, "this workspace has no issue assigned yet")
    owner, repo, number = issue.get("owner"), issue.get("repo"), issue.get("number")
    if not isinstance(owner, str) or not isinstance(repo, str) or not isinstance(number, int):
        raise OpError(ErrorCode.BAD_REQUEST, "the workspace's issue names no repository")
    if name_problem(owner, repo) is not None:
        raise OpError(ErrorCode.BAD_REQUEST, "the workspace's issue names no valid repository")
    url = issue.get("url")
    return Target(owner, repo, number, url if isinstance(url, str) else "", branch_name(number))


def check_text(args: Mapping[str, Any], key: str, limit: int, *, required: bool) -> str | None:
    """``args[key]`` as a non-empty stripped string of at most ``limit`` (pure)."""
    value = args.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise OpError(ErrorCode.BAD_REQUEST, f"{key} must be a non-empty string")
    if len(value) > limit or "\0" in value:
        raise OpError(ErrorCode.BAD_REQUEST, f"{key} is longer than {limit} characters")
    return value.strip()


def links_issue(body: str, target: Target) -> bool:
    """Whether a pull request body already closes or links the issue (pure)."""
    if target.url and target.url in body:
        return True
    closing = rf"(?i)\b(close[sd]?|fix(e[sd])?|resolve[sd]?)\s+#{target.number}\b"
    return re.search(closing, body) is not None


def pr_body(body: str | None, target: Target) -> str:
    """The body sent: the user's, with ``Closes #N`` added unless it links the issue (pure)."""
    text = body or ""
    if links_issue(text, target):
        return text
    return f"{text}\n\nCloses #{target.number}".lstrip()


def read_token(settings: PublishSettings) -> str | None:
    """The GitHub token, or None when the VM has none (never logged)."""
    if settings.github_token_file is None:
        return None
    try:
        with settings.github_token_file.open("rb") as fh:
            raw = fh.read(MAX_TOKEN_BYTES)
    except OSError:
        raise OpError(ErrorCode.BAD_REQUEST, "this VM's GitHub token file cannot be read") from None
    token = raw.decode(errors="replace").strip()
    return token or None


def credential_env(token: str | None) -> dict[str, str]:
    """``GIT_CONFIG_*`` variables that give git the token as a header (pure)."""
    env = {"GIT_ASKPASS": "/bin/false"}  # never a prompt, never a helper's stale password
    if token is None:
        return env
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    env.update(
        {
            "GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
            # git sends extra headers on to wherever a redirect points: the
            # token must reach the configured origin and nothing else.
            "GIT_CONFIG_KEY_1": "http.followRedirects",
            "GIT_CONFIG_VALUE_1": "false",
        }
    )
    return env


def scrub(text: str, token: str | None) -> str:
    """``text`` without the token in it (an error from git or GitHub, for the user)."""
    return text.replace(token, "***") if token else text


async def _current_branch(root: Path, target: Target, limits: OpLimits) -> None:
    _, out, _ = await git(root, ["symbolic-ref", "--quiet", "--short", "HEAD"], limits, ok=(0, 1))
    branch = out.decode(errors="replace").strip()
    if branch != target.branch:
        raise OpError(
            ErrorCode.BAD_REQUEST,
            f"the working tree is on {branch or 'no branch'!r}, not {target.branch!r}",
        )


async def op_commit(
    root: Path, args: Mapping[str, Any], target: Target, settings: PublishSettings, limits: OpLimits
) -> dict[str, Any]:
    """Commit everything uncommitted in the working tree with the user's message."""
    message = check_text(args, "message", MAX_COMMIT_MESSAGE, required=True)
    assert message is not None
    await _current_branch(root, target, limits)
    await git(root, ["add", "--all", "--", "."], limits)
    code, _, _ = await git(root, ["diff", "--cached", "--quiet"], limits, ok=(0, 1))
    if code == 0:
        raise OpError(ErrorCode.BAD_REQUEST, "nothing to commit: the working tree is clean")
    author = ["-c", f"user.name={settings.author_name}"]
    author += ["-c", f"user.email={settings.author_email}"]
    author += ["-c", "commit.gpgsign=false"]  # no signing key on a VM: never a prompt
    await git(root, [*author, "commit", "--quiet", "--no-verify", "-m", message], limits)
    _, out, _ = await git(root, ["rev-parse", "HEAD"], limits)
    return {"commit": out.decode().strip(), "branch": target.branch}


async def op_push(
    root: Path, target: Target, settings: PublishSettings, limits: OpLimits
) -> dict[str, Any]:
    """Push the workspace branch to ``origin`` (never forced)."""
    await _current_branch(root, target, limits)
    token = read_token(settings)
    refspec = f"HEAD:refs/heads/{target.branch}"
    try:
        await git(
            root,
            ["push", "--quiet", "--porcelain", "origin", refspec],
            limits,
            extra_env=credential_env(token),
            seconds=settings.push_timeout,
        )
    except OpError as exc:
        raise OpError(exc.code, scrub(exc.message, token)) from None
    # The remote-tracking ref, so "changes" sees the commits as pushed.
    await git(root, ["update-ref", f"refs/remotes/origin/{target.branch}", "HEAD"], limits)
    _, out, _ = await git(root, ["rev-parse", "HEAD"], limits)
    return {"commit": out.decode().strip(), "branch": target.branch}


async def _base_branch(root: Path, limits: OpLimits) -> str:
    code, out, _ = await git(
        root, ["symbolic-ref", "--quiet", "refs/remotes/origin/HEAD"], limits, ok=(0, 1, 128)
    )
    if code == 0 and out.strip():
        return out.decode().strip().removeprefix("refs/remotes/origin/")
    for name in ("main", "master"):
        code, _, _ = await git(
            root,
            ["rev-parse", "--verify", "--quiet", f"refs/remotes/origin/{name}"],
            limits,
            ok=(0, 1, 128),
        )
        if code == 0:
            return name
    raise OpError(ErrorCode.NOT_FOUND, "the repository has no base branch for a pull request")


def pr_summary(data: Any) -> dict[str, Any]:
    """A pull request as the client sees it: number, url, state (open/closed/merged) (pure)."""
    if not isinstance(data, dict) or not isinstance(data.get("number"), int):
        raise OpError(ErrorCode.BAD_REQUEST, "GitHub's answer was not a pull request")
    state = data.get("state")
    if data.get("merged_at") or data.get("merged") is True:
        state = "merged"
    elif state not in ("open", "closed"):
        state = "closed"
    url = data.get("html_url")
    return {
        "number": data["number"],
        "url": url if isinstance(url, str) else "",
        "state": state,
        "title": str(data.get("title") or "")[:MAX_PR_TITLE],
    }


async def _api(
    settings: PublishSettings,
    method: str,
    path: str,
    *,
    json: Any = None,
    params: Mapping[str, str] | None = None,
) -> httpx.Response:
    token = read_token(settings)
    if token is None:
        raise OpError(
            ErrorCode.FORBIDDEN, "this VM has no GitHub token (vmagent --github-token-file)"
        )
    headers = {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "ffcloud-vmagent",
        "Authorization": f"Bearer {token}",
    }
    url = f"{settings.github_api_url.rstrip('/')}{path}"
    try:
        async with httpx.AsyncClient(
            timeout=settings.api_timeout,
            headers=headers,
            transport=settings.transport,
            follow_redirects=False,
        ) as client:
            return await client.request(method, url, json=json, params=params)
    except httpx.TimeoutException:
        raise OpError(
            ErrorCode.BAD_REQUEST, f"GitHub did not answer within {settings.api_timeout:g} s"
        ) from None
    except httpx.HTTPError as exc:
        raise OpError(
            ErrorCode.BAD_REQUEST, f"GitHub could not be reached ({type(exc).__name__})"
        ) from None


def _api_error(response: httpx.Response, what: str) -> OpError:
    why = ""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        why = str(data.get("message") or "")
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            why = f"{why}: {errors[0].get('message') or errors[0].get('code') or ''}".strip(": ")
    text = f"{what}: GitHub answered HTTP {response.status_code}"
    return OpError(ErrorCode.BAD_REQUEST, f"{text} ({why[:300]})" if why else text)


async def find_pr(target: Target, settings: PublishSettings) -> dict[str, Any] | None:
    """The newest pull request whose head is the workspace branch, or None."""
    response = await _api(
        settings,
        "GET",
        f"/repos/{target.owner}/{target.repo}/pulls",
        params={"head": f"{target.owner}:{target.branch}", "state": "all"},
    )
    if response.status_code != httpx.codes.OK:
        raise _api_error(response, "the pull request could not be looked up")
    try:
        data = response.json()
    except ValueError:
        raise OpError(ErrorCode.BAD_REQUEST, "GitHub's answer was not JSON") from None
    if not isinstance(data, list) or not data:
        return None
    return pr_summary(data[0])


async def op_pull_request(
    root: Path,
    args: Mapping[str, Any],
    target: Target,
    settings: PublishSettings,
    limits: OpLimits,
    issue: Mapping[str, Any],
) -> dict[str, Any]:
    """Open a pull request from the workspace branch to the base branch (or find the open one)."""
    title = check_text(args, "title", MAX_PR_TITLE, required=False)
    body = check_text(args, "body", MAX_PR_BODY, required=False)
    if title is None:
        issue_title = issue.get("title")
        title = (
            issue_title
            if isinstance(issue_title, str) and issue_title.strip()
            else f"Issue #{target.number}"
        )[:MAX_PR_TITLE]
    base = await _base_branch(root, limits)
    response = await _api(
        settings,
        "POST",
        f"/repos/{target.owner}/{target.repo}/pulls",
        json={"title": title, "head": target.branch, "base": base, "body": pr_body(body, target)},
    )
    if response.status_code == httpx.codes.UNPROCESSABLE_ENTITY:
        # Most often "a pull request already exists": answer with that one.
        found = await find_pr(target, settings)
        if found is not None and found["state"] == "open":
            return {"pullRequest": found}
    if response.status_code != httpx.codes.CREATED:
        raise _api_error(response, "the pull request could not be opened")
    try:
        return {"pullRequest": pr_summary(response.json())}
    except ValueError:
        raise OpError(ErrorCode.BAD_REQUEST, "GitHub's answer was not JSON") from None


async def run_publish_op(
    root: Path,
    op: str,
    args: Mapping[str, Any],
    issue: Mapping[str, Any] | None,
    settings: PublishSettings,
    limits: OpLimits,
) -> Any:
    """One publishing op's result, or :class:`OpError`."""
    target = target_of(issue)
    assert issue is not None
    if op == "commit":
        return await op_commit(root, args, target, settings, limits)
    if op == "push":
        return await op_push(root, target, settings, limits)
    if op == "pull_request":
        return await op_pull_request(root, args, target, settings, limits, issue)
    return {"pullRequest": await find_pr(target, settings)}
