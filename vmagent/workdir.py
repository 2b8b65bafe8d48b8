"""A workspace's working directory: a clone of the issue's repository on its own branch."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any, Final

import attrs
import trio

from wire.repos import name_problem

DEFAULT_GIT_BASE_URL: Final = "https://github.com"
#: Seconds a clone may take (VMAGENT_CLONE_TIMEOUT).
DEFAULT_CLONE_TIMEOUT: Final = 600.0


class WorkdirError(Exception):
    """The working directory could not be prepared; the message is for the user."""


@attrs.frozen
class WorkdirPlan:
    """How working directories are prepared on this VM."""

    clone: bool
    git_base_url: str = DEFAULT_GIT_BASE_URL
    clone_timeout: float = DEFAULT_CLONE_TIMEOUT


def branch_name(number: int) -> str:
    """The branch a workspace works on."""
    return f"ff/issue-{number}"


def clone_url(base: str, owner: str, repo: str) -> str:
    """``{base}/{owner}/{repo}.git``, refusing names that are not GitHub-like."""
    if name_problem(owner, repo) is not None:
        raise WorkdirError(f"not a repository name: {owner[:100]}/{repo[:100]}")
    return f"{base.rstrip('/')}/{owner}/{repo}.git"


def redact(url: str) -> str:
    """A URL without any user or password in it, fit for logs and ``detail``."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=host))


async def _git(args: list[str], cwd: Path | None, deadline: float) -> None:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false"}
    with trio.move_on_at(deadline) as scope:
        result = await trio.run_process(
            ["git", *args], cwd=cwd, env=env, capture_stdout=True, capture_stderr=True, check=False
        )
    if scope.cancelled_caught:
        raise WorkdirError(f"git {args[0]} timed out")
    if result.returncode != 0:
        lines = [ln for ln in result.stderr.decode(errors="replace").splitlines() if ln.strip()]
        raise WorkdirError(lines[-1].strip()[:300] if lines else f"exit status {result.returncode}")


async def prepare_workdir(plan: WorkdirPlan, issue: dict[str, Any] | None, workdir: Path) -> None:
    """Make ``workdir`` ready: a clone on branch ``ff/issue-<n>``, or an empty directory.

    Idempotent: an existing clone is kept. The clone goes to a side directory
    first and is renamed into place, so a crash never leaves a half clone
    that looks finished.
    """
    # Small local checks: fine on the event loop (ASYNC240 is about slow paths).
    if (workdir / ".git").exists() or (not plan.clone and workdir.is_dir()):  # noqa: ASYNC240
        return
    if not plan.clone or issue is None:
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)  # noqa: ASYNC240
        return
    owner, repo, number = issue.get("owner"), issue.get("repo"), issue.get("number")
    if not isinstance(owner, str) or not isinstance(repo, str) or not isinstance(number, int):
        raise WorkdirError("the issue names no repository to clone")
    url = clone_url(plan.git_base_url, owner, repo)
    partial = workdir.with_name(workdir.name + ".partial")
    await trio.to_thread.run_sync(lambda: shutil.rmtree(partial, ignore_errors=True))
    deadline = trio.current_time() + plan.clone_timeout
    try:
        await _git(["clone", "--quiet", "--", url, str(partial)], None, deadline)
        branch = branch_name(number)
        try:
            await _git(
                ["rev-parse", "--verify", "--quiet", f"refs/remotes/origin/{branch}"],
                partial,
                deadline,
            )
        except WorkdirError:
            await _git(["checkout", "--quiet", "-b", branch], partial, deadline)
        else:
            await _git(["checkout", "--quiet", branch], partial, deadline)
    except WorkdirError as exc:
        await trio.to_thread.run_sync(lambda: shutil.rmtree(partial, ignore_errors=True))
        raise WorkdirError(f"git clone of {redact(url)} failed: {exc}") from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise WorkdirError(f"git could not run: {exc}") from None
    partial.rename(workdir)
