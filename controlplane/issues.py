"""GitHub issue URLs: strict parsing (pure) and fetching the issue (httpx).

Only ``https://github.com/OWNER/REPO/issues/NUMBER`` is accepted, with an
optional trailing slash, query or fragment, which are dropped.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from typing import Any, Final

import attrs
import httpx

from wire.repos import name_problem

log = logging.getLogger(__name__)

MAX_ISSUE_URL_LENGTH: Final = 2048
_NUMBER: Final = re.compile(r"[1-9][0-9]{0,9}")
MAX_ISSUE_NUMBER: Final = 2**31 - 1
MAX_TITLE_LENGTH: Final = 1024


class InvalidIssueUrl(ValueError):
    """The text is not a GitHub issue URL; the message says why."""


@attrs.frozen
class IssueRef:
    """What an issue URL names."""

    owner: str
    repo: str
    number: int

    @property
    def url(self) -> str:
        """The canonical URL."""
        return f"https://github.com/{self.owner}/{self.repo}/issues/{self.number}"


def parse_issue_url(text: str) -> IssueRef:
    """Parse ``text`` strictly or raise :class:`InvalidIssueUrl`."""
    if len(text) > MAX_ISSUE_URL_LENGTH:
        raise InvalidIssueUrl("the URL is too long")
    if text != text.strip() or any(c.isspace() or ord(c) < 0x20 for c in text):
        raise InvalidIssueUrl("the URL contains spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidIssueUrl("the URL cannot be parsed") from None
    if parts.scheme != "https":
        raise InvalidIssueUrl("the URL must start with https://")
    if parts.username is not None or parts.password is not None or port is not None:
        raise InvalidIssueUrl("the URL must not carry a user, password or port")
    if (parts.hostname or "") != "github.com" or parts.netloc.lower() != "github.com":
        raise InvalidIssueUrl("the URL must be on github.com")
    path = parts.path.removesuffix("/")
    segments = path.split("/")
    if len(segments) != 5 or segments[0] != "" or segments[3] != "issues":
        raise InvalidIssueUrl("the URL must look like https://github.com/OWNER/REPO/issues/NUMBER")
    owner, repo, number = segments[1], segments[2], segments[4]
    problem = name_problem(owner, repo)
    if problem is not None:
        raise InvalidIssueUrl(problem)
    if not _NUMBER.fullmatch(number) or int(number) > MAX_ISSUE_NUMBER:
        raise InvalidIssueUrl("the issue number must be a positive whole number")
    return IssueRef(owner, repo, int(number))


@attrs.frozen
class FetchedIssue:
    """The issue's title and body, or why they are missing."""

    title: str | None = None
    body: str | None = None
    error: str | None = None


async def fetch_issue(
    ref: IssueRef,
    *,
    api_url: str,
    token: str | None,
    timeout_seconds: float,
    body_max: int,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FetchedIssue:
    """Fetch title and body from the GitHub REST API; never raises for GitHub's faults."""
    headers = {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "ffcloud-controlplane",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{api_url.rstrip('/')}/repos/{ref.owner}/{ref.repo}/issues/{ref.number}"
    try:
        async with httpx.AsyncClient(
            timeout=timeout_seconds, headers=headers, transport=transport, follow_redirects=False
        ) as client:
            response = await client.get(url)
    except httpx.TimeoutException:
        return FetchedIssue(error=f"GitHub did not answer within {timeout_seconds:g} s")
    except httpx.HTTPError as exc:
        return FetchedIssue(error=f"GitHub could not be reached ({type(exc).__name__})")
    if response.status_code == httpx.codes.NOT_FOUND:
        return FetchedIssue(error="GitHub has no such issue, or it is private")
    if response.status_code != httpx.codes.OK:
        return FetchedIssue(error=f"GitHub answered HTTP {response.status_code}")
    try:
        data: Any = response.json()
    except ValueError:
        return FetchedIssue(error="GitHub's answer was not JSON")
    title = data.get("title") if isinstance(data, dict) else None
    body = data.get("body") if isinstance(data, dict) else None
    if not isinstance(title, str):
        return FetchedIssue(error="GitHub's answer had no issue title")
    return FetchedIssue(
        title=title[:MAX_TITLE_LENGTH],
        body=body[:body_max] if isinstance(body, str) else None,
    )
