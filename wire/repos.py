"""The one rule for GitHub repository names, used by the control plane and vmagent.

The control plane refuses a workspace whose issue URL breaks it (400
``invalid_issue_url``); vmagent checks again before it builds a clone URL,
so a name that reaches ``git`` can never be read as an option (a leading
``-``) or climb out of its directory (``..``).
"""

from __future__ import annotations

import re
from typing import Final

#: GitHub user and organisation names: alphanumerics and single inner hyphens, 1-39.
OWNER_RE: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
#: Repository names: 1-100 of ``A-Z a-z 0-9 . _ -``, never starting with ``-``.
REPO_RE: Final = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]{0,99}")


def owner_problem(owner: str) -> str | None:
    """Why ``owner`` is not a GitHub owner name, or None when it is one."""
    if not OWNER_RE.fullmatch(owner):
        return "the repository owner is not a valid GitHub name"
    return None


def repo_problem(repo: str) -> str | None:
    """Why ``repo`` is not an acceptable repository name, or None when it is one."""
    if not REPO_RE.fullmatch(repo):
        return "the repository name must be 1 to 100 of A-Z a-z 0-9 . _ - and not start with -"
    if repo == "." or ".." in repo or repo.lower().endswith(".git"):
        return "the repository name must not be '.', contain '..' or end in .git"
    return None


def name_problem(owner: str, repo: str) -> str | None:
    """Why ``owner/repo`` is refused, or None when both names are acceptable."""
    return owner_problem(owner) or repo_problem(repo)
